"""Fixtures shared by unit and integration tests."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """The embedded tiny model (seed 0), built once per test run; returns its directory as str."""
    from halo_ray.tiny import init_tiny

    return str(init_tiny(tmp_path_factory.mktemp("models") / "tiny", seed=0))
