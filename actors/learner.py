"""``LearnerRank``: a Ray actor hosting one ``halo_ray.learner.Learner`` (a DeepSpeed rank);
``LearnerGroup``: the driver-side handle on N of them.

The ranks sit in one placement group, the learner bundles of the run's ``PlacementPlan`` (a bundle of
``num_cpus_per_rank`` CPUs and ``num_gpus_per_rank`` GPUs each), packed onto one node when one node can
hold them all (STRICT_PACK), else spread as little as possible (PACK). Rank 0 reports its address and a
free port; every rank then sets ``MASTER_ADDR``, ``MASTER_PORT``, ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` and joins
the process group (gloo on CPU, NCCL on GPU). Every call fans out to all ranks, which must take
part in each collective; every rank gets the same examples and takes its own share of them.
"""

from __future__ import annotations

import os
import time

import ray
from ray.util.placement_group import placement_group, remove_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from halo_ray.learner import Learner, free_port, learner_env
from halo_ray.learner_plan import merge_metrics
from halo_ray.placement import PlacementPlan, actor_name, pack_strategy, plan_placement
from halo_ray.sections import LearnerConfig, ModelConfig, ObjectiveConfig


@ray.remote
class LearnerRank:
    def __init__(self, rank: int, world_size: int):
        self.rank, self.world_size = rank, world_size
        self.learner: Learner | None = None

    def address(self) -> tuple[str, int]:
        """This node's IP and a port free on it, for rank 0 to serve the process group."""
        return ray.util.get_node_ip_address(), free_port()

    def setup(self, master_addr: str, master_port: int, model: ModelConfig, learner: LearnerConfig,
              objective: ObjectiveConfig, total_steps: int | None) -> int:
        """Join the process group and build the Learner; returns this rank."""
        os.environ.update(MASTER_ADDR=master_addr, MASTER_PORT=str(master_port), RANK=str(self.rank),
                          WORLD_SIZE=str(self.world_size), LOCAL_RANK="0")
        self.learner = Learner(model, learner, objective, total_steps=total_steps)
        return self.rank

    def train(self, examples: list[dict], epochs: int | None = None, steps: int | None = None,
              temperature: float = 1.0) -> dict:
        return self.learner.train(examples, epochs, steps, temperature)

    def logprobs(self, examples: list[dict], temperature: float = 1.0, reference: bool = False) -> list[list[float]]:
        return self.learner.logprobs(examples, temperature, reference)

    def rollout_weights(self, every_rank: bool = False):
        """Rank 0's weights; other ranks take part in the gather (ZeRO-3) and return None, so only
        one copy enters the object store (``every_rank``: each returns its own, for checks)."""
        weights = self.learner.rollout_weights()
        return weights if self.rank == 0 or every_rank else None

    def weights_metadata(self) -> list:
        return self.learner.weights_metadata()

    def open_weight_transfer(self, backend: str, master_address: str, master_port: int, num_engine_ranks: int,
                             bucket_bytes: int) -> None:
        self.learner.open_weight_transfer(backend, master_address, master_port, num_engine_ranks, bucket_bytes)

    def send_weights(self, meta: list) -> None:
        self.learner.send_weights(meta)

    def close_weight_transfer(self) -> None:
        self.learner.close_weight_transfer()

    def save_checkpoint(self, directory: str, extra: dict | None) -> str:
        return str(self.learner.save_checkpoint(directory, extra))

    def load_checkpoint(self, directory: str) -> dict:
        return self.learner.load_checkpoint(directory)


# How long a rank's error waits for news of another rank's death: a rank that dies breaks the collective
# the others are in, and that death (which the run restarts from) is the error worth raising.
PEER_DEATH_GRACE_S = 10.0


def gather(refs: list) -> list:
    """``ray.get`` of every rank's call, raising the first failure as soon as it is known.

    A rank that dies leaves the others blocked in a collective (or failing in it); ``ray.get`` of the
    list would wait on them first. A rank's death (``RayActorError``) is raised in preference to another
    rank's error about the broken collective.
    """
    pending = list(refs)
    while pending:
        done, pending = ray.wait(pending, num_returns=1)
        try:
            ray.get(done)
        except ray.exceptions.RayActorError:
            raise
        except ray.exceptions.RayError as exc:
            later, _ = ray.wait(pending, num_returns=len(pending), timeout=PEER_DEATH_GRACE_S) if pending else ([], [])
            for ref in later:
                try:
                    ray.get(ref)
                except ray.exceptions.RayActorError as dead:
                    raise dead from exc
                except ray.exceptions.RayError:
                    pass
            raise
    return ray.get(list(refs))


class LearnerGroup:
    """``learner.num_ranks`` DeepSpeed ranks as Ray actors, driven as one learner.

    Args:
        model: the model section (``path``: a local HF directory on every node).
        learner: optimisation, parallelism and placement.
        objective: the objective section.
        total_steps: optimizer steps a cosine schedule decays over (``Learner``).
        run: names the ranks ``<run>/learner-<i>`` (``ray list actors``, the dashboard); empty leaves
            them unnamed.
        plan: the run's ``PlacementPlan`` (the driver's, from the whole config): the ranks take its
            learner bundles; None plans the ranks alone against ``ray.cluster_resources()``.
    """

    def __init__(self, model: ModelConfig, learner: LearnerConfig, objective: ObjectiveConfig,
                 total_steps: int | None = None, run: str = "", plan: PlacementPlan | None = None):
        self.config = learner
        self._busy_s = 0.0
        n = learner.num_ranks
        if plan is None:
            plan = plan_placement(None, learner, ray.cluster_resources())
        bundles = [dict(b) for b in plan.learner]
        self.placement_group = placement_group(bundles, strategy=pack_strategy(bundles, ray.nodes()))
        ray.get(self.placement_group.ready())
        self.ranks = [
            LearnerRank.options(
                name=actor_name(run, "learner", i),
                num_cpus=learner.num_cpus_per_rank,
                num_gpus=plan.learner_gpus,
                scheduling_strategy=PlacementGroupSchedulingStrategy(self.placement_group, placement_group_bundle_index=i),
                runtime_env={"env_vars": learner_env(learner)},
            ).remote(i, n)
            for i in range(n)
        ]
        try:
            addr, port = ray.get(self.ranks[0].address.remote())
            gather([r.setup.remote(addr, port, model, learner, objective, total_steps) for r in self.ranks])
        except BaseException:  # a rank failed to start: release the others and the placement group
            self.shutdown()
            raise

    def train(self, examples: list[dict], epochs: int | None = None, steps: int | None = None,
              temperature: float = 1.0) -> dict:
        """Train every rank on its share of ``examples`` (see ``Learner.train``); returns the merged metrics."""
        started = time.perf_counter()
        ref = ray.put(list(examples))
        metrics = merge_metrics(gather([r.train.remote(ref, epochs, steps, temperature) for r in self.ranks]))
        self._busy_s += time.perf_counter() - started
        return metrics

    def logprobs(self, examples: list[dict], temperature: float = 1.0, reference: bool = False) -> list[list[float]]:
        """Forward only, on rank 0: each example's completion-token log-probs (``Learner.logprobs``)."""
        if self.config.zero_stage == 3:  # parameters are sharded: every rank takes part in the forward
            return gather([r.logprobs.remote(examples, temperature, reference) for r in self.ranks])[0]
        return ray.get(self.ranks[0].logprobs.remote(examples, temperature, reference))

    def busy_s(self) -> float:
        """Seconds the driver has spent waiting on ``train`` calls (for the stream's idle fractions)."""
        return self._busy_s

    def rollout_weights_ref(self) -> ray.ObjectRef:
        """A ref to the weights for ``RolloutActor.update_weights(ref, version)``: a state dict or ``LoraAdapter``."""
        if self.config.zero_stage == 3:  # gathering parameters is a collective: all ranks take part
            refs = [r.rollout_weights.remote() for r in self.ranks]
            ray.wait(refs, num_returns=len(refs))
            return refs[0]
        return self.ranks[0].rollout_weights.remote()

    # A collective weight transfer (``RolloutGroup.sync_weights``): rank 0 is the sender; with ZeRO-3 every
    # rank takes part in gathering the parameters. The calls return refs: the engines receive meanwhile.

    def weights_metadata(self) -> list:
        """``TensorMeta`` of the full weights, in the order they are sent (``Learner.weights_metadata``)."""
        return gather(self._weights_ranks("weights_metadata"))[0]

    def open_weight_transfer(self, backend: str, num_engine_ranks: int, bucket_bytes: int) -> tuple[dict, ray.ObjectRef]:
        """Open the group on rank 0 (a free port of its node); returns the engines' ``init_info`` (without
        their ``rank_offset``) and the ref of rank 0's call, which completes once every engine has joined."""
        from halo_ray.weight_transfer import init_info

        addr, port = ray.get(self.ranks[0].address.remote())
        ref = self.ranks[0].open_weight_transfer.remote(backend, addr, port, num_engine_ranks, bucket_bytes)
        return init_info(backend, addr, port, num_engine_ranks, bucket_bytes), ref

    def send_weights(self, meta: list) -> list[ray.ObjectRef]:
        """Start broadcasting the weights to the open group; refs of the ranks' calls."""
        return self._weights_ranks("send_weights", meta)

    def close_weight_transfer(self) -> None:
        ray.get(self.ranks[0].close_weight_transfer.remote())

    def _weights_ranks(self, method: str, *args) -> list[ray.ObjectRef]:
        ranks = self.ranks if self.config.zero_stage == 3 else self.ranks[:1]
        return [getattr(r, method).remote(*args) for r in ranks]

    def save_checkpoint(self, directory: str, extra: dict | None = None) -> str:
        """Write a checkpoint (HF format + optimizer, scheduler, RNG, ``extra``) atomically; returns its path."""
        return gather([r.save_checkpoint.remote(str(directory), extra) for r in self.ranks])[0]

    def load_checkpoint(self, directory: str) -> dict:
        """Restore every rank from ``directory``; returns the ``extra`` dict saved with it."""
        return gather([r.load_checkpoint.remote(str(directory)) for r in self.ranks])[0]

    def shutdown(self) -> None:
        for r in self.ranks:
            ray.kill(r)
        self.ranks = []
        remove_placement_group(self.placement_group)
