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
    run.add_argument("--problems", metavar="FILE|SPEC",
                     help="problems: a JSONL/Parquet file or a SPEC (benchmark.problems). Standard sets: "
                          "humaneval#all (164), mbpp#official_test (task ids 11-510, 500); seeded splits: "
                          "humaneval#test, mbpp#test; the demo's: demo#heldout")
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
    run.add_argument("--json", action="store_true", help="print the results as JSON instead of a table")
    add_config_args(run)
    run.set_defaults(func=run_command)

    compare = bsub.add_parser("compare", help="paired t-test and Wilcoxon test per k between results files, with a report",
                              description="Compare each results file with the first (the baseline) problem by "
                                          "problem, and write pictures, compare.json, report.md and report.html.")
    compare.add_argument("results", nargs="+", metavar="RESULTS.json", help="results files, baseline first")
    compare.add_argument("--output", required=True, metavar="DIR", help="folder for the report and pictures")
    compare.add_argument("--names", metavar="A,B,...", help="stage names, one per results file (default: file names)")
    compare.add_argument("--runs", nargs="+", default=[], metavar="RUN_DIR",
                         help="run directories whose metrics.jsonl gives reward per step")
    compare.add_argument("--json", action="store_true", help="print the comparison as JSON instead of tables")
    compare.set_defaults(func=compare_command)


def run_command(args: argparse.Namespace) -> int:
    from halo_ray.bench.run import benchmark_from_config
    from halo_ray.sections import BenchmarkJobConfig, GenerateConfig

    config = job_config(BenchmarkJobConfig, args, {
        "model.path": args.model, "benchmark.problems": args.problems, "rollout.samples_per_prompt": args.samples,
        "benchmark.ks": args.k, "rollout.temperature": args.temperature, "rollout.top_p": args.top_p,
        "rollout.seed": args.seed, "rollout.max_new_tokens": args.max_new_tokens, "benchmark.output": args.output,
        "benchmark.samples_file": args.samples_file, "benchmark.save_samples": args.save_samples,
    })
    if config.benchmark.samples_file:
        report = benchmark_from_config(config, verify_fn=_local_verify(config))
    else:
        from halo_ray import driver
        from halo_ray.cli.generate import sample

        gen = GenerateConfig(model=config.model, rollout=config.rollout, cluster=config.cluster, logging=config.logging)
        try:  # problems are read (and bad records named) before Ray starts: sample() starts it
            report = benchmark_from_config(config, lambda prompts: sample(gen, prompts), _ray_verify(config))
        finally:
            driver.shutdown()
    if args.json:
        import json

        print(json.dumps({k: v for k, v in report.items() if k != "per_problem"}, indent=2))
    else:
        print_results(report, config.benchmark.output)
    return 0


def _local_verify(config):
    from halo_ray.cli.progress import Progress
    from halo_ray.verifiers import verify_batch

    def verify(records):
        with Progress("verified", len(records), "samples") as bar:
            return verify_batch(records, config.verifier, progress=bar.update)

    return verify


def _ray_verify(config, batch_size: int = 64):
    """Verify on one VerifierPool actor with the session's free CPUs (as ``driver.verify``), counting batches."""
    from halo_ray.cli.progress import Progress

    def verify(records):
        import ray

        from halo_ray.actors.verifier import start_pools

        cpus = max(1.0, float(ray.available_resources().get("CPU", 1.0)))
        pools = start_pools(config.verifier, 1, cpus)
        try:
            batches = [records[i:i + batch_size] for i in range(0, len(records), batch_size)]
            refs = [pools[0].verify.remote(batch) for batch in batches]
            size = dict(zip(refs, map(len, batches)))
            with Progress("verified", len(records), "samples") as bar:
                pending = list(refs)
                while pending:
                    ready, pending = ray.wait(pending, num_returns=1)
                    bar.advance(size[ready[0]])
            return [result for batch in ray.get(refs) for result in batch]
        finally:
            ray.get([p.close.remote() for p in pools])
            for p in pools:
                ray.kill(p)

    return verify


def print_results(report: dict, output: str) -> None:
    from halo_ray.cli.common import print_table

    rows = [[f"pass@{k}", f"{value:.3f}"] for k, value in report["pass_at_k"].items()]
    rows.append(["compile rate", f"{report['compile_rate']:.3f}"])
    rows += [[verdict, str(count)] for verdict, count in report["verdicts"].items()]
    rows += [[key, "-" if value is None else f"{value:.2f}"] for key, value in report["timing"].items()]
    subset = report.get("subset", "?")
    print_table(f"{report['model']} on {subset}: n={report['problems']} problems, {report['samples']} samples",
                ["metric", "value"], rows)
    if output:
        print(f"wrote {output}")


def stage_names(paths: list[str]) -> list[str]:
    """File stems, or parent/stem where stems repeat (runs/a/results.json, runs/b/results.json)."""
    stems = [Path(p).stem for p in paths]
    if len(set(stems)) == len(stems):
        return stems
    return [f"{Path(p).parent.name}/{Path(p).stem}" for p in paths]


def compare_command(args: argparse.Namespace) -> int:
    from halo_ray.bench.compare import compare_results, load_result, reward_curves
    from halo_ray.bench.report import stage_rows, test_rows, write_report
    from halo_ray.cli.common import print_table

    names = [n.strip() for n in args.names.split(",")] if args.names else stage_names(args.results)
    comparison = compare_results([load_result(p) for p in args.results], names)
    files = write_report(comparison, args.output, reward_curves(args.runs) if args.runs else None)
    if args.json:
        import json

        print(json.dumps(comparison, indent=2))
        return 0
    for title, (header, rows) in (("stages", stage_rows(comparison)), ("paired tests", test_rows(comparison))):
        if rows:
            print_table(title, header, rows)
    print(f"wrote {', '.join(str(f) for f in files.values())}")
    return 0
