"""``halo-ray sweep``: one run of a job per grid point, in sequence or as Ray jobs, tabulated side by side."""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path


def register(sub) -> None:
    from halo_ray.sweep import JOBS

    parser = sub.add_parser("sweep", help="run a job once per grid point and tabulate a metric side by side",
                            description="Expands every --grid into the cartesian product of its values and runs "
                                        "the job once per point (its values as --set overrides) in "
                                        "<output>/<NNN-key=value...>/, one after the other, or all at once as Ray "
                                        "jobs with --address. Tune on the validation split, report on the test "
                                        "split. Writes <output>/sweep.json.")
    parser.add_argument("--grids", metavar="FILE", help="a ready sweep (configs/sweeps/*.yaml: job, config, grid, set, "
                                                         "metric, goal); the flags below add to it or override it")
    parser.add_argument("--job", choices=list(JOBS), help="the job to run at each point (required without --grids)")
    parser.add_argument("--config", metavar="FILE", help="the job's YAML config, shared by every point")
    parser.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2",
                        help="a dotted config key and its values (repeatable; points are the cartesian product)")
    parser.add_argument("--metric", metavar="NAME",
                        help="value to compare: a metrics.jsonl key (eval/pass_at_1, train/loss) or a dotted path "
                             "into the run's summary.json (train.loss, stages.-1.pass_at_1)")
    parser.add_argument("--goal", choices=("max", "min"), help="which metric value is best (default max)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="an override applied at every point (repeatable)")
    parser.add_argument("--output", metavar="DIR", help="sweep folder (default runs/sweep-<time>)")
    parser.add_argument("--address", metavar="ADDR",
                        help="submit every point as a Ray job to this cluster (http://HEAD:8265) instead of running "
                             "them here in sequence; paths must then be absolute and visible to the cluster")
    parser.set_defaults(func=run_sweep)


def run_sweep(args: argparse.Namespace) -> int:
    from halo_ray.errors import ConfigError
    from halo_ray.io import write_json
    from halo_ray.sweep import best, expand, job_argv, load_grid_file, parse_grid, read_metric, run_name

    if args.grids:
        ready = load_grid_file(args.grids)
        args.job, args.config = args.job or ready["job"], args.config or ready["config"]
        args.metric, args.goal = args.metric or ready["metric"], args.goal or ready["goal"]
        args.overrides = ready["set"] + args.overrides  # command-line --set comes last, so it wins
        grids = ready["grids"] + [parse_grid(g) for g in args.grid]
    else:
        if not args.job or not args.grid:
            raise ConfigError("sweep: give --job and at least one --grid, or a ready sweep with --grids FILE")
        grids = [parse_grid(g) for g in args.grid]
    args.goal = args.goal or "max"
    points = expand(grids)
    out = Path(args.output or f"runs/sweep-{time.strftime('%Y%m%d-%H%M%S')}")
    if args.config and not Path(args.config).is_file():
        raise ConfigError(f"--config {args.config}: file not found")
    if args.address:
        out, config = out.resolve(), str(Path(args.config).resolve()) if args.config else None
    else:
        config = args.config
    if (out / "sweep.json").exists():
        raise ConfigError(f"{out} already holds a sweep (sweep.json): choose another --output")
    out.mkdir(parents=True, exist_ok=True)
    names = [run_name(p, i) for i, p in enumerate(points)]
    argvs = [job_argv(args.job, config, out / name, p, args.overrides) for name, p in zip(names, points)]
    runs = [{"name": n, "dir": str(out / n), "point": p, "argv": a, "status": "pending", "metric": None}
            for n, p, a in zip(names, points, argvs)]

    def record():
        write_json(out / "sweep.json", {"job": args.job, "config": config, "metric": args.metric, "goal": args.goal,
                                        "runs": runs, "best": (best(runs, args.goal == "max") or {}).get("name")})

    print(f"sweep: {len(points)} point(s) of {args.job} in {out}")
    if args.address:
        _ray_jobs(args.address, runs, out)
    else:
        for run in runs:
            print(f"[{run['name']}] halo-ray {shlex.join(run['argv'])}", flush=True)
            with open(out / f"{run['name']}.log", "w") as log:
                code = subprocess.call([sys.executable, "-m", "halo_ray", *run["argv"]], stdout=log,
                                       stderr=subprocess.STDOUT, env=dict(os.environ))
            run["status"] = "ok" if code == 0 else f"failed (exit {code}, see {run['name']}.log)"
            if args.metric and code == 0:
                run["metric"] = read_metric(run["dir"], args.metric)
            record()
    if args.address and args.metric:
        for run in runs:
            if run["status"] == "ok":
                run["metric"] = read_metric(run["dir"], args.metric)
    record()
    _print(points, runs, args.metric or "metric", best(runs, args.goal == "max"))
    return 0 if all(r["status"] == "ok" for r in runs) else 1


def _ray_jobs(address: str, runs: list[dict], out: Path) -> None:
    """Submit every point as a Ray job, wait for all, keep each job's log beside its run."""
    from ray.job_submission import JobStatus, JobSubmissionClient

    client = JobSubmissionClient(address)
    for run in runs:
        run["job_id"] = client.submit_job(entrypoint=f"python -m halo_ray {shlex.join(run['argv'])}")
        print(f"[{run['name']}] submitted {run['job_id']}", flush=True)
    terminal = {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED}
    waiting = list(runs)
    while waiting:
        time.sleep(5)
        for run in list(waiting):
            status = client.get_job_status(run["job_id"])
            if status in terminal:
                (out / f"{run['name']}.log").write_text(client.get_job_logs(run["job_id"]))
                run["status"] = "ok" if status == JobStatus.SUCCEEDED else f"{status.value.lower()} (see {run['name']}.log)"
                waiting.remove(run)
                print(f"[{run['name']}] {run['status']}", flush=True)


def _print(points, runs, metric: str, winner) -> None:
    from rich.console import Console
    from rich.table import Table

    from halo_ray.sweep import result_table

    header, rows = result_table(points, runs, metric)
    table = Table(title="sweep")
    for column in header:
        table.add_column(column)
    for row in rows:
        table.add_row(*row)
    console = Console()
    console.print(table)
    if winner:
        console.print(f"best: {winner['name']} ({metric} = {winner['metric']:.6g})")
