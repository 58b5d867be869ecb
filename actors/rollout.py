"""``RolloutActor``: a Ray actor hosting one ``halo_ray.rollout.RolloutEngine`` (vLLM).

The actor adds placement (a bundle of the run's ``PlacementPlan``: CPUs, and ``num_gpus`` x
``tensor_parallel_size`` GPUs per engine) and lifecycle. It is threaded (``max_concurrency`` 4) so that
several ``generate`` calls can batch in one engine; the control calls (``update_weights``,
``receive_weights``, ``sleep``, ``wake_up``, ``version``, ``resume``, ``stats``...) have their own thread (the ``control``
concurrency group), so a weight update or a heal never queues behind generate calls in flight: it
runs between two engine steps of theirs (``StepLock``).
``generate`` returns an Arrow table, which Ray stores and hands back as an object ref.
"""

from __future__ import annotations

import ray
from ray.util.placement_group import placement_group, remove_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from halo_ray.placement import PlacementPlan, actor_name, pack_strategy, plan_placement
from halo_ray.rollout import EngineRestartedError, RolloutEngine, engine_env
from halo_ray.sections import ModelConfig, RolloutConfig


@ray.remote(concurrency_groups={"control": 1})
class RolloutActor:
    def __init__(self, model: ModelConfig, rollout: RolloutConfig, index: int = 0, sleep_mode: bool = False):
        self.engine = RolloutEngine(model, rollout, index, sleep_mode)
        # Restarted by Ray: the engine holds the initial weights, whatever the run's version is. It samples
        # nothing until the driver has sent the latest weights (or said the initial ones are the latest).
        self.waiting = ray.get_runtime_context().was_current_actor_reconstructed

    def generate(self, prompts: list[dict], **overrides):
        """A ``RolloutBatch`` (Arrow table) for ``prompts``; see ``RolloutEngine.generate``."""
        if self.waiting:
            raise EngineRestartedError("this rollout engine was restarted by Ray and holds the initial weights: "
                                       "it samples again once the driver has healed it (RolloutGroup.heal)")
        return self.engine.generate(prompts, **overrides)

    @ray.method(concurrency_group="control")
    def update_weights(self, weights, version: int) -> int:
        """Swap in a state dict or ``LoraAdapter`` (usually passed by ref); returns the new version."""
        version = self.engine.update_weights(weights, version)
        self.waiting = False
        return version

    @ray.method(concurrency_group="control")
    def init_weight_transfer(self, init_info: dict, rank_offset: int) -> None:
        """Join the weight-transfer group as ranks ``rank_offset``.. (see ``RolloutEngine.init_weight_transfer``)."""
        self.engine.init_weight_transfer(dict(init_info, rank_offset=rank_offset))

    @ray.method(concurrency_group="control")
    def receive_weights(self, update_info: dict, version: int) -> int:
        """Receive full weights over the group while learner rank 0 sends them; returns the new version."""
        if self.waiting:  # a restarted engine is not in the group: the driver heals it by object ref
            raise EngineRestartedError("this rollout engine was restarted by Ray: it is not in the weight-transfer group")
        return self.engine.receive_weights(update_info, version)

    @ray.method(concurrency_group="control")
    def close_weight_transfer(self) -> None:
        self.engine.close_weight_transfer()

    @ray.method(concurrency_group="control")
    def sleep(self) -> None:
        """Free the GPU for the colocated learner rank (``RolloutEngine.sleep``); requests in flight wait."""
        self.engine.sleep()

    @ray.method(concurrency_group="control")
    def wake_up(self) -> None:
        self.engine.wake_up()

    @ray.method(concurrency_group="control")
    def resume(self) -> None:
        """After a restart: the initial weights are the run's latest (version 0); sample again."""
        self.waiting = False

    @ray.method(concurrency_group="control")
    def version(self) -> int:
        """The weights' policy version; -1 after a restart by Ray until the driver heals the engine."""
        return -1 if self.waiting else self.engine.version

    @ray.method(concurrency_group="control")
    def stats(self) -> dict:
        return self.engine.stats()

    def ready(self) -> bool:
        return True

    @ray.method(concurrency_group="control")
    def close(self) -> None:
        """Remove the engine's temporary files (LoRA adapters) before the actor is killed."""
        self.engine.close()


# Ray restarts an engine that dies (memory monitor, node lost) this many times; its calls in flight
# fail rather than retry, because a restarted engine holds the initial weights: the driver re-issues
# the prompts and ships the latest weights (calls that reach it before then fail the same way).
ROLLOUT_MAX_RESTARTS = 3


def start_rollout_actors(model: ModelConfig, rollout: RolloutConfig, run: str = "",
                         plan: PlacementPlan | None = None, group=None) -> tuple[list, object]:
    """Start ``rollout.num_engines`` actors in the rollout bundles of ``plan`` (one placement group), each
    with its engine environment; waits until loaded. In a colocated plan engine ``i`` goes into bundle ``i``
    of the learner's placement group ``group`` beside learner rank ``i``, built to sleep while it steps.

    Args:
        model, rollout: the engines' sections.
        run: names them ``<run>/rollout-<i>`` (``ray list actors``, the dashboard); empty leaves them unnamed.
        plan: the run's ``PlacementPlan`` (the driver's, from the whole config); None plans the engines
            alone against ``ray.cluster_resources()``.
        group: a colocated plan's placement group (``LearnerGroup.placement_group``).
    Returns:
        The actors and the placement group made for them (remove it after killing them); None when they
        went into ``group``, which its owner removes.
    """
    if plan is None:
        plan = plan_placement(rollout, None, ray.cluster_resources(), tensor_parallel_size=rollout.tensor_parallel_size)
    if plan.colocated:
        if group is None:
            raise ValueError("a colocated plan's engines go into the learner's placement group: pass group")
        bundles, own = plan.learner, None
    else:
        bundles = plan.rollout
        group = own = placement_group([dict(b) for b in bundles], strategy=pack_strategy(bundles, ray.nodes()))
        ray.get(group.ready())
    actors = [
        RolloutActor.options(
            name=actor_name(run, "rollout", i),
            num_cpus=rollout.num_cpus,
            num_gpus=plan.rollout_gpus,
            scheduling_strategy=PlacementGroupSchedulingStrategy(group, placement_group_bundle_index=i),
            max_concurrency=4,
            max_restarts=ROLLOUT_MAX_RESTARTS,
            max_task_retries=0,
            runtime_env={"env_vars": engine_env(rollout)},
        ).remote(model, rollout, i, plan.colocated)
        for i in range(len(bundles))
    ]
    try:
        ray.get([a.ready.remote() for a in actors])
    except BaseException:  # an engine failed to load: stop the others before reporting it
        for a in actors:
            ray.kill(a)
        if own is not None:
            remove_placement_group(own)
        raise
    return actors, own
