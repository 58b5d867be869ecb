"""Actors a user can see, and faults they survive: names ``<run>/<role>-<i>`` in ``ray list actors``
(the state API, served by the dashboard that ``cluster.dashboard: true`` starts); a verifier pool
killed mid-call restarts and the call's retry returns the right results; a killed rollout engine
restarts (with its initial weights: the stream ships the latest)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not shutil.which("bwrap") or os.geteuid() != 0,
                                 reason="the sandbox needs bubblewrap (apt-get install bubblewrap) and root")]

DRIVER = Path(__file__).with_name("visible_actors_driver.py")


def test_named_actors_restart_after_faults(tiny_model):
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}  # a local session of its own
    done = subprocess.run([sys.executable, str(DRIVER), tiny_model], capture_output=True, text=True, timeout=800,
                          env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    run = "visible-run"
    assert seen["names"] == [f"{run}/learner-0", f"{run}/learner-1", f"{run}/rollout-0", f"{run}/verifier-0"]

    v = seen["verifier"]
    assert v["pid_after"] != v["pid_before"] and v["restarts"] == 1
    # The retried call ran every record on the restarted pool: the slow one passes, the others as written.
    assert v["verdicts"] == [["slow", "SUCCESS"]] + [[i, "SUCCESS" if i % 2 else "WRONG_OUTPUT"] for i in range(5)]
    assert v["after_ray_kill"] == [[0, "WRONG_OUTPUT"], [1, "SUCCESS"]] and v["restarts_after_ray_kill"] == 2

    r = seen["rollout"]
    assert r["pid_after"] != r["pid_before"] and r["restarts"] == 1
    assert r["version_after_restart"] == -1  # restarted with the initial weights: waits for the driver's
