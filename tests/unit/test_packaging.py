"""The wheel installs everything under ``halo_ray`` (no top-level ``actors``/``jobs``) with its data files."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_wheel_layout(tmp_path):
    # Build from a copy: setuptools leaves build/ in the source tree, which would leak into later wheels.
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(".venv", ".git", "runs", "build", "*.egg-info",
                                                             "__pycache__", ".pytest_cache"))
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                           "-w", str(tmp_path), str(src)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    (wheel,) = tmp_path.glob("halo_ray-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names} == {"halo_ray", wheel.name.split("-")[0] + "-" + wheel.name.split("-")[1] + ".dist-info"}
    for expected in ("halo_ray/actors/rollout.py", "halo_ray/jobs/raft.py", "halo_ray/data/files/mbpp.jsonl",
                     "halo_ray/data/files/NOTICE", "halo_ray/tiny/corpus/functions.py", "halo_ray/driver/raft.py",
                     "halo_ray/pairs.py", "halo_ray/objectives/dpo.py"):
        assert expected in names, expected
    entry = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "halo-ray = halo_ray.cli:main" in entry


def test_every_driver_api_name_resolves():
    """``halo_ray.<name>`` for each documented entry point is the function of its driver module."""
    import halo_ray

    for name in halo_ray.__all__:
        if name != "__version__":
            assert callable(getattr(halo_ray, name)), name
