"""One real local Ray session for the whole integration run."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def ray_session():
    """A local Ray session with 4 logical CPUs on the 2-core machine (rollout, verifier and learner
    actors of one run fit at once), started once per test run with the driver's worker environment.

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
