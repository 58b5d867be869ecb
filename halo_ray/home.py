"""Where a job's outputs go: relative output paths resolve against ``$HALO_RAY_HOME``.

A job submitted with ``ray job submit --working-dir .`` runs inside Ray's temporary copy of that
folder, which Ray deletes with its session; a run directory written relative to the job's working
directory would vanish with it. Jobs (``jobs/*.py``) therefore anchor every relative output path at
a stable root: ``$HALO_RAY_HOME`` when set (point it at shared storage on a multi-node cluster),
else ``~/halo-ray``. Input paths (configs, problems files) stay relative to the working directory,
where Ray uploads them. Absolute paths are left alone.
"""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path

HOME_ENV = "HALO_RAY_HOME"


def halo_ray_home() -> Path:
    """``$HALO_RAY_HOME`` (expanded, absolute), else ``~/halo-ray``."""
    return Path(os.environ.get(HOME_ENV) or Path.home() / "halo-ray").expanduser().absolute()


def anchored(path: str) -> str:
    """``path`` itself when absolute or empty, else ``halo_ray_home() / path``."""
    if not path or Path(path).expanduser().is_absolute():
        return str(Path(path).expanduser()) if path else path
    return str(halo_ray_home() / path)


def anchor_job_outputs(config, job: str):
    """``config`` with its output paths anchored (``logging.run_dir``, ``benchmark.output``,
    ``benchmark.save_samples``) and an empty ``logging.name`` filled with ``<job>-<time>``, so the job
    can print its absolute run directory before it starts.

    Args:
        config: a job config (a frozen dataclass with a ``logging`` section, maybe a ``benchmark`` one).
        job: the job's short name (``raft``, ``sft``...), the prefix of a generated run name.
    Returns:
        The new config; the original is unchanged.
    """
    changes = {}
    if hasattr(config, "logging"):
        name = config.logging.name or f"{job}-{time.strftime('%Y%m%d-%H%M%S')}"
        changes["logging"] = dataclasses.replace(config.logging, run_dir=anchored(config.logging.run_dir), name=name)
    if hasattr(config, "benchmark"):
        changes["benchmark"] = dataclasses.replace(config.benchmark, output=anchored(config.benchmark.output),
                                                   save_samples=anchored(config.benchmark.save_samples))
    return dataclasses.replace(config, **changes)


def run_directory(config) -> Path:
    """The absolute run directory of an anchored job config: ``logging.run_dir / logging.name``."""
    return Path(config.logging.run_dir) / config.logging.name
