"""VerifierPool on a real local Ray session: batches by ref, results in order, bounded in flight."""

from __future__ import annotations

import os
import shutil
import time

import pytest

from halo_ray.sections import VerifierConfig

pytestmark = pytest.mark.skipif(not shutil.which("bwrap") or os.geteuid() != 0,
                                reason="the sandbox needs bubblewrap (apt-get install bubblewrap) and root")

TESTS = "assert f(1) == 2\nassert f(2) == 3\n"


def records(n):
    return [{"id": i, "code": f"def f(x):\n    return x + {1 if i % 3 else 2}\n", "tests": TESTS} for i in range(n)]


def test_verifier_pool_batches_by_ref(ray_session):
    ray = ray_session
    from halo_ray.actors.verifier import BoundedVerifier, start_pools

    cfg = VerifierConfig(timeout_s=2.0)
    pools = start_pools(cfg, num_pools=1, cpus_per_pool=1.0)
    try:
        assert ray.get(pools[0].workers.remote()) == 1  # sized to the CPUs Ray gave it
        client = BoundedVerifier(pools, max_in_flight=2)
        refs = []
        for i in range(0, 24, 4):
            refs.append(client.submit(ray.put(records(24)[i:i + 4])))
            assert client.in_flight <= 2
        results = [r for batch in client.drain() for r in batch]
    finally:
        ray.get([p.close.remote() for p in pools])
        for p in pools:
            ray.kill(p)
    assert [r["id"] for r in results] == list(range(24))
    assert [r["verdict"] for r in results] == ["WRONG_OUTPUT" if i % 3 == 0 else "SUCCESS" for i in range(24)]


def test_verify_on_ray_matches_local(ray_session):
    from halo_ray.actors.verifier import verify_on_ray
    from halo_ray.verifiers import verify_batch

    cfg = VerifierConfig(timeout_s=2.0, workers=1)
    remote = verify_on_ray(records(10), cfg, batch_size=3)
    local = verify_batch(records(10), cfg)
    strip = lambda rows: [(r["id"], r["verdict"], r["pass_rate"], r["reward"]) for r in rows]  # noqa: E731
    assert strip(remote) == strip(local)


def test_driver_verify(ray_session):
    from halo_ray import driver

    out = driver.verify(records(6), VerifierConfig(timeout_s=2.0), batch_size=2)
    assert [(r["id"], r["verdict"]) for r in out] == [(i, "WRONG_OUTPUT" if i % 3 == 0 else "SUCCESS") for i in range(6)]


def test_stats_answer_while_a_batch_is_in_flight(ray_session):
    """The driver reads ``stats`` at every step: it must not wait for the batches in flight (it did, 0.3 s a step)."""
    ray = ray_session
    from halo_ray.actors.verifier import start_pools

    pools = start_pools(VerifierConfig(timeout_s=5.0, workers=1), num_pools=1, cpus_per_pool=1.0)
    try:
        ray.get(pools[0].workers.remote())  # started
        slow = {"id": "slow", "code": "import time\ntime.sleep(2)\ndef f(x):\n    return x + 1\n", "tests": TESTS}
        ref = pools[0].verify.remote([slow])  # running
        later = ray.remote(lambda batch: time.sleep(2) or batch).remote(records(1))
        queued = pools[0].verify.remote(later)  # waiting for its argument, as a score waits for its rollout
        stats = ray.get(pools[0].stats.remote())
        ready, _ = ray.wait([ref, queued], num_returns=2, timeout=0)
        assert not ready, "stats waited for the batches in flight"
        assert stats["workers"] == 1
        assert ray.get(ref)[0]["verdict"] == "SUCCESS"
        assert ray.get(queued)[0]["verdict"] == "WRONG_OUTPUT"
    finally:
        for p in pools:
            ray.kill(p)
