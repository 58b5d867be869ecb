"""``halo-ray srl train|eval|traces``: SRL for ast-grep refactoring agents (seed 003): GRPO on trace-matching rewards
with a KL anchor to the base, and seed 003 §27's metrics of a model on held-out tasks."""

from __future__ import annotations

import argparse
import json

from halo_ray.cli.common import add_config_args, job_config, print_table, run_driver


def register(sub) -> None:
    from halo_ray.cli.train import add_stream_job_args

    parser = sub.add_parser("srl", help="SRL: learn teacher traces of <think>, <action>, <state_update> through component rewards")
    ssub = parser.add_subparsers(dest="srl_command", required=True, metavar="SUBCOMMAND")
    train = ssub.add_parser("train", help="GRPO on trace-matching rewards with a KL anchor to the base (the asynchronous stream)",
                            description="SRL on the asynchronous stream: the student samples traces for the built-in "
                                        "ast-grep tasks (srl#train), the srl_trace verifier scores each against the "
                                        "task's teacher trace in process (0.5 action + 0.3 state + 0.2 think, -0.2 "
                                        "malformed), GRPO trains with objective.grpo.kl_coef x KL to the base; malformed "
                                        "traces get advantage 0. Writes runs/<name>/ (config, metrics with srl/*, samples, "
                                        "checkpoints, eval, timeline).")
    add_stream_job_args(train, "srl")

    evaluate = ssub.add_parser("eval", help="SRL metrics of a model on held-out tasks (parse rate, action fidelity, state faithfulness, execution success...)",
                               description="Samples eval.samples outputs per held-out task (eval.temperature, eval.seed), "
                                           "scores each against the teacher trace, applies parsed actions with ast-grep "
                                           "and runs the task's tests in the sandbox. Prints the metrics overall and by "
                                           "language; --output writes the report (with histograms) as JSON.")
    evaluate.add_argument("--model", help="model directory to evaluate (model.path; default: the embedded tiny model)")
    evaluate.add_argument("--tasks", help="held-out tasks SPEC (data.eval; default srl#heldout)")
    evaluate.add_argument("--samples", type=int, help="outputs per task (eval.samples)")
    evaluate.add_argument("--output", help="report JSON to write")
    add_config_args(evaluate)
    evaluate.set_defaults(func=run_eval)

    traces = ssub.add_parser("traces", help="teacher traces: sample on rollout actors, parse, execute in the sandbox, filter, Parquet by language",
                             description="The teacher model writes rollout.samples_per_prompt traces per task (T 0.3, "
                                         "top-p 0.9, stop at </state_update>, teacher.few_shot anchors); each parsed "
                                         "action is applied with ast-grep and the task's tests run in the sandbox; steps "
                                         "that fail, do not parse or score below teacher.min_quality are dropped. Writes "
                                         "<output>/traces.parquet, traces/<language>.parquet and summary.json.")
    traces.add_argument("--model", help="teacher model directory (model.path; default: the embedded tiny model)")
    traces.add_argument("--tasks", help="tasks SPEC (data.train; default srl#train)")
    traces.add_argument("--output", help="output folder (output; default runs/teacher)")
    add_config_args(traces)
    traces.set_defaults(func=run_traces)


def run_traces(args: argparse.Namespace) -> int:
    from halo_ray.sections import TeacherJobConfig

    config = job_config(TeacherJobConfig, args, {"model.path": args.model, "data.train": args.tasks,
                                                 "output": args.output})
    from halo_ray.driver.srl import traces

    summary = run_driver(traces, config, progress=print)
    print(json.dumps(summary, indent=2))
    return 0


def run_eval(args: argparse.Namespace) -> int:
    from halo_ray.sections import SRLJobConfig

    config = job_config(SRLJobConfig, args, {"model.path": args.model, "data.eval": args.tasks,
                                             "eval.samples": args.samples})
    from halo_ray.driver.srl import evaluate_model

    report = run_driver(evaluate_model, config, args.output or "", progress=print)
    keys = ("samples", "trace_parse_rate", "action_fidelity", "state_faithfulness", "think_similarity",
            "brevity_penalty", "reward_mean", "execution_success", "think_tokens", "state_tokens")
    slices = [("overall", report["overall"])] + sorted(report["by_language"].items())

    def cell(value) -> str:
        return "n/a" if value is None else (str(value) if isinstance(value, int) else f"{value:.3f}")

    print_table(f"SRL eval of {report['model']} on {report['tasks']}", ["slice", *keys],
                [[name, *(cell(m[k]) for k in keys)] for name, m in slices])
    if not args.output:
        print(json.dumps({k: v for k, v in report.items() if k not in ("overall", "by_language")}, indent=2))
    return 0
