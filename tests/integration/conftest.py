"""One real local Ray session for the whole integration run."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def ray_session():
    """``ray.init(num_cpus=2)`` once per test run; shut down at the end."""
    ray = pytest.importorskip("ray", reason="integration tests need ray")
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()
