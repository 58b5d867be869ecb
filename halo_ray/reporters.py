"""Where a run's metrics go besides ``metrics.jsonl``: ``logging.report_to`` names reporters from ``REPORTERS``.

Each reporter opens one run of its tracking library when the run starts (with the job config as its
params), takes every scalar ``RunLog.log`` receives with its step, and finishes the run on close. The
libraries are imported only when a reporter starts, so the CLI starts as fast without them; a missing
library is a ``ConfigError`` at start-up naming ``logging.report_to`` and what to install.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import netrc
import os
import re
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import yaml

from halo_ray.errors import ConfigError
from halo_ray.io import write_json
from halo_ray.registry import Registry

log = logging.getLogger(__name__)

REPORTERS: Registry[type] = Registry("reporter")


def missing_libraries(names) -> list[str]:
    """One message per known reporter in ``names`` whose library is not installed (``find_spec``: nothing is
    imported, so checking a config stays fast)."""
    known = [(name, REPORTERS.get(name)) for name in names if name in REPORTERS]  # unknown ones: the choices check
    return [f"report_to lists {name}, but the {cls.module} library is not installed: {cls.install}"
            for name, cls in known if importlib.util.find_spec(cls.module) is None]


def start(name: str, run_dir: Path, config: dict, logging_cfg: Any, first_step: int | None = None) -> Any:
    """Start reporter ``name`` for the run in ``run_dir``; ``config`` is the job config as plain data,
    ``logging_cfg`` the run's LoggingConfig and ``first_step`` the first step this start logs when it redoes
    steps (a run continued from a checkpoint; ``RunLog``), else None.

    Raises ConfigError naming ``logging.report_to`` when the library is missing or cannot start a run.
    """
    cls = REPORTERS.get(name, "logging.report_to")
    try:
        return cls(run_dir, config, logging_cfg, first_step)
    except ImportError as exc:
        raise ConfigError(f"logging.report_to: {name} needs the {cls.module} library ({exc}): {cls.install}, "
                          f"or remove {name} from logging.report_to") from None
    except Exception as exc:  # noqa: BLE001  (the library's own errors: bad credentials, an unreachable server)
        raise ConfigError(f"logging.report_to: {name} could not start a run: {type(exc).__name__}: {exc}. "
                          f"{cls.hint}") from None


def flat(config: dict, prefix: str = "") -> dict[str, Any]:
    """``{"rollout": {"temperature": 0.7}}`` as ``{"rollout.temperature": 0.7}``."""
    out = {}
    for key, value in config.items():
        if isinstance(value, dict):
            out.update(flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _tracking(run_dir: Path) -> dict:
    """``<run>/tracking.json``: which W&B and MLflow runs this run directory writes to (kept for a resume)."""
    path = run_dir / "tracking.json"
    try:
        return json.loads(path.read_text()) if path.is_file() else {}
    except json.JSONDecodeError:
        return {}


def _remember(run_dir: Path, name: str, entry: dict) -> None:
    write_json(run_dir / "tracking.json", {**_tracking(run_dir), name: entry})


@REPORTERS.register("tensorboard")
class TensorBoardReporter:
    """TensorBoard event files under ``<run>/tensorboard/`` (torch's SummaryWriter); the config as text. A run
    continued from a checkpoint purges the events of the steps it redoes (SummaryWriter's ``purge_step``)."""

    module = "tensorboard"
    install = "pip install tensorboard"
    hint = "Check that <run>/tensorboard is writable."

    def __init__(self, run_dir: Path, config: dict, logging_cfg: Any, first_step: int | None = None):
        from torch.utils.tensorboard import SummaryWriter

        folder = run_dir / "tensorboard"
        # purge_step hides the earlier start's events of steps >= first_step from TensorBoard.
        self.writer = SummaryWriter(str(folder), purge_step=first_step if folder.is_dir() else None)
        self.writer.add_text("config", "```\n" + yaml.safe_dump(config, sort_keys=False) + "```", 0)

    def log(self, step: int, scalars: dict[str, float]) -> None:
        for key, value in scalars.items():
            self.writer.add_scalar(key, value, step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def wandb_mode(setting: str) -> str:
    """The W&B mode for ``logging.wandb_mode``: ``auto`` follows WANDB_MODE, else online where an API key is
    known (WANDB_API_KEY or a ``wandb login`` entry in ~/.netrc), else offline (sync later with ``wandb sync``)."""
    if setting != "auto":
        return setting
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    if os.environ.get("WANDB_API_KEY"):
        return "online"
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname or "api.wandb.ai"
    try:
        return "online" if netrc.netrc(os.environ.get("NETRC")).authenticators(host) else "offline"
    except (OSError, netrc.NetrcParseError):
        return "offline"


@REPORTERS.register("wandb")
class WandbReporter:
    """Weights & Biases: project ``logging.project``, run named after the run directory, files under
    ``<run>/wandb/``; mode from ``logging.wandb_mode``. A resumed run continues the same W&B run; W&B keeps
    the first values of the steps a resumed run redoes (it ignores a step below its last one)."""

    module = "wandb"
    install = "pip install 'halo-ray[tracking]' (or pip install wandb)"
    hint = "Log in with `wandb login`, or run offline with logging.wandb_mode=offline (or WANDB_MODE=offline)."

    def __init__(self, run_dir: Path, config: dict, logging_cfg: Any, first_step: int | None = None):
        import wandb

        run_id = _tracking(run_dir).get("wandb", {}).get("id")
        self.mode = wandb_mode(logging_cfg.wandb_mode)
        self.run = wandb.init(project=logging_cfg.project, name=run_dir.name, dir=str(run_dir), config=config,
                              mode=self.mode, id=run_id, resume="allow" if run_id else None,
                              reinit="create_new")
        _remember(run_dir, "wandb", {"id": self.run.id, "project": logging_cfg.project, "mode": self.mode})
        if self.mode == "offline":
            log.info("W&B run %s is offline in %s: upload it with `wandb sync %s`", self.run.id, run_dir / "wandb",
                     Path(self.run.dir).parent)

    def log(self, step: int, scalars: dict[str, float]) -> None:
        self.run.log(scalars, step=step)

    def close(self) -> None:
        self.run.finish()


def mlflow_tracking_uri(run_dir: Path) -> str:
    """MLFLOW_TRACKING_URI, else a file store ``<logging.run_dir>/mlruns`` beside the run directories."""
    return os.environ.get("MLFLOW_TRACKING_URI") or (run_dir.resolve().parent / "mlruns").as_uri()


_MLFLOW_BAD = re.compile(r"[^\w\-. /:]")  # MLflow accepts letters, digits, _ - . space / : in names


@REPORTERS.register("mlflow")
class MlflowReporter:
    """MLflow: experiment ``logging.project``, run named after the run directory, the config as params (and
    config.yaml as an artifact); tracking URI from MLFLOW_TRACKING_URI, else ``file:<logging.run_dir>/mlruns``.
    A resumed run continues the same MLflow run; the steps it redoes get a second value at the same step
    (MLflow's client cannot delete a metric's history)."""

    module = "mlflow"
    install = "pip install 'halo-ray[tracking]' (or pip install mlflow-skinny)"
    hint = "Check MLFLOW_TRACKING_URI and that its server is reachable."

    def __init__(self, run_dir: Path, config: dict, logging_cfg: Any, first_step: int | None = None):
        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient

        self.uri = mlflow_tracking_uri(run_dir)
        if self.uri.startswith("file:"):  # MLflow 3 keeps file stores working only on request
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        self.client = MlflowClient(self.uri)
        saved = _tracking(run_dir).get("mlflow", {})
        if saved.get("tracking_uri") == self.uri:  # a resumed run continues its MLflow run
            self.run_id = saved["run_id"]
            self.client.update_run(self.run_id, status="RUNNING")
        else:
            experiment = self._experiment(logging_cfg.project)
            self.run_id = self.client.create_run(experiment, run_name=run_dir.name).info.run_id
            _remember(run_dir, "mlflow", {"run_id": self.run_id, "tracking_uri": self.uri,
                                          "experiment": logging_cfg.project})
            params = [Param(_MLFLOW_BAD.sub("_", k), str(v)[:6000]) for k, v in flat(config).items()]
            for i in range(0, len(params), 100):  # MLflow takes at most 100 params a batch
                self.client.log_batch(self.run_id, params=params[i:i + 100])
            if (run_dir / "config.yaml").is_file():
                self.client.log_artifact(self.run_id, str(run_dir / "config.yaml"))

    def _experiment(self, name: str) -> str:
        found = self.client.get_experiment_by_name(name)
        if found is not None:
            return found.experiment_id
        try:
            return self.client.create_experiment(name)
        except Exception:  # noqa: BLE001  (another run created it first)
            found = self.client.get_experiment_by_name(name)
            if found is None:
                raise
            return found.experiment_id

    def log(self, step: int, scalars: dict[str, float]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(_MLFLOW_BAD.sub("_", k), v, now, step) for k, v in scalars.items()]
        for i in range(0, len(metrics), 1000):  # MLflow takes at most 1000 metrics a batch
            self.client.log_batch(self.run_id, metrics=metrics[i:i + 1000])

    def close(self) -> None:
        self.client.set_terminated(self.run_id)
