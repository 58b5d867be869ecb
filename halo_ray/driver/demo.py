"""The embedded default (``make demo``): build the tiny model, SFT warm start, RAFT steps (or GRPO, or
online DPO, or SRL: ``--algorithm``), report.

Held-out pass@1 is measured after SFT and after every RAFT step on (operation, constant) pairs never
seen in SFT or RAFT; ``report.json`` compares the last step with the SFT stage by a paired t-test over
held-out problems, and ``stages.png`` plots the stages.

``--algorithm srl`` (seed 003) runs on the synthetic ast-grep tasks instead: SFT on the training tasks'
teacher traces, then SRL on the same tasks; ``halo-ray srl eval``'s metrics on the held-out tasks after
SFT and after SRL, and a paired t-test per held-out task of action fidelity and of execution success
(the baseline is the SFT stage, the stage before SRL).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import time
from pathlib import Path

from halo_ray.bench.compare import paired_test
from halo_ray.bench.report import plot_stage_curve, plot_verdicts
from halo_ray.driver.grpo import grpo
from halo_ray.driver.online_dpo import online_dpo
from halo_ray.driver.raft import raft
from halo_ray.driver.sft import sft
from halo_ray.driver.srl import evaluate_model, srl
from halo_ray.driver.stream import per_problem_pass1
from halo_ray.errors import ConfigError
from halo_ray.io import write_json
from halo_ray.sections import DemoConfig, LoggingConfig

log = logging.getLogger(__name__)


def _in(run_dir: Path, logging_cfg: LoggingConfig) -> LoggingConfig:
    return dataclasses.replace(logging_cfg, run_dir=str(run_dir))


def demo(config: DemoConfig, progress=print) -> dict:
    """Run the demo; returns the report (also written to ``<output>/report.json``).

    Args:
        config: the demo config (``configs/tiny.yaml`` mirrors its defaults).
        progress: a callable that receives one line per stage (the CLI prints them).
    """
    from halo_ray.tiny import init_tiny

    if config.algorithm == "srl":
        return srl_demo(config, progress)
    if not getattr(config, config.algorithm).data.eval:
        raise ConfigError(f"{config.algorithm}.data.eval: the demo compares held-out pass@1 across stages; name held-out problems")
    out = Path(config.output)
    for part in (config.sft.logging.name, getattr(config, config.algorithm).logging.name):  # the demo owns its stage runs: start afresh
        if part and (out / part).is_dir():
            shutil.rmtree(out / part)
    started = time.perf_counter()
    init_dir = init_tiny(out / "model-init", seed=config.seed)
    progress(f"[demo] built the tiny model in {init_dir}")

    sft_cfg = dataclasses.replace(config.sft, model=dataclasses.replace(config.sft.model, path=str(init_dir)),
                                  logging=_in(out, config.sft.logging))
    sft_summary = sft(sft_cfg)
    progress(f"[demo] SFT: {sft_summary['examples']} examples, {sft_summary['train'].get('steps')} steps, mean loss "
             f"{sft_summary['train'].get('loss', float('nan')):.4f}, {sft_summary['seconds']:.0f} s")

    algo = config.algorithm
    stage_cfg = getattr(config, algo)
    stage_cfg = dataclasses.replace(stage_cfg, model=dataclasses.replace(stage_cfg.model, path=sft_summary["final"]),
                                    logging=_in(out, stage_cfg.logging))
    loop = {"raft": raft, "grpo": grpo, "dpo": online_dpo}[algo]
    summary = loop(stage_cfg, progress=lambda line: progress(f"[demo] {algo.upper()} {line}"))
    run = Path(summary["run_dir"])

    stages = [dict(s) for s in summary["stages"]]
    stages[0]["name"] = "sft"
    for s in stages[1:]:
        s["name"] = f"{algo}_step_{int(s['name'].removeprefix('step_'))}"  # step_0004 -> raft_step_4
    evals = sorted((run / "eval").glob("*.json"))
    first = json.loads((run / "eval" / "step_0000.json").read_text())
    last_name = summary["stages"][-1]["name"]
    last = json.loads((run / "eval" / f"{last_name}.json").read_text())
    base, final = per_problem_pass1(first), per_problem_pass1(last)
    ids = sorted(base)
    test = paired_test([base[i] for i in ids], [final[i] for i in ids])
    report = {
        "stages": stages,
        "comparison": {"baseline": stages[0]["pass_at_1"], "final": stages[-1]["pass_at_1"],
                       "p_value": test["p_t"], "test": f"paired t-test (scipy.stats.ttest_rel) over {test['n']} held-out problems",
                       "wilcoxon_p": test["p_wilcoxon"], "mean_diff": test["mean_diff"],
                       "ci95": [test["ci_low"], test["ci_high"]]},
        "accounting": summary["accounting"],
        "seconds": time.perf_counter() - started,
        "evaluations": [str(p) for p in evals],
    }
    write_json(out / "report.json", report)
    plot_stage_curve(stages, out / "stages.png")
    plot_verdicts(stages, out / "verdicts.png")
    c = report["comparison"]
    progress(f"[demo] {algo.upper()} vs SFT: {c['baseline']:.3f} -> {c['final']:.3f}, p = {c['p_value']:.2g} "
             f"({c['test']}); {report['seconds']:.0f} s in all; report in {out / 'report.json'}")
    return report


def _srl_stage(name: str, report: dict, path: Path) -> dict:
    o = report["overall"]
    # pass_at_1 is the execution success (one sampled action applied, the tests run): what stages.png plots
    return {"name": name, "pass_at_1": o["execution_success"], "problems": len(report["by_task"]),
            **{k: o[k] for k in ("trace_parse_rate", "action_fidelity", "execution_success", "state_faithfulness",
                                 "think_similarity", "brevity_penalty", "reward_mean")},
            "eval": str(path)}


def _paired(metric: str, base: dict, final: dict) -> dict:
    ids = sorted(base["by_task"])
    test = paired_test([base["by_task"][i][metric] for i in ids], [final["by_task"][i][metric] for i in ids])
    return {"baseline": base["overall"][metric], "final": final["overall"][metric], "p_value": test["p_t"],
            "test": f"paired t-test (scipy.stats.ttest_rel) over {test['n']} held-out tasks",
            "wilcoxon_p": test["p_wilcoxon"], "mean_diff": test["mean_diff"], "ci95": [test["ci_low"], test["ci_high"]]}


def srl_demo(config: DemoConfig, progress=print) -> dict:
    """``halo-ray demo --algorithm srl``: tiny model, SFT on teacher traces, SRL, held-out report.

    Both evaluations are ``halo-ray srl eval`` on ``config.srl.data.eval`` with ``config.srl.eval``'s
    sampling (seeded, so they differ only by the model). ``report.json``'s ``comparison`` is action
    fidelity (the primary metric) SRL vs SFT with ``comparison.execution_success`` beside it.
    """
    from halo_ray.srl.tokens import prepare_model_dir
    from halo_ray.tiny import init_tiny

    stage_cfg = config.srl
    if not stage_cfg.data.eval:
        raise ConfigError("srl.data.eval: the demo compares held-out action fidelity across stages; name held-out tasks "
                          "(srl:synthetic#heldout)")
    out = Path(config.output)
    for part in (config.srl_sft.logging.name, stage_cfg.logging.name):  # the demo owns its stage runs: start afresh
        if part and (out / part).is_dir():
            shutil.rmtree(out / part)
    started = time.perf_counter()
    init_dir = init_tiny(out / "model-init", seed=config.seed)
    added = prepare_model_dir(init_dir)  # the trace tags as tokens of their own before any training (seed 003 §8)
    progress(f"[demo] built the tiny model in {init_dir} ({added} trace tag tokens added)")

    def held_out(model_path: str, name: str) -> dict:
        cfg = dataclasses.replace(stage_cfg, model=dataclasses.replace(stage_cfg.model, path=model_path))
        path = out / "eval" / f"{name}.json"
        report = evaluate_model(cfg, str(path), progress=lambda line: progress(f"[demo] {name} held-out: {line}"))
        return _srl_stage(name, report, path) | {"_report": report}

    initial = held_out(str(init_dir), "base")  # the lower bound (seed 003 §12): the untrained tiny model
    sft_cfg = dataclasses.replace(config.srl_sft, model=dataclasses.replace(config.srl_sft.model, path=str(init_dir)),
                                  logging=_in(out, config.srl_sft.logging))
    sft_summary = sft(sft_cfg)
    progress(f"[demo] SFT on teacher traces: {sft_summary['examples']} examples, {sft_summary['train'].get('steps')} "
             f"steps, mean loss {sft_summary['train'].get('loss', float('nan')):.4f}, {sft_summary['seconds']:.0f} s")
    base = held_out(sft_summary["final"], "sft")
    # the stream's own evaluation (exact-action pass@1) is left out: the demo evaluates after the stage instead
    train_cfg = dataclasses.replace(stage_cfg, model=dataclasses.replace(stage_cfg.model, path=sft_summary["final"]),
                                    data=dataclasses.replace(stage_cfg.data, eval=""), logging=_in(out, stage_cfg.logging))
    summary = srl(train_cfg, progress=lambda line: progress(f"[demo] SRL {line}"))
    final = held_out(summary["final_checkpoint"], f"srl_step_{train_cfg.stream.num_steps}")
    stages = [{k: v for k, v in s.items() if k != "_report"} for s in (initial, base, final)]
    comparison = {"baseline_stage": "sft", "metric": "action_fidelity",
                  **_paired("action_fidelity", base["_report"], final["_report"]),
                  "execution_success": _paired("execution_success", base["_report"], final["_report"]),
                  # the whole recipe (SFT warm start, then SRL) against the model it started from
                  "over_base": {m: _paired(m, initial["_report"], final["_report"])
                                for m in ("action_fidelity", "execution_success")}}
    report = {"stages": stages, "comparison": comparison, "accounting": summary["accounting"],
              "seconds": time.perf_counter() - started, "evaluations": [s["eval"] for s in stages]}
    write_json(out / "report.json", report)
    plot_stage_curve(stages, out / "stages.png", title="held-out execution success per stage")
    c, e = comparison, comparison["execution_success"]
    a, x = comparison["over_base"]["action_fidelity"], comparison["over_base"]["execution_success"]
    progress(f"[demo] SFT then SRL vs the base on {stages[0]['problems']} held-out tasks: action fidelity "
             f"{a['baseline']:.3f} -> {a['final']:.3f} (p = {a['p_value']:.2g}), execution success {x['baseline']:.3f} -> "
             f"{x['final']:.3f} (p = {x['p_value']:.2g})")
    progress(f"[demo] SRL vs SFT on {stages[0]['problems']} held-out tasks: action fidelity {c['baseline']:.3f} -> "
             f"{c['final']:.3f} (p = {c['p_value']:.2g}), execution success {e['baseline']:.3f} -> {e['final']:.3f} "
             f"(p = {e['p_value']:.2g}); {report['seconds']:.0f} s in all; report in {out / 'report.json'}")
    return report
