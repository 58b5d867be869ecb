"""Where a run's actors go: actor names, and the placement plan (Ray resource bundles) from the config.

Pure functions of the config and the cluster's resources (a dict like ``ray.cluster_resources()``),
so that a plan for one or two GPUs can be computed and tested on a machine without any.

- Separate cards (the default): each rollout engine gets a bundle of ``rollout.num_gpus`` x
  ``tensor_parallel_size`` GPUs, each learner rank one of ``learner.num_gpus_per_rank``. On a box
  with two GPUs, one engine and one rank (``rollout.num_gpus=1``, ``learner.num_gpus_per_rank=1``),
  that is the rollout on one card and the learner on the other.
- Colocated (``cluster.colocate``, one GPU): engine ``i`` and learner rank ``i`` share one bundle;
  each actor asks for half of its GPUs, and the engine sleeps while the learner steps.

A plan that cannot fit raises ``ConfigError`` with the numbers and the keys to change.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from halo_ray.errors import ConfigError


def actor_name(run: str, role: str, index: int) -> str | None:
    """``<run>/<role>-<index>`` (``ray list actors``, the dashboard), or None (unnamed) without a run."""
    return f"{run}/{role}-{index}" if run else None


@dataclass(frozen=True)
class PlacementPlan:
    """Resource bundles of a run.

    Attributes:
        rollout: one bundle per rollout engine (its CPUs, and GPUs for all its tensor-parallel shards).
        learner: one bundle per learner rank.
        colocated: rollout engine ``i`` and learner rank ``i`` share ``learner[i]``; ``rollout`` is
            then empty and each actor asks for ``rollout_gpus`` / ``learner_gpus`` of it.
        rollout_gpus: GPUs each engine actor requests (inside its bundle).
        learner_gpus: GPUs each learner rank actor requests (inside its bundle).
    """

    rollout: tuple[dict[str, float], ...]
    learner: tuple[dict[str, float], ...]
    colocated: bool
    rollout_gpus: float
    learner_gpus: float

    @property
    def bundles(self) -> list[dict[str, float]]:
        """Every bundle of the plan, rollout first (the order of one placement group holding them all)."""
        return [dict(b) for b in self.rollout + self.learner]

    def total(self, resource: str) -> float:
        return sum(b.get(resource, 0.0) for b in self.rollout + self.learner)


def _bundle(cpus: float, gpus: float) -> dict[str, float]:
    return {"CPU": float(cpus), "GPU": float(gpus)} if gpus > 0 else {"CPU": float(cpus)}


def plan_placement(rollout, learner, resources: Mapping[str, float], colocate: bool = False,
                   tensor_parallel_size: int = 1) -> PlacementPlan:
    """The bundles for the rollout engines and learner ranks, checked against the cluster's totals.

    Args:
        rollout: the ``RolloutConfig`` (``num_engines``, ``num_gpus`` and ``num_cpus`` per engine).
        learner: the ``LearnerConfig`` (``num_ranks``, ``num_gpus_per_rank``, ``num_cpus_per_rank``).
        resources: the cluster's resources, e.g. ``ray.cluster_resources()`` (``CPU``, ``GPU``...).
        colocate: share each GPU between an engine and a learner rank (``cluster.colocate``).
        tensor_parallel_size: GPUs an engine's model is split over; each gets ``rollout.num_gpus``.
    Returns:
        The ``PlacementPlan``.
    Raises:
        ConfigError: the plan needs more CPUs or GPUs than ``resources`` has, or colocation is asked
            for where it cannot work; the message gives the numbers and the keys to change.
    """
    if tensor_parallel_size < 1:
        raise ConfigError(f"tensor_parallel_size must be at least 1, got {tensor_parallel_size}")
    have_gpus, have_cpus = float(resources.get("GPU", 0.0)), float(resources.get("CPU", 0.0))
    engine_gpus = rollout.num_gpus * tensor_parallel_size
    if colocate:
        if rollout.num_gpus <= 0 or learner.num_gpus_per_rank <= 0:
            raise ConfigError("cluster.colocate shares GPUs between engines and learner ranks: set rollout.num_gpus "
                              f"and learner.num_gpus_per_rank above 0 (got {rollout.num_gpus:g} and "
                              f"{learner.num_gpus_per_rank:g}), or turn colocate off to run on CPUs")
        if rollout.num_engines != learner.num_ranks:
            raise ConfigError(f"cluster.colocate pairs engine i with learner rank i: rollout.num_engines "
                              f"({rollout.num_engines}) must equal learner.num_ranks ({learner.num_ranks})")
        share = max(engine_gpus, learner.num_gpus_per_rank)
        bundles = tuple(_bundle(rollout.num_cpus + learner.num_cpus_per_rank, share) for _ in range(learner.num_ranks))
        plan = PlacementPlan(rollout=(), learner=bundles, colocated=True, rollout_gpus=share / 2,
                             learner_gpus=share / 2)
    else:
        plan = PlacementPlan(
            rollout=tuple(_bundle(rollout.num_cpus, engine_gpus) for _ in range(rollout.num_engines)),
            learner=tuple(_bundle(learner.num_cpus_per_rank, learner.num_gpus_per_rank) for _ in range(learner.num_ranks)),
            colocated=False, rollout_gpus=engine_gpus, learner_gpus=float(learner.num_gpus_per_rank))
    need_gpus, need_cpus = plan.total("GPU"), plan.total("CPU")
    if need_gpus > have_gpus:
        if colocate:
            parts = (f"{learner.num_ranks} shared bundle(s) of {plan.learner[0]['GPU']:g} GPU "
                     "(learner.num_ranks, max of rollout.num_gpus x tensor_parallel_size and learner.num_gpus_per_rank)")
        else:
            parts = (f"rollout {rollout.num_engines} x {rollout.num_gpus:g} x {tensor_parallel_size} "
                     f"(rollout.num_engines x rollout.num_gpus x tensor_parallel_size) + learner {learner.num_ranks} x "
                     f"{learner.num_gpus_per_rank:g} (learner.num_ranks x learner.num_gpus_per_rank)")
        hint = (" set cluster.colocate=true to share the GPU between engine and learner, or" if not colocate
                and have_gpus >= max(engine_gpus, learner.num_gpus_per_rank) > 0 else "")
        raise ConfigError(f"placement: the run needs {need_gpus:g} GPUs ({parts}) but the cluster has "
                          f"{have_gpus:g}:{hint} lower those numbers (0 GPUs runs on CPU)")
    if need_cpus > have_cpus:
        raise ConfigError(f"placement: the run needs {need_cpus:g} CPUs (rollout {rollout.num_engines} x "
                          f"{rollout.num_cpus:g}, learner {learner.num_ranks} x {learner.num_cpus_per_rank:g}) but the "
                          f"cluster has {have_cpus:g}: lower rollout.num_cpus or learner.num_cpus_per_rank")
    return plan
