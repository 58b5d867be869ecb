"""``halo-ray benchmark``: run a benchmark (pass@k, verdicts, compile rate) and compare results."""

from __future__ import annotations

import argparse
from pathlib import Path

from halo_ray.cli.common import add_config_args, job_config


def _ks(text: str) -> tuple[int, ...]:
    from halo_ray.bench.passk import PassAtKError, parse_ks

    try:
        return parse_ks(text)
    except PassAtKError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def register(sub) -> None:
    parser = sub.add_parser("benchmark", help="pass@k benchmarks of a model and paired comparisons of results")
    bsub = parser.add_subparsers(dest="benchmark_command", required=True, metavar="SUBCOMMAND")

    run = bsub.add_parser("run", help="sample, verify and score a model on problems; write results.json",
                          description="Generate N samples per problem, verify each, and write pass@k (unbiased "
                                      "estimator, SUCCESS only), the verdict mix, compile rate and timing. "
                                      "With --samples-file, score existing completions instead of generating.")
    run.add_argument("--model", metavar="DIR", help="model directory (model.path); default: the embedded tiny model")
    run.add_argument("--problems", metavar="FILE", help="problems file, JSONL or Parquet (benchmark.problems)")
    run.add_argument("--samples", type=int, metavar="N", help="samples per problem, the n of pass@k (rollout.samples_per_prompt)")
    run.add_argument("--k", type=_ks, metavar="K[,K...]", help="k values of pass@k, e.g. 1,10 (benchmark.ks)")
    run.add_argument("--temperature", type=float, help="sampling temperature (rollout.temperature)")
    run.add_argument("--top-p", type=float, help="nucleus threshold (rollout.top_p)")
    run.add_argument("--seed", type=int, help="sampling seed (rollout.seed)")
    run.add_argument("--max-new-tokens", type=int, metavar="M", help="longest completion (rollout.max_new_tokens)")
    run.add_argument("--output", metavar="FILE", help="results JSON (benchmark.output, default results.json)")
    run.add_argument("--samples-file", metavar="FILE",
                     help="score these completions (records with prompt_id or id, and completion) without generating")
    run.add_argument("--save-samples", metavar="FILE", help="also write every scored sample here (JSONL or Parquet)")
    add_config_args(run)
    run.set_defaults(func=run_command)

    compare = bsub.add_parser("compare", help="paired t-test and Wilcoxon test per k between results files, with a report",
                              description="Compare each results file with the first (the baseline) problem by "
                                          "problem, and write pictures, compare.json, report.md and report.html.")
    compare.add_argument("results", nargs="+", metavar="RESULTS.json", help="results files, baseline first")
    compare.add_argument("--output", required=True, metavar="DIR", help="folder for the report and pictures")
    compare.add_argument("--names", metavar="A,B,...", help="stage names, one per results file (default: file names)")
    compare.add_argument("--runs", nargs="+", default=[], metavar="RUN_DIR",
                         help="run directories whose metrics.jsonl gives reward per cycle")
    compare.set_defaults(func=compare_command)


def run_command(args: argparse.Namespace) -> int:
    from halo_ray.bench.run import benchmark_from_config
    from halo_ray.sections import BenchmarkJobConfig

    config = job_config(BenchmarkJobConfig, args, {
        "model.path": args.model, "benchmark.problems": args.problems, "rollout.samples_per_prompt": args.samples,
        "benchmark.ks": args.k, "rollout.temperature": args.temperature, "rollout.top_p": args.top_p,
        "rollout.seed": args.seed, "rollout.max_new_tokens": args.max_new_tokens, "benchmark.output": args.output,
        "benchmark.samples_file": args.samples_file, "benchmark.save_samples": args.save_samples,
    })
    if config.benchmark.samples_file:
        report = benchmark_from_config(config)
    else:
        from halo_ray import driver

        try:
            report = driver.benchmark(config)
        finally:
            driver.shutdown()
    print_results(report, config.benchmark.output)
    return 0


def print_results(report: dict, output: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{report['model']}: {report['problems']} problems, {report['samples']} samples")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k, value in report["pass_at_k"].items():
        table.add_row(f"pass@{k}", f"{value:.3f}")
    table.add_row("compile rate", f"{report['compile_rate']:.3f}")
    for verdict, count in report["verdicts"].items():
        table.add_row(verdict, str(count))
    for key, value in report["timing"].items():
        table.add_row(key, "–" if value is None else f"{value:.2f}")
    console = Console()
    console.print(table)
    if output:
        console.print(f"wrote {output}")


def stage_names(paths: list[str]) -> list[str]:
    """File stems, or parent/stem where stems repeat (runs/a/results.json, runs/b/results.json)."""
    stems = [Path(p).stem for p in paths]
    if len(set(stems)) == len(stems):
        return stems
    return [f"{Path(p).parent.name}/{Path(p).stem}" for p in paths]


def compare_command(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from halo_ray.bench.compare import compare_results, load_result, reward_curves
    from halo_ray.bench.report import stage_rows, test_rows, write_report

    names = [n.strip() for n in args.names.split(",")] if args.names else stage_names(args.results)
    comparison = compare_results([load_result(p) for p in args.results], names)
    files = write_report(comparison, args.output, reward_curves(args.runs) if args.runs else None)
    console = Console()
    for title, (header, rows) in (("stages", stage_rows(comparison)), ("paired tests", test_rows(comparison))):
        if not rows:
            continue
        table = Table(title=title)
        for column in header:
            table.add_column(column)
        for row in rows:
            table.add_row(*row)
        console.print(table)
    console.print(f"wrote {', '.join(str(f) for f in files.values())}")
    return 0
