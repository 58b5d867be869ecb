"""The layering rule of STYLE.md, checked on the import statements of every module."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DRIVER_PREFIXES = ("halo_ray/driver/", "halo_ray/cli/")  # the only halo_ray modules that import ray and actors


def imported(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def files(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


def rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


@pytest.mark.parametrize("path", files("halo_ray"), ids=rel)
def test_components_never_import_ray_actors_or_jobs(path):
    names = imported(path)
    is_driver = rel(path).startswith(DRIVER_PREFIXES)
    assert not any(n.startswith(("jobs", "halo_ray.jobs")) for n in names), "halo_ray/ must not import jobs"
    if not is_driver:
        assert not any(n == "ray" or n.startswith("ray.") for n in names), "only the driver and CLI import ray"
        assert not any(n.startswith(("actors", "halo_ray.actors")) for n in names), "only the driver imports actors"
        assert not any(n.startswith("halo_ray.driver") for n in names), "components never import the driver (Ray)"


@pytest.mark.parametrize("path", files("actors"), ids=rel)
def test_actors_never_import_jobs_driver_or_each_other(path):
    names = imported(path)
    assert not any(n.startswith(("jobs", "halo_ray.jobs", "halo_ray.driver", "halo_ray.cli")) for n in names)
    others = {f"halo_ray.actors.{p.stem}" for p in files("actors")} - {f"halo_ray.actors.{path.stem}"}
    assert not names & others, "actors talk through handles, not imports"


@pytest.mark.parametrize("path", files("halo_ray") + files("actors") + files("jobs"), ids=rel)
def test_no_top_level_actors_or_jobs_imports(path):
    # The wheel installs these folders as halo_ray.actors and halo_ray.jobs only.
    assert not any(n.split(".")[0] in {"actors", "jobs"} for n in imported(path))
