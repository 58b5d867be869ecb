"""Where a run's actors go and how weights travel between them: actor names, the placement plan (Ray
resource bundles) from the config, and the weight-sync transport (``rollout.weight_transfer``).

Pure functions of the config and the cluster's resources (a dict like ``ray.cluster_resources()``),
so that a plan for one or two GPUs can be computed and tested on a machine without any.

- Separate cards (the default): each rollout engine gets a bundle of ``rollout.num_gpus`` x
  ``tensor_parallel_size`` GPUs, each learner rank one of ``learner.num_gpus_per_rank``. On a box
  with two GPUs, one engine and one rank (``rollout.num_gpus=1``, ``learner.num_gpus_per_rank=1``),
  that is the rollout on one card and the learner on the other.
- Colocated (``cluster.colocate``, one GPU): engine ``i`` and learner rank ``i`` share one bundle of
  the learner's placement group; each actor asks for half of its GPUs, and the engine sleeps (vLLM's
  sleep mode frees its GPU memory) while the learner steps. On CPUs the bundle holds both actors' CPUs
  and the sleep only pauses the engine: they take turns on the cores instead of contending for them.

A plan that cannot fit raises ``ConfigError`` with the numbers and the keys to change.

Weights travel from learner rank 0 to the engines by Ray object ref (``object_store``: the default on
CPUs, and always for LoRA adapters) or over a collective (``nccl`` on GPUs, ``gloo`` on CPUs) through
vLLM's weight-transfer API (``halo_ray.weight_transfer``).
"""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace
from typing import Mapping, Sequence

from halo_ray.errors import ConfigError

WEIGHT_TRANSFERS = ("auto", "object_store", "nccl", "gloo")
COLLECTIVES = ("nccl", "gloo")


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


# A role a plan leaves out (``generate`` starts engines only, SFT a learner only): no bundles.
NO_ROLLOUT = SimpleNamespace(num_engines=0, num_gpus=0.0, num_cpus=0.0)
NO_LEARNER = SimpleNamespace(num_ranks=0, num_gpus_per_rank=0.0, num_cpus_per_rank=0.0)


def _bundle(cpus: float, gpus: float) -> dict[str, float]:
    return {"CPU": float(cpus), "GPU": float(gpus)} if gpus > 0 else {"CPU": float(cpus)}


def plan_placement(rollout, learner, resources: Mapping[str, float], colocate: bool = False,
                   tensor_parallel_size: int = 1) -> PlacementPlan:
    """The bundles for the rollout engines and learner ranks, checked against the cluster's totals.

    Args:
        rollout: the ``RolloutConfig`` (``num_engines``, ``num_gpus`` and ``num_cpus`` per engine); None
            plans no engines.
        learner: the ``LearnerConfig`` (``num_ranks``, ``num_gpus_per_rank``, ``num_cpus_per_rank``); None
            plans no learner ranks.
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
    rollout = NO_ROLLOUT if rollout is None else rollout
    learner = NO_LEARNER if learner is None else learner
    have_gpus, have_cpus = float(resources.get("GPU", 0.0)), float(resources.get("CPU", 0.0))
    engine_gpus = rollout.num_gpus * tensor_parallel_size
    if colocate:
        if (rollout.num_gpus > 0) != (learner.num_gpus_per_rank > 0):
            raise ConfigError("cluster.colocate shares each bundle between an engine and a learner rank: both on GPUs "
                              f"or both on CPUs (rollout.num_gpus={rollout.num_gpus:g}, "
                              f"learner.num_gpus_per_rank={learner.num_gpus_per_rank:g})")
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


def pack_strategy(bundles: Sequence[Mapping[str, float]], nodes: Sequence[Mapping]) -> str:
    """``STRICT_PACK`` (one node) when some alive node of ``nodes`` (``ray.nodes()``) has the resources of
    all ``bundles`` together, else ``PACK`` (spread as little as possible)."""
    need: dict[str, float] = {}
    for b in bundles:
        for k, v in b.items():
            need[k] = need.get(k, 0.0) + v
    for node in nodes:
        if node.get("Alive") and all(node["Resources"].get(k, 0) >= v for k, v in need.items()):
            return "STRICT_PACK"
    return "PACK"


def resolve_weight_transfer(choice: str, rollout_gpus: float, learner_gpus: float, lora: bool,
                            colocated: bool = False) -> str:
    """The transport of a run's weight syncs: ``object_store``, ``nccl`` or ``gloo``.

    Args:
        choice: ``rollout.weight_transfer`` (one of ``WEIGHT_TRANSFERS``).
        rollout_gpus: ``rollout.num_gpus`` (GPUs per engine).
        learner_gpus: ``learner.num_gpus_per_rank``.
        lora: ``model.lora.enabled``: adapters always travel by object ref.
        colocated: ``cluster.colocate``: engine ``i`` shares learner rank ``i``'s GPU, where NCCL cannot
            make them two ranks of one group.
    Returns:
        ``auto`` resolved (``nccl`` when engines and learner ranks are on separate GPUs and the full
        weights travel, else ``object_store``); an explicit choice unchanged.
    Raises:
        ConfigError: an unknown choice, a collective with LoRA, ``nccl`` without GPUs on both sides, or
            ``nccl`` between an engine and a rank on one GPU.
    """
    if choice not in WEIGHT_TRANSFERS:
        raise ConfigError(f"rollout.weight_transfer: {choice!r} is not one of {', '.join(WEIGHT_TRANSFERS)}")
    on_gpus = rollout_gpus > 0 and learner_gpus > 0
    if choice == "auto":
        return "nccl" if on_gpus and not lora and not colocated else "object_store"
    if choice == "nccl" and colocated:
        raise ConfigError("rollout.weight_transfer=nccl: cluster.colocate puts engine i and learner rank i on one GPU, "
                          "and NCCL cannot make two ranks of one device; set rollout.weight_transfer to auto or "
                          "object_store (weights by object ref)")
    if choice in COLLECTIVES and lora:
        raise ConfigError(f"rollout.weight_transfer={choice}: a LoRA run (model.lora.enabled) ships only the adapter, "
                          "by object ref; set rollout.weight_transfer to auto or object_store")
    if choice == "nccl" and not on_gpus:
        raise ConfigError(f"rollout.weight_transfer=nccl needs engines and learner ranks on GPUs (rollout.num_gpus="
                          f"{rollout_gpus:g}, learner.num_gpus_per_rank={learner_gpus:g}): on CPUs use gloo or "
                          "object_store")
    return choice


def engine_backend(choice: str, rollout_gpus: float, lora: bool, colocated: bool = False) -> str | None:
    """The vLLM weight-transfer backend an engine is built with (``weight_transfer_config``), or None.

    Decided from the rollout side alone (engines start before the learner, and ``generate`` has none):
    ``auto`` on GPUs builds an ``nccl`` one, which stays unused (and costs nothing) if the learner ranks
    turn out to be on CPUs.
    """
    if lora or choice == "object_store" or (colocated and choice == "auto"):
        return None
    if choice == "auto":
        return "nccl" if rollout_gpus > 0 else None
    return choice
