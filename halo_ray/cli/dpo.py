"""``halo-ray dpo pairs|prefs|train|eval|run``: seed 002's test-based DPO, stage by stage; ``dpo online``: DPO
on the asynchronous stream."""

from __future__ import annotations

import argparse
import json

from halo_ray.cli.common import add_config_args, job_config, output_overrides, run_driver


def register(sub) -> None:
    parser = sub.add_parser("dpo", help="test-based DPO: preference pairs from pass rates, training, evaluation; online on the stream")
    dsub = parser.add_subparsers(dest="dpo_command", required=True, metavar="SUBCOMMAND")

    pairs = dsub.add_parser("pairs", help="form preference pairs from a scored file (every pair of a problem whose scores differ by at least --min-gap)",
                            description="Every two responses of a problem whose scores differ by at least --min-gap "
                                        "(exactly the gap counts; ties never pair) become a pair, the higher chosen.")
    pairs.add_argument("--scored", required=True, metavar="FILE",
                       help="JSONL or Parquet, one record per response: problem_id, prompt, completion, pass_rate, verdict")
    pairs.add_argument("--min-gap", type=float, default=0.1, metavar="G", help="smallest score gap of a pair (default 0.1)")
    pairs.add_argument("--score", default="pass_rate", help="field holding the score (default pass_rate)")
    pairs.add_argument("--max-pairs", type=int, default=0, metavar="N",
                       help="at most N pairs per problem, widest gaps and distinct responses first (default 0: every pair)")
    pairs.add_argument("--output", required=True, metavar="FILE", help="pairs file, JSONL or Parquet by extension")
    pairs.set_defaults(func=run_pairs)

    prefs = dsub.add_parser("prefs", help="sample n responses per training problem, verify, score, pair",
                            description="Rollout actors sample rollout.samples_per_prompt responses per problem "
                                        "(default 10 at T 0.8, fixed seed); the sandbox runs each against the "
                                        "tests; pass rates make the pairs. Writes <output>/scored.jsonl, "
                                        "dpo_preferences.jsonl and .parquet, prefs.json.")
    prefs.add_argument("--model", help="base model directory (model.path; default: the embedded tiny model)")
    prefs.add_argument("--data", help="training problems: file or source[#split] (data.train), e.g. humaneval#train")
    prefs.add_argument("--output", help="run directory (logging.run_dir/logging.name)")
    add_config_args(prefs)
    prefs.set_defaults(func=run_prefs)

    for name, help_, func in (("train", "DPO on <output>/dpo_preferences.jsonl against the frozen reference: <output>/final", run_train),
                              ("run", "the whole experiment: prefs, train, eval in one run directory", run_all)):
        cmd = dsub.add_parser(name, help=help_, description=help_ + ". Writes metrics.jsonl (one record per "
                              "optimizer step: loss, reward margins, accuracy) and the run's files.")
        cmd.add_argument("--model", help="base model directory (model.path; the reference and the baseline)")
        if name == "run":
            cmd.add_argument("--data", help="training problems SPEC (data.train); data.eval names the held-out ones")
        cmd.add_argument("--output", help="run directory (logging.run_dir/logging.name)")
        add_config_args(cmd)
        cmd.set_defaults(func=func)

    evaluate = dsub.add_parser("eval", help="baseline vs fine-tuned on the held-out split: pass@k, verdicts, paired t-test",
                               description="Benchmarks model.path (the baseline) and the fine-tuned model with the "
                                           "evaluation sampling (default k = 10, T 0.8, top-p 0.95, seed 42) and "
                                           "compares them problem by problem. Writes <output>/eval/.")
    evaluate.add_argument("--model", "--baseline", dest="model", help="baseline model directory (model.path)")
    evaluate.add_argument("--finetuned", help="fine-tuned model directory (dpo.finetuned; default <output>/final)")
    evaluate.add_argument("--data", help="held-out problems (data.eval), e.g. humaneval#test")
    evaluate.add_argument("--output", help="run directory (logging.run_dir/logging.name)")
    add_config_args(evaluate)
    evaluate.set_defaults(func=run_eval)

    from halo_ray.cli.train import add_stream_job_args

    online = dsub.add_parser("online", help="online DPO on the asynchronous stream: pairs formed in each scored group",
                             description="Rollout actors sample rollout.samples_per_prompt responses per prompt (up "
                                         "to stream.max_staleness policy versions ahead), the sandbox scores them, "
                                         "seed 002's pair rule (pairs.*) pairs each prompt's responses as its group "
                                         "is taken; prompts without a pair are replaced; the learner trains the DPO "
                                         "loss against the frozen starting model and ships weights back. Writes "
                                         "runs/<name>/ (config, manifest, metrics, samples, checkpoints, eval, timeline).")
    add_stream_job_args(online, "online_dpo")


def run_pairs(args: argparse.Namespace) -> int:
    from halo_ray.pairs import form_pairs, read_scored
    from halo_ray.io import check_table_suffix, write_records

    check_table_suffix(args.output, "output")  # before reading a large file
    records = read_scored(args.scored, args.score)
    pairs = form_pairs(records, args.min_gap, args.score, args.max_pairs)
    write_records(args.output, pairs)
    problems = len({r["problem_id"] for r in records})
    print(f"{len(pairs)} pairs from {len(records)} responses of {problems} problems -> {args.output}")
    return 0


def run_prefs(args: argparse.Namespace) -> int:
    from halo_ray.sections import DPOJobConfig

    config = job_config(DPOJobConfig, args, {"model.path": args.model, "data.train": args.data, **output_overrides(args.output)})
    from halo_ray.driver.dpo import preferences

    summary = run_driver(preferences, config, progress=print)
    print(json.dumps(summary, indent=2))
    return 0


def run_eval(args: argparse.Namespace) -> int:
    from halo_ray.sections import DPOJobConfig

    config = job_config(DPOJobConfig, args, {"model.path": args.model, "dpo.finetuned": args.finetuned,
                                             "data.eval": args.data, **output_overrides(args.output)})
    from halo_ray.driver.dpo import evaluate

    summary = run_driver(evaluate, config, progress=print)
    print_comparison(summary)
    return 0


def print_comparison(summary: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    from halo_ray.bench.report import stage_rows, test_rows

    console = Console()
    for title, (header, rows) in (("stages", stage_rows(summary)), ("paired tests", test_rows(summary))):
        table = Table(title=title)
        for column in header:
            table.add_column(column)
        for row in rows:
            table.add_row(*row)
        console.print(table)
    console.print(f"report: {summary['report']}")


def run_train(args: argparse.Namespace) -> int:
    from halo_ray.sections import DPOJobConfig

    config = job_config(DPOJobConfig, args, {"model.path": args.model, **output_overrides(args.output)})
    from halo_ray.driver.dpo import train

    summary = run_driver(train, config, progress=print)
    print(json.dumps({k: v for k, v in summary.items() if k != "train"}, indent=2))
    return 0


def run_all(args: argparse.Namespace) -> int:
    from halo_ray.sections import DPOJobConfig

    config = job_config(DPOJobConfig, args, {"model.path": args.model, "data.train": args.data, **output_overrides(args.output)})
    from halo_ray.driver.dpo import dpo

    summary = run_driver(dpo, config, progress=print)
    print_comparison(summary)
    return 0
