"""``halo-ray sft train``, ``halo-ray raft train``, ``halo-ray grpo train`` and ``halo-ray demo`` (and the
stream-job flags ``halo-ray dpo online`` shares)."""

from __future__ import annotations

import argparse
import json

from halo_ray.cli.common import add_config_args, job_config, output_overrides, run_driver
from halo_ray.cli.progress import StepProgress


def register(sub) -> None:
    sft = sub.add_parser("sft", help="supervised fine-tuning on reference solutions")
    ssub = sft.add_subparsers(dest="sft_command", required=True, metavar="SUBCOMMAND")
    train = ssub.add_parser("train", help="train on problems with reference solutions (completion tokens only)",
                            description="SFT with DeepSpeed learner ranks on Ray. Writes <output>/final in "
                                        "Hugging Face format, metrics.jsonl, TensorBoard logs and config.yaml.")
    train.add_argument("--model", help="base model directory (model.path; default: the embedded tiny model)")
    train.add_argument("--data", help="problems SPEC with reference solutions, e.g. demo#sft or FILE.jsonl (data.train)")
    train.add_argument("--epochs", type=int, help="passes over the data (learner.epochs)")
    train.add_argument("--output", help="run directory (default runs/sft-<time>)")
    add_config_args(train)
    train.set_defaults(func=run_sft)

    for name, help_, description in (
        ("raft", "RAFT: generate, verify, keep the best, train, repeat",
         "RAFT on the asynchronous stream: rollout actors sample (up to stream.max_staleness policy versions "
         "ahead), verifier pools score each chunk as it is sampled, learner ranks train on the kept samples; "
         "weights return to the rollout by ref after each step."),
        ("grpo", "GRPO with the DAPO options on the asynchronous stream",
         "GRPO on the asynchronous stream: group-normalised advantages from the verifier's rewards, the "
         "clipped surrogate (clip-higher), token/sequence/constant loss aggregation, dynamic sampling of "
         "groups with signal, overlong handling, off-policy correction of stale samples (objective.*)."),
    ):
        group = sub.add_parser(name, help=help_)
        gsub = group.add_subparsers(dest=f"{name}_command", required=True, metavar="SUBCOMMAND")
        train = gsub.add_parser("train", help=f"run {name.upper()} steps",
                                description=description + " Writes runs/<name>/ (config, manifest, metrics, samples, "
                                                          "checkpoints, eval, timeline).")
        add_stream_job_args(train, name)

    demo = sub.add_parser("demo", help="the embedded default: tiny model, SFT, RAFT steps, held-out pass@1 report",
                          description="Builds the tiny model, SFT-trains it on the demo task family, runs RAFT "
                                      "steps, measures held-out pass@1 after each stage and writes "
                                      "<output>/report.json and stages.png.")
    demo.add_argument("--output", help="demo directory (default runs/demo)")
    demo.add_argument("--algorithm", choices=("raft", "grpo", "dpo", "srl"), help="the stage after SFT (algorithm; default raft; srl: SFT on teacher traces, then SRL on the synthetic ast-grep tasks)")
    add_config_args(demo)
    demo.set_defaults(func=run_demo)


def add_stream_job_args(cmd: argparse.ArgumentParser, job: str) -> None:
    """The flags every stream job takes (``raft train``, ``grpo train``, ``dpo online``); runs ``run_stream_job``."""
    cmd.add_argument("--model", "--checkpoint", dest="model",
                     help="policy model directory, e.g. an SFT run's final/ (model.path)")
    cmd.add_argument("--data", "--prompts", dest="data",
                     help="training prompts: a problems SPEC, e.g. demo#raft or FILE.jsonl#train (data.train)")
    cmd.add_argument("--eval", help="held-out problems SPEC for pass@1 every stream.eval_every steps, "
                                    "e.g. demo#heldout (data.eval)")
    cmd.add_argument("--verifier", help="verifier name (verifier.name)")
    cmd.add_argument("--steps", type=int, help="learner steps (stream.num_steps)")
    cmd.add_argument("--output", help=f"run directory (default runs/{job}-<time>)")
    cmd.add_argument("--resume", action="store_true", help="continue the run in --output from its last checkpoint")
    add_config_args(cmd)
    cmd.set_defaults(func=run_stream_job, job=job)


def run_sft(args: argparse.Namespace) -> int:
    from halo_ray.sections import SFTJobConfig

    config = job_config(SFTJobConfig, args, {"model.path": args.model, "data.train": args.data,
                                             "learner.epochs": args.epochs, **output_overrides(args.output)})
    from halo_ray.driver.sft import sft

    summary = run_driver(sft, config)
    print(json.dumps(summary, indent=2))
    return 0


def run_stream_job(args: argparse.Namespace) -> int:
    """``raft train`` / ``grpo train`` / ``dpo online``: the same flags, the job's driver loop."""
    import importlib

    from halo_ray import sections

    from halo_ray.cli.jobs import JOBS

    cls_name, module, function, _ = JOBS[args.job]
    config = job_config(getattr(sections, cls_name), args, {
        "model.path": args.model, "data.train": args.data, "data.eval": args.eval, "verifier.name": args.verifier,
        "stream.num_steps": args.steps, **output_overrides(args.output)})
    loop = getattr(importlib.import_module(module), function)
    steps = StepProgress()  # step lines with rate and ETA; a bar on a terminal
    try:
        summary = run_driver(loop, config, resume=args.resume, progress=steps)
    finally:
        steps.close()
    print(json.dumps(summary, indent=2))
    return 0


def run_demo(args: argparse.Namespace) -> int:
    from halo_ray.sections import DemoConfig

    config = job_config(DemoConfig, args, {"output": args.output, "algorithm": args.algorithm})
    from halo_ray.driver.demo import demo

    run_driver(demo, config)
    return 0
