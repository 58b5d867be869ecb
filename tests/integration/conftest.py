"""One real local Ray session for the whole integration run."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def ray_session():
    """A local Ray session (4 logical CPUs on the 2-core machine) started once per test run, as the driver starts it."""
    ray = pytest.importorskip("ray", reason="integration tests need ray")
    from halo_ray import driver
    from halo_ray.sections import ClusterConfig

    driver.init(ClusterConfig(num_cpus=4))
    yield ray
    driver.shutdown()
