"""One real local Ray session for the whole integration run."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="package")
def ray_session():
    """A local Ray session with 4 logical CPUs on the 2-core machine (rollout, verifier and learner
    actors of one run fit at once), started once for the integration tests with the driver's worker
    environment, and stopped when they are done (package scope: the unit tests after them check that
    commands start no Ray session, and the sandbox tests need the CPUs).

    It is started here, not by ``driver.init``, so that a command run in-process that calls
    ``driver.shutdown()`` stops its own actors but never this session.
    """
    ray = pytest.importorskip("ray", reason="integration tests need ray")
    from halo_ray.driver import WORKER_ENV

    if not ray.is_initialized():
        ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False, namespace="halo-ray",
                 runtime_env={"env_vars": dict(WORKER_ENV)})
    assert ray.cluster_resources().get("CPU", 0) >= 4, ray.cluster_resources()
    yield ray
    from halo_ray import driver

    driver.shutdown()  # the driver's cached rollout actors
    ray.shutdown()


@pytest.fixture(scope="package")
def sft_model(ray_session, tiny_model, tmp_path_factory):
    """The tiny model after a short SFT on the demo family (about 100 optimizer steps), through the
    CLI a user runs: it writes valid Python often enough that RAFT and GRPO steps have samples to
    learn from. Returns the ``final/`` directory."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    out = tmp_path_factory.mktemp("sft") / "run"
    cmd = [str(Path(sys.executable).with_name("halo-ray")), "sft", "train", "--model", tiny_model, "--data", "demo#sft",
           "--epochs", "7", "--output", str(out), "--set", "learner.lr=0.002", "--set", "learner.micro_batch_size=32",
           "--set", "learner.zero_stage=0", "--set", "learner.warmup_steps=10"]
    env = dict(os.environ, RAY_ADDRESS=ray_session.get_runtime_context().gcs_address)
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    return str(out / "final")
