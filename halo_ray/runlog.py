"""The run directory ``runs/<name>/``: resolved config, metrics.jsonl, TensorBoard, samples, report.

Metric names are namespaced (``rollout/``, ``verify/``, ``train/``, ``eval/``, ``stream/``).
``metrics.jsonl`` is append-only with one whole line per record, so a killed run keeps what it logged.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from halo_ray.config import dump_yaml
from halo_ray.errors import ConfigError
from halo_ray.io import append_jsonl, atomic_write, read_jsonl, write_table

log = logging.getLogger(__name__)


def run_path(run_dir: str, name: str, job: str, resume: bool = False) -> Path:
    """``run_dir/name``, or ``run_dir/<job>-<timestamp>`` when no name is given.

    A run directory belongs to one run: one that already holds metrics or checkpoints is only
    reused with ``resume`` (ConfigError otherwise, naming the directory and the two ways out).
    """
    path = Path(run_dir) / (name or f"{job}-{time.strftime('%Y%m%d-%H%M%S')}")
    used = (path / "metrics.jsonl").exists() or (path / "checkpoints").exists() or (path / "final").exists()
    if used and not resume:
        raise ConfigError(f"{path} already holds a run: continue it with --resume, or choose another "
                          "--output (logging.name)")
    return path


class RunLog:
    """Writes one run's files.

    Args:
        path: the run directory (created).
        config: the resolved job config, written to ``config.yaml``.
        tensorboard: also write TensorBoard event files under ``tensorboard/``.
    """

    def __init__(self, path: str | Path, config: Any, tensorboard: bool = True):
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        with atomic_write(self.path / "config.yaml") as fh:
            fh.write(dump_yaml(config))
        self._metrics = (self.path / "metrics.jsonl").open("a")
        self._tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(str(self.path / "tensorboard"))
            except ImportError:  # tensorboard is a dependency; a broken install should not stop a run
                log.warning("tensorboard is not importable; metrics go to metrics.jsonl only")

    def log(self, step: int, metrics: dict[str, Any], **labels: Any) -> None:
        """Append a metrics record (``step``, labels, namespaced scalars) and mirror scalars to TensorBoard."""
        append_jsonl(self._metrics, {"step": step, **labels, **metrics, "time": time.time()})
        if self._tb is not None:
            for key, value in metrics.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    self._tb.add_scalar(key, value, step)
            self._tb.flush()

    def samples(self, name: str, table) -> Path:
        """Persist a batch of samples as ``samples/<name>.parquet``."""
        out = self.path / "samples" / f"{name}.parquet"
        write_table(out, table)
        return out

    def close(self) -> None:
        self._metrics.close()
        if self._tb is not None:
            self._tb.close()


def read_metrics(path: str | Path) -> list[dict]:
    """The records of a run's ``metrics.jsonl`` (a torn last line from a kill is skipped)."""
    return [record for _, record in read_jsonl(Path(path) / "metrics.jsonl", allow_torn_tail=True)]
