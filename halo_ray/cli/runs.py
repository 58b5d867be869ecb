"""``halo-ray runs show DIR``: what a run directory holds, in one screen."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(sub) -> None:
    parser = sub.add_parser("runs", help="inspect run directories")
    rsub = parser.add_subparsers(dest="runs_command", required=True, metavar="SUBCOMMAND")
    show = rsub.add_parser("show", help="a run's summary: manifest, stages, sample accounting, last metrics",
                           description="Reads manifest.json, summary.json (or report.json), metrics.jsonl and "
                                       "checkpoints/ of a run directory written by sft, raft train or demo.")
    show.add_argument("run_dir", metavar="DIR", help="run directory, e.g. runs/raft-20260101-120000")
    show.add_argument("--json", action="store_true", help="print the summary as JSON")
    show.set_defaults(func=show_run)


def _read_json(path: Path):
    from halo_ray.errors import DataError

    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}:{exc.lineno}: invalid JSON: {exc.msg}") from None


def run_summary(run_dir: str | Path) -> dict:
    """The parts of a run directory that say what ran and how it went (missing parts are None)."""
    from halo_ray.errors import DataError
    from halo_ray.runlog import read_metrics

    path = Path(run_dir)
    if not path.is_dir():
        raise DataError(f"{path}: no such run directory")
    known = ("manifest.json", "config.yaml", "metrics.jsonl", "summary.json", "report.json")
    if not any((path / name).exists() for name in known):
        raise DataError(f"{path}: not a run directory (none of {', '.join(known)}); "
                        "runs are written by `halo-ray sft train`, `raft train` and `demo`")
    summary = _read_json(path / "summary.json") or {}
    report = _read_json(path / "report.json") or {}
    metrics = read_metrics(path) if (path / "metrics.jsonl").is_file() else []
    checkpoints = sorted(p.name for p in (path / "checkpoints").iterdir()) if (path / "checkpoints").is_dir() else []
    return {
        "run_dir": str(path),
        "manifest": _read_json(path / "manifest.json"),
        "stages": summary.get("stages") or report.get("stages") or [],
        "accounting": summary.get("accounting") or report.get("accounting"),
        "metrics_records": len(metrics),
        "last_metrics": metrics[-1] if metrics else None,
        "checkpoints": checkpoints,
        "final": (path / "final").is_dir(),
    }


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True)
    return str(value)


def show_run(args: argparse.Namespace) -> int:
    from halo_ray.cli.common import print_table

    info = run_summary(args.run_dir)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    m = info["manifest"]
    print(f"run {info['run_dir']}")
    if m:
        print(f"  job {m.get('job')}, halo-ray {m.get('halo_ray_version')}, git {m.get('git_revision') or '-'}, "
              f"config sha256 {str(m.get('config_sha256'))[:12]}, started {m.get('started')}"
              + (f" ({len(m['starts'])} starts)" if len(m.get("starts", [])) > 1 else ""))
        for section, values in (m.get("sampling") or {}).items():
            print(f"  {section} sampling: " + ", ".join(f"{k}={_fmt(v)}" for k, v in values.items()))
    else:
        print("  no manifest.json (a run from before manifests)")
    if info["stages"]:
        keys = [k for k in ("name", "pass_at_1", "reward_mean") if any(k in s for s in info["stages"])]
        print_table("stages", keys, [[_fmt(s.get(k, "-")) for k in keys] for s in info["stages"]])
    if info["accounting"]:
        print("accounting: " + ", ".join(f"{k} {_fmt(v)}" for k, v in info["accounting"].items()))
    last = info["last_metrics"]
    if last:
        rows = [[k, _fmt(v)] for k, v in last.items() if k != "time"]
        print_table(f"last metrics (record {info['metrics_records']} of metrics.jsonl)", ["key", "value"], rows)
    print(f"checkpoints: {', '.join(info['checkpoints']) or 'none'}; final model: {'yes' if info['final'] else 'no'}")
    return 0
