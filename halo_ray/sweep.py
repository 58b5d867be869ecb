"""Grid sweeps over config keys (``halo-ray sweep``): the plan, the run names, the result table.

A grid ``--grid learner.lr=1e-5,5e-5 --grid objective.beta=0.1,0.3`` expands to the cartesian product
of its values (4 points, the first key slowest); each point is one run of a job's command with the
point's values as ``--set`` overrides, in its own run directory under the sweep's folder. The chosen
metric is read back from each run's directory (``read_metric``). Tune on the validation split: a
sweep's numbers are for choosing settings, never results to report (seed 002).

Pure: the CLI (``halo_ray.cli.sweep``) starts the runs.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from pathlib import Path
from typing import Any, Sequence

import yaml

from halo_ray.errors import ConfigError, DataError

JOBS: dict[str, tuple[str, ...]] = {
    "sft": ("sft", "train"),
    "raft": ("raft", "train"),
    "grpo": ("grpo", "train"),
    "dpo": ("dpo", "run"),
    "dpo-prefs": ("dpo", "prefs"),
    "dpo-train": ("dpo", "train"),
    "dpo-eval": ("dpo", "eval"),
    "online_dpo": ("dpo", "online"),
    "srl": ("srl", "train"),
    "srl-traces": ("srl", "traces"),
}
"""Sweepable jobs: name -> the ``halo-ray`` subcommand; each takes ``--config``, ``--set`` and ``--output DIR``."""

GRID_FILE_KEYS = {
    "job": "the job to run at each point (a JOBS name)",
    "config": "the job's YAML config, relative to the repository root (or absolute)",
    "grid": "a mapping of dotted config keys to their lists of values (points are the cartesian product)",
    "set": "overrides applied at every point (a list of KEY=VALUE)",
    "metric": "the value to compare (as --metric)",
    "goal": "max or min",
    "about": "what the sweep ablates and why (free text)",
}
"""The keys of a grid file (``halo-ray sweep --grids FILE``; ``configs/sweeps/*.yaml``)."""


def load_grid_file(path: str | Path) -> dict[str, Any]:
    """A ready sweep from a YAML grid file (``configs/sweeps/``): ``GRID_FILE_KEYS``, checked strictly.

    Returns:
        ``{"job", "config", "grids": [(key, values)], "set": [...], "metric", "goal", "about"}``; ``config``
        resolved against the file's repository (the folder above ``configs/``) when relative.
    Raises:
        ConfigError naming the file and the key for an unknown key, a missing job or grid, or bad values.
    """
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"--grids {path}: unreadable ({exc})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"--grids {path}: expected a mapping with {', '.join(GRID_FILE_KEYS)}")
    errors = [f"{path}: unknown key {k!r} (known: {', '.join(GRID_FILE_KEYS)})" for k in data if k not in GRID_FILE_KEYS]
    if data.get("job") not in JOBS:
        errors.append(f"{path}: job: expected one of {', '.join(JOBS)}, got {data.get('job')!r}")
    grid = data.get("grid")
    if not isinstance(grid, dict) or not grid or not all(isinstance(v, list) and v for v in grid.values()):
        errors.append(f"{path}: grid: expected a mapping of dotted keys to non-empty lists of values, got {grid!r}")
    if data.get("goal", "max") not in ("max", "min"):
        errors.append(f"{path}: goal: expected max or min, got {data.get('goal')!r}")
    sets = data.get("set", [])
    if not isinstance(sets, list) or not all(isinstance(x, str) and "=" in x for x in sets):
        errors.append(f"{path}: set: expected a list of KEY=VALUE strings, got {sets!r}")
    if errors:
        raise ConfigError("\n".join(errors))
    config = data.get("config")
    if config and not Path(config).is_absolute():
        root = next((p.parent for p in path.resolve().parents if p.name == "configs"), path.resolve().parent)
        config = str(root / config)
    grids = [(str(k), list(v)) for k, v in grid.items()]
    expand(grids)  # the same checks as --grid
    return {"job": data["job"], "config": config, "grids": grids, "set": sets, "metric": data.get("metric"),
            "goal": data.get("goal", "max"), "about": data.get("about", "")}


NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def parse_grid(text: str) -> tuple[str, list[Any]]:
    """``key=v1,v2,...`` -> ``(key, [v1, v2, ...])``, each value parsed as YAML (``1e-5`` is a float, ``true`` a bool)."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key or not raw.strip():
        raise ConfigError(f"--grid {text!r}: expected dotted.key=v1,v2 (e.g. learner.lr=1e-5,5e-5)")
    values = []
    for part in raw.split(","):
        part = part.strip()
        if not part:
            raise ConfigError(f"--grid {text!r}: an empty value; separate values with single commas")
        try:
            value = yaml.safe_load(part)
        except yaml.YAMLError:
            value = part
        if isinstance(value, str) and NUMBER.fullmatch(value):
            value = float(value)  # YAML 1.1 reads 1e-5 (no dot) as a string
        values.append(value)
    if len(set(map(repr, values))) != len(values):
        raise ConfigError(f"--grid {text!r}: a value repeats")
    return key, values


def expand(grids: Sequence[tuple[str, list[Any]]]) -> list[dict[str, Any]]:
    """The cartesian product of the grids as ``{key: value}`` points, the first grid varying slowest.

    Raises ``ConfigError`` when no grid is given or a key appears twice.
    """
    if not grids:
        raise ConfigError("sweep: give at least one --grid key=v1,v2")
    keys = [key for key, _ in grids]
    repeated = sorted({k for k in keys if keys.count(k) > 1})
    if repeated:
        raise ConfigError(f"sweep: --grid names {', '.join(repeated)} more than once; list all its values in one --grid")
    return [dict(zip(keys, combo)) for combo in itertools.product(*(values for _, values in grids))]


def _short(value: Any) -> str:
    text = f"{value:g}" if isinstance(value, float) else str(value)
    return re.sub(r"[^A-Za-z0-9.+-]+", "_", text).strip("_") or "_"


def run_name(point: dict[str, Any], index: int) -> str:
    """A run directory name for a point: its index, then ``key=value`` with each key's last part.

    ``{"learner.lr": 1e-05, "objective.beta": 0.1}`` at index 0 -> ``000-lr=1e-05-beta=0.1``.
    """
    parts = [f"{key.rsplit('.', 1)[-1]}={_short(value)}" for key, value in point.items()]
    return "-".join([f"{index:03d}", *parts])


def _yaml_value(value: Any) -> str:
    """A value as YAML reads it back: floats always with a dot (YAML 1.1 reads ``1e-05`` as a string)."""
    if isinstance(value, float) and math.isfinite(value):
        text = repr(value)
        if "e" in text and "." not in text.split("e")[0]:
            mantissa, exponent = text.split("e")
            text = f"{mantissa}.0e{exponent}"
        return text
    return json.dumps(value)


def overrides(point: dict[str, Any]) -> list[str]:
    """``--set`` values for a point, spelled so that ``halo_ray.config`` parses back the same value and type."""
    return [f"{key}={_yaml_value(value)}" for key, value in point.items()]


def job_argv(job: str, config: str | None, out_dir: str | Path, point: dict[str, Any],
             extra_sets: Sequence[str] = ()) -> list[str]:
    """The ``halo-ray`` arguments of one point's run (after the program name)."""
    if job not in JOBS:
        raise ConfigError(f"sweep --job {job!r}: not sweepable; known: {', '.join(JOBS)}")
    argv = [*JOBS[job], "--output", str(out_dir)]
    if config:
        argv += ["--config", str(config)]
    for value in [*extra_sets, *overrides(point)]:
        argv += ["--set", value]
    return argv


def _dotted(data: Any, path: str) -> Any:
    node = data
    for part in path.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and re.fullmatch(r"-?\d+", part) and -len(node) <= int(part) < len(node):
            node = node[int(part)]
        else:
            return None
    return node


def read_metric(run: str | Path, metric: str) -> float | None:
    """The value of ``metric`` for one finished run, or None when the run never recorded it.

    Looked up, in order: the last record of ``RUN/metrics.jsonl`` that has the key (``train/loss``,
    ``eval/pass_at_1``); a dotted path into ``RUN/summary.json``, list items by index
    (``train.loss``, ``stages.-1.pass_at_1``); the same into ``RUN/eval/summary.json`` (``dpo eval``:
    ``stages.1.pass_at_k.1``).
    """
    from halo_ray.io import read_jsonl

    run = Path(run)
    if (run / "metrics.jsonl").is_file():
        values = [rec[metric] for _, rec in read_jsonl(run / "metrics.jsonl", allow_torn_tail=True) if metric in rec]
        if values:
            return _number(values[-1], run, metric)
    for summary in (run / "summary.json", run / "eval" / "summary.json"):
        if summary.is_file():
            try:
                value = _dotted(json.loads(summary.read_text()), metric)
            except json.JSONDecodeError as exc:
                raise DataError(f"{summary}:{exc.lineno}: invalid JSON: {exc.msg}") from None
            if value is not None:
                return _number(value, run, metric)
    return None


def _number(value: Any, run: Path, metric: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise DataError(f"{run}: metric {metric!r} is {value!r}, not a number; name a numeric key")
    return float(value)


def result_table(points: Sequence[dict[str, Any]], runs: Sequence[dict[str, Any]], metric: str
                 ) -> tuple[list[str], list[list[str]]]:
    """Header and rows (strings) of the sweep's table: one row per point, its values, status and metric.

    Args:
        points: the grid points, in run order.
        runs: per point ``{"name", "status", "metric"}`` (metric None when missing).
        metric: the metric's name, the last column's header.
    """
    keys = list(points[0]) if points else []
    header = ["run", *keys, "status", metric]
    rows = []
    for point, run in zip(points, runs):
        value = run.get("metric")
        shown = "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.6g}"
        rows.append([run["name"], *[_short(point[k]) for k in keys], run["status"], shown])
    return header, rows


def best(runs: Sequence[dict[str, Any]], maximize: bool) -> dict[str, Any] | None:
    """The finished run with the best metric (highest when ``maximize``), or None if none has one."""
    scored = [r for r in runs if r.get("metric") is not None and r["status"] == "ok"]
    if not scored:
        return None
    return (max if maximize else min)(scored, key=lambda r: r["metric"])
