"""``VerifierPool``: a Ray actor around ``halo_ray.verifiers.Verifier`` (warm sandboxes + cache).

The actor adds only placement and lifecycle: it sizes its sandboxes to the CPUs Ray gave it, takes
batches (a list of record dicts, usually passed as an object ref, which Ray resolves), and returns
the result dicts. Back-pressure lives with the caller: ``BoundedVerifier`` keeps at most
``max_in_flight`` batches outstanding and waits for one to finish before submitting more.
"""

from __future__ import annotations

import dataclasses
import math

import ray

from halo_ray.placement import actor_name
from halo_ray.samples import project, warm_up
from halo_ray.selection import score_rollouts
from halo_ray.verifiers.config import VerifierConfig
from halo_ray.timing import BusyClock
from halo_ray.verifiers import Verifier


@ray.remote(concurrency_groups={"control": 1})
class VerifierPool:
    """One node's sandboxes; ``cfg.workers`` 0 means one per CPU assigned to this actor.

    ``workers``, ``stats`` and ``close`` run in their own concurrency group: they answer at once,
    never queued behind the batches in flight (the driver reads ``stats`` at every step).
    """

    def __init__(self, cfg: VerifierConfig):
        cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1.0)
        workers = cfg.workers or max(1, math.floor(cpus))
        self.verifier = Verifier(dataclasses.replace(cfg, workers=workers))
        self.busy = BusyClock()
        warm_up()

    @ray.method(concurrency_group="control")
    def workers(self) -> int:
        return self.verifier.workers

    def verify(self, batch: list[dict]) -> list[dict]:
        """Results for ``batch`` in its order (see ``halo_ray.verifiers.verify_batch``)."""
        return self.verifier.verify(batch)

    def score(self, table, problems: dict, columns: tuple[str, ...] | None = None):
        """A ``ScoredBatch`` for a ``RolloutBatch`` (usually a ref from a rollout actor): see
        ``halo_ray.selection.score_rollouts``; only ``columns`` of it when given (what the caller reads)."""
        with self.busy.active():
            return project(score_rollouts(table, problems, self.verifier.verify), columns)

    @ray.method(concurrency_group="control")
    def stats(self) -> dict:
        return {"busy_s": self.busy.busy_s(), "workers": self.verifier.workers}

    @ray.method(concurrency_group="control")
    def close(self) -> None:
        self.verifier.close()


# A pool that dies (a sandbox took its process down, the memory monitor, a node lost) is restarted by
# Ray, and its calls in flight are retried on the new one: verify and score are pure functions of
# their arguments, so a retry returns what the first try would have.
VERIFIER_MAX_RESTARTS = 5
VERIFIER_MAX_TASK_RETRIES = 3


def start_pools(cfg: VerifierConfig, num_pools: int = 1, cpus_per_pool: float = 1.0, run: str = "") -> list:
    """Start ``num_pools`` VerifierPool actors of ``cpus_per_pool`` CPUs each (threaded, one call per worker).

    ``run`` names them ``<run>/verifier-<i>`` (``ray list actors``, the dashboard); empty leaves them unnamed.
    """
    concurrency = max(1, cfg.workers or math.floor(cpus_per_pool))
    # Out of order: a ``score`` whose rollout is still sampling must not hold back the calls behind
    # it (Ray keeps a one-thread actor's calls in order, dependencies included).
    return [VerifierPool.options(name=actor_name(run, "verifier", i), num_cpus=cpus_per_pool,
                                 max_concurrency=concurrency, allow_out_of_order_execution=True,
                                 max_restarts=VERIFIER_MAX_RESTARTS,
                                 max_task_retries=VERIFIER_MAX_TASK_RETRIES).remote(cfg)
            for i in range(num_pools)]


class BoundedVerifier:
    """Submit batches round-robin to pools, with at most ``max_in_flight`` outstanding (back-pressure).

    ``submit`` blocks while the limit is reached; ``drain`` returns every finished result in
    submission order.
    """

    def __init__(self, pools: list, max_in_flight: int):
        self.pools = pools
        self.max_in_flight = max(1, max_in_flight)
        self._next = 0
        self._pending: list = []
        self._order: list = []

    def submit(self, batch) -> ray.ObjectRef:
        """Send one batch (a list of records or an object ref to one); returns the result ref."""
        while len(self._pending) >= self.max_in_flight:
            _, self._pending = ray.wait(self._pending, num_returns=1)
        pool = self.pools[self._next % len(self.pools)]
        self._next += 1
        ref = pool.verify.remote(batch)
        self._pending.append(ref)
        self._order.append(ref)
        return ref

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    def drain(self) -> list[list[dict]]:
        """Wait for every submitted batch; their results in submission order."""
        results = ray.get(self._order)
        self._pending, self._order = [], []
        return results


def verify_on_ray(records: list[dict], cfg: VerifierConfig, batch_size: int = 64, num_pools: int = 1,
                  cpus_per_pool: float = 1.0) -> list[dict]:
    """Verify ``records`` on VerifierPool actors in the current Ray session; results in input order."""
    pools = start_pools(cfg, num_pools, cpus_per_pool)
    try:
        workers = sum(ray.get([p.workers.remote() for p in pools]))
        client = BoundedVerifier(pools, cfg.max_in_flight or 2 * workers)
        for i in range(0, len(records), batch_size):
            client.submit(ray.put(records[i:i + batch_size]))
        return [r for batch in client.drain() for r in batch]
    finally:
        ray.get([p.close.remote() for p in pools])
        for p in pools:
            ray.kill(p)
