"""The rollout actors of a run as one handle: ``RolloutGroup`` deals prompts to the vLLM engines, ships
them weights (by object ref or over a collective) and heals engines Ray restarted; plus the retry rule of a
rollout request (``ROLLOUT_TRIES``, ``worth_retrying``) and ``split_evenly``.

``halo_ray.driver`` re-exports these names.
"""

from __future__ import annotations

import logging
import time

import pyarrow as pa
import ray
from ray.util.placement_group import remove_placement_group

from halo_ray.errors import ClusterError
from halo_ray.placement import PlacementPlan, resolve_weight_transfer
from halo_ray.samples import concat
from halo_ray.sections import ModelConfig, RolloutConfig

log = logging.getLogger(__name__)

# How long ``RolloutGroup.heal`` waits for an engine Ray is restarting (it loads its model again).
HEAL_TIMEOUT_S = 900.0

ROLLOUT_TRIES = 4
"""Tries of one rollout request (a stream chunk, an evaluation, ``generate``) when an actor dies under it,
the engines healed between tries; a request that keeps failing (a bug, a prompt that crashes the engine
every time) ends with the last error instead of being sent forever."""


class RolloutGroup:
    """The rollout actors of a run, and how prompts are spread over them.

    All samples of one prompt go to one engine (one request with ``n`` samples); prompts are
    dealt out in contiguous chunks so that each engine gets an equal share. The engines take the rollout
    bundles of ``plan`` (``placement``; by default a plan of the engines alone). In a colocated plan they
    join the learner's placement group ``group``, one beside each rank, and ``sleep`` while it steps.
    """

    def __init__(self, model: ModelConfig, rollout: RolloutConfig, run: str = "", plan: PlacementPlan | None = None,
                 group=None):
        from halo_ray.actors.rollout import start_rollout_actors
        from halo_ray.driver import placement, resolve_model  # here: halo_ray.driver imports this module

        self.model, self.rollout = resolve_model(model), rollout
        plan = plan if plan is not None else placement(rollout)
        self.colocated = plan.colocated
        # Named <run>/rollout-<i>, one per rollout bundle of the plan, in one placement group.
        self.actors, self.placement_group = start_rollout_actors(self.model, rollout, run=run, plan=plan, group=group)
        self.version = 0
        self.weights: ray.ObjectRef | None = None  # the latest weights shipped by ref, for engines Ray restarts
        self.source = None  # the LearnerGroup of the latest collective sync: engines Ray restarts heal from it
        self._group: tuple | None = None  # (learner, update_info, metadata) while the engines are in its group
        self.healed = 0

    def submit(self, prompts: list[dict], chunk_size: int = 0, index: int = 0, **overrides) -> list[ray.ObjectRef]:
        """Send ``prompts`` to the engines without waiting.

        Args:
            prompts: dicts with ``prompt_id`` and ``prompt``.
            chunk_size: prompts per request, dealt round-robin to the engines; 0 sends one equal
                share to each engine.
            index: the first chunk goes to engine ``index mod engines`` (the stream numbers its chunks).
            overrides: sampling settings for these requests (see ``RolloutEngine.generate``).
        Returns:
            One ref to a ``RolloutBatch`` per chunk, in prompt order.
        """
        if chunk_size:
            chunks = [prompts[i:i + chunk_size] for i in range(0, len(prompts), chunk_size)]
        else:
            chunks = [c for c in split_evenly(prompts, len(self.actors)) if c]
        return [self.actors[(index + i) % len(self.actors)].generate.remote(chunk, **overrides)
                for i, chunk in enumerate(chunks)]

    def generate(self, prompts: list[dict], **overrides) -> pa.Table:
        """Sample and wait; one table, ordered by prompt id and sample index. A request an engine died
        under is sent again once the engines are healed (``ROLLOUT_TRIES``)."""
        for attempt in range(1, ROLLOUT_TRIES + 1):
            try:
                return concat(ray.get(self.submit(prompts, **overrides)))
            except ray.exceptions.RayError as exc:
                if attempt == ROLLOUT_TRIES or not worth_retrying(exc, self.heal()):
                    raise
                log.error("a rollout request failed (%s); the engines are healed: sending it again", type(exc).__name__)

    def sync_weights(self, learner, version: int) -> None:
        """Bring every engine to ``learner``'s current weights, as policy ``version``, by the run's transport
        (``rollout.weight_transfer``, resolved by ``halo_ray.placement.resolve_weight_transfer``).

        ``object_store``: learner rank 0 puts the weights (or LoRA adapter) in the object store and every
        engine loads them from the ref (``update_weights``). ``nccl`` / ``gloo``: learner rank 0 broadcasts
        the full weights, bucketed, to every engine's worker through vLLM's weight-transfer API. The group
        is formed at the first such sync and formed again, with every engine, after an engine was restarted
        (a restarted engine is healed by object ref from the learner, ``heal``) or the learner replaced.
        An update runs between engine steps; requests in flight continue.

        Args:
            learner: the run's ``LearnerGroup``; it must hold the weights of ``version`` until the next sync
                (a restarted engine is healed from it).
            version: the policy version of these weights; must increase.
        """
        from halo_ray.actors.learner import gather

        backend = resolve_weight_transfer(self.rollout.weight_transfer, self.rollout.num_gpus,
                                          learner.config.num_gpus_per_rank, self.model.lora.enabled, self.colocated)
        if backend == "object_store":
            self.update_weights(learner.rollout_weights_ref(), version)
            return
        if version <= self.version:  # refused here: an engine that refused would leave the sender waiting
            raise ValueError(f"weights version {version} is not newer than the engines' {self.version}")
        self.weights, self.source, self.version = None, learner, version
        try:
            update_info, meta = self._join(learner, backend)
            receives = [actor.receive_weights.remote(update_info, version) for actor in self.actors]
            gather(receives + learner.send_weights(meta))  # the first failure as soon as it is known
        except ray.exceptions.RayError as exc:
            log.warning("weights v%d over %s failed (%s): the group is left, the engines are healed by ref",
                        version, backend, type(exc).__name__)
            self._leave()
            if not self.heal():  # no engine was behind: the failure is not an engine's death
                raise

    def _join(self, learner, backend: str) -> tuple[dict, list]:
        """Form the transfer group of ``learner``'s rank 0 and every engine, unless it stands; returns the
        update info the engines receive by and the metadata (names, dtypes, shapes) the learner sends by."""
        from halo_ray.weight_transfer import update_info

        if self._group is not None and self._group[0] is learner:
            return self._group[1:]
        self._leave()
        tp = self.rollout.tensor_parallel_size
        init_info, opened = learner.open_weight_transfer(backend, len(self.actors) * tp,
                                                         self.rollout.weight_bucket_mb << 20)
        ray.get([actor.init_weight_transfer.remote(init_info, 1 + i * tp) for i, actor in enumerate(self.actors)]
                + [opened])
        meta = learner.weights_metadata()
        self._group = (learner, update_info(meta), meta)
        log.info("rollout engines joined a %s weight-transfer group with learner rank 0 (%d tensors)", backend, len(meta))
        return self._group[1:]

    def _leave(self) -> None:
        """Dissolve the transfer group (engines and learner rank 0 close their ends; dead ones have none)."""
        if self._group is None:
            return
        learner, self._group = self._group[0], None
        closing = [actor.close_weight_transfer.remote() for actor in self.actors]
        try:
            learner.close_weight_transfer()
        except ray.exceptions.RayError:
            pass  # a learner that died holds no group
        ray.wait(closing, num_returns=len(closing), timeout=60)

    def update_weights(self, weights, version: int) -> None:
        """Ship weights (a state dict or ``LoraAdapter``, put once, sent by ref) to every engine.

        The ref is kept (one copy in the object store) so that an engine Ray restarts, which comes back
        with the initial weights, can be brought to this version (``heal``); an engine that dies while
        the weights travel is healed here.
        """
        ref = weights if isinstance(weights, ray.ObjectRef) else ray.put(weights)
        self.weights, self.source, self.version = ref, None, version
        calls = [actor.update_weights.remote(ref, version) for actor in self.actors]
        try:
            ray.get(calls)
        except ray.exceptions.RayActorError as exc:
            ray.wait(calls, num_returns=len(calls))  # the others finish before their versions are read
            log.warning("a rollout engine died while weights v%d were shipped (%s); healing", version,
                        type(exc).__name__)
            self.heal()

    def heal(self, timeout_s: float = HEAL_TIMEOUT_S) -> list[int]:
        """Bring every engine to the latest weights: wait for engines Ray is restarting, then ship the
        kept weights to each whose version differs (a restarted engine holds the initial ones). After
        collective syncs nothing is kept: the weights come by ref from the learner of the latest sync, which
        still holds them (the stream trains and syncs in one go), and the group is formed again next sync.

        Call it before issuing work after a rollout call failed. Returns the indices of the engines it
        brought to the latest weights (``healed`` counts them over the group's life).

        Raises:
            ray.exceptions.ActorDiedError: an engine is gone for good (its restarts are spent).
            ClusterError: an engine did not come back within ``timeout_s``.
        """
        deadline = time.monotonic() + timeout_s
        versions = [self._version_of(i, actor, deadline) for i, actor in enumerate(self.actors)]
        behind = engines_behind(versions, self.version)
        if not behind:
            return []
        if self.weights is None and self.source is None:  # still the initial weights, which restarted engines hold
            ray.get([self.actors[i].resume.remote() for i in behind])
        elif self.weights is not None:
            ray.get([self.actors[i].update_weights.remote(self.weights, self.version) for i in behind])
        else:  # collective syncs: a restarted engine left the group; it loads the learner's weights by ref once
            self._leave()  # formed again, with every engine, at the next sync
            weights = self.source.rollout_weights_ref()
            ray.get([self.actors[i].update_weights.remote(weights, self.version) for i in behind])
        log.warning("rollout engines %s were restarted by Ray with the initial weights: now at weights v%d",
                    behind, self.version)
        self.healed += len(behind)
        return behind

    def _version_of(self, index: int, actor, deadline: float) -> int:
        """The engine's weights version, waiting while Ray restarts it."""
        while True:
            try:
                return ray.get(actor.version.remote(), timeout=max(1.0, deadline - time.monotonic()))
            except ray.exceptions.ActorUnavailableError:  # restarting, or briefly unreachable: ask again
                if time.monotonic() > deadline:
                    raise ClusterError(f"rollout engine {index} did not come back within the heal timeout") from None
                time.sleep(0.5)
            except ray.exceptions.GetTimeoutError:
                raise ClusterError(f"rollout engine {index} did not come back within the heal timeout "
                                   "(is the cluster short of resources for its restart?)") from None

    def sleep(self) -> None:
        """Every engine stops sampling and frees its GPU for the learner rank beside it (``RolloutEngine.sleep``);
        requests in flight wait for ``wake_up``. An engine that died is skipped: Ray restarts it awake."""
        self._each("sleep")

    def wake_up(self) -> None:
        self._each("wake_up")

    def _each(self, method: str) -> None:
        calls = [getattr(actor, method).remote() for actor in self.actors]
        for i, call in enumerate(calls):
            try:
                ray.get(call)
            except ray.exceptions.RayActorError as exc:
                log.warning("rollout engine %d: %s failed (%s); it is healed before it samples again", i, method,
                            type(exc).__name__)

    def stats(self) -> list[dict]:
        """Each engine's counters; an engine that died since is reported idle (``busy_s`` 0)."""
        out = []
        for i, ref in enumerate([actor.stats.remote() for actor in self.actors]):
            try:
                out.append(ray.get(ref))
            except ray.exceptions.RayActorError:
                out.append({"engine": i, "busy_s": 0.0})
        return out

    def shutdown(self) -> None:
        ray.wait([actor.close.remote() for actor in self.actors], num_returns=len(self.actors), timeout=30)
        for actor in self.actors:
            ray.kill(actor)
        self.actors = []
        if self.placement_group is not None:  # colocated: the learner's, removed by the LearnerGroup
            remove_placement_group(self.placement_group)


def worth_retrying(exc: BaseException, healed: list[int]) -> bool:
    """Whether a failed rollout request is worth sending again: an actor died under it, an engine Ray
    restarted refused it (``EngineRestartedError``: it works once healed), or an engine had to be healed;
    any other error would only repeat."""
    from halo_ray.rollout import EngineRestartedError

    chain = []
    while exc is not None and len(chain) < 8:  # a verifier call fails with the rollout call's error as its cause
        chain.append(exc)
        exc = getattr(exc, "cause", None) or exc.__cause__
    return bool(healed) or any(isinstance(e, (ray.exceptions.RayActorError, EngineRestartedError)) for e in chain)


def engines_behind(versions: list[int], latest: int) -> list[int]:
    """Indices of the engines whose weights version is not ``latest`` (restarted ones report -1)."""
    return [i for i, v in enumerate(versions) if v != latest]


def split_evenly(items: list, parts: int) -> list[list]:
    """Split ``items`` into ``parts`` contiguous chunks whose sizes differ by at most one."""
    size, extra = divmod(len(items), parts)
    out, start = [], 0
    for i in range(parts):
        end = start + size + (1 if i < extra else 0)
        out.append(items[start:end])
        start = end
    return out
