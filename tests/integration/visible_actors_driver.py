"""A driver process for test_visible_actors.py: a local session started by ``driver.init`` with
``cluster.dashboard: true``, a run's actors started by their start functions, then faults.

Prints one JSON line of what it saw (the test asserts on it). It runs in its own process because
the integration suite's shared session has no dashboard, and the state API (``ray list actors``)
is served by the dashboard.

    python tests/integration/visible_actors_driver.py MODEL_DIR
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time

import ray
from ray.util.state import list_actors

from halo_ray import driver
from halo_ray.sections import ClusterConfig, LearnerConfig, ModelConfig, ObjectiveConfig, RolloutConfig, VerifierConfig

RUN = "visible-run"
SLOW = {"id": "slow", "code": "import time\ntime.sleep(4)\ndef f(x):\n    return x + 1\n",
        "tests": "assert f(1) == 2\n"}
RECORDS = [SLOW] + [{"id": i, "code": f"def f(x):\n    return x + {1 if i % 2 else 2}\n", "tests": "assert f(1) == 2\n"}
                    for i in range(5)]


def actors(**kw):
    # This session's own address: other Ray instances may run on the machine.
    return list_actors(address=ray.get_runtime_context().gcs_address, limit=1000, **kw)


def actor(name: str):
    (row,) = actors(filters=[("name", "=", name)], detail=True)
    return row


def wait_alive(name: str, old_pid: int = 0, timeout: float = 300) -> dict:
    """The actor's state once it is ALIVE in a process other than ``old_pid`` (restarted)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = actor(name)
        if row.state == "ALIVE" and row.pid != old_pid:
            return row
        time.sleep(0.5)
    raise TimeoutError(f"{name} not alive again: {row.state}")


def main(model_dir: str) -> None:
    from halo_ray.actors.learner import LearnerGroup
    from halo_ray.actors.verifier import start_pools

    driver.init(ClusterConfig(dashboard=True, num_cpus=4))
    out = {}
    model = ModelConfig(path=model_dir, max_model_len=256)
    rollout = driver.RolloutGroup(model, RolloutConfig(num_engines=1, max_new_tokens=8, max_num_seqs=8), run=RUN)
    pools = start_pools(VerifierConfig(name="python", workers=1, timeout_s=10.0), num_pools=1, cpus_per_pool=1.0,
                        run=RUN)
    learner = LearnerGroup(model, LearnerConfig(num_ranks=2, zero_stage=0), ObjectiveConfig(name="sft"), run=RUN)
    try:
        ray.get(pools[0].workers.remote())
        out["names"] = sorted(a.name for a in actors(filters=[("state", "=", "ALIVE")])
                              if a.name.startswith(RUN + "/"))

        # A verifier pool killed mid-call (SIGKILL of its worker process): Ray restarts it, the call retries.
        before = actor(f"{RUN}/verifier-0")
        ref = pools[0].verify.remote(RECORDS)
        time.sleep(2.0)  # the slow program is running in the sandbox
        os.kill(before.pid, signal.SIGKILL)
        results = ray.get(ref, timeout=180)
        after = wait_alive(f"{RUN}/verifier-0", before.pid)
        out["verifier"] = {"pid_before": before.pid, "pid_after": after.pid, "restarts": after.num_restarts,
                           "verdicts": [(r["id"], r["verdict"]) for r in results]}
        # And once more through Ray's own kill that allows a restart.
        ray.kill(pools[0], no_restart=False)
        again = ray.get(pools[0].verify.remote(RECORDS[1:3]), timeout=180)
        out["verifier"]["after_ray_kill"] = [(r["id"], r["verdict"]) for r in again]
        out["verifier"]["restarts_after_ray_kill"] = wait_alive(f"{RUN}/verifier-0", after.pid).num_restarts

        # A rollout engine killed: Ray restarts it (the stream re-issues its prompts and ships weights).
        engine = rollout.actors[0]
        pid = actor(f"{RUN}/rollout-0").pid
        os.kill(pid, signal.SIGKILL)
        row = wait_alive(f"{RUN}/rollout-0", pid)  # calls in flight while it died fail (no task retries)
        ray.get(engine.ready.remote(), timeout=300)  # the same handle reaches the restarted engine
        out["rollout"] = {"pid_before": pid, "pid_after": row.pid, "restarts": row.num_restarts,
                          "version_after_restart": ray.get(engine.version.remote())}
    finally:
        learner.shutdown()
        for p in pools:
            ray.kill(p)
        rollout.shutdown()
        driver.shutdown()
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1])
