"""A source checkout imported straight from its folder (Ray's --working-dir copy, PYTHONPATH=.) is a
whole package: halo_ray.actors and halo_ray.jobs resolve to the sibling actors/ and jobs/ folders, as an
install maps them (setuptools package-dir). ``python -S`` keeps the editable install's hook out."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_checkout_on_pythonpath_has_actors_and_jobs(tmp_path):
    code = "import halo_ray.actors, halo_ray.jobs; print(halo_ray.actors.__path__[0]); print(halo_ray.jobs.__path__[0])"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(ROOT / "actors"), str(ROOT / "jobs")]
