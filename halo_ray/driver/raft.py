"""RAFT on the asynchronous stream, top to bottom (seeds 000, 001).

Each learner step: take the next ``stream.prompts_per_step`` scored groups from the stream (sampled
up to ``stream.max_staleness`` policy versions ahead while the learner trains; older samples are
dropped and counted), keep the best samples (``halo_ray.selection.select``), train on them, ship the
new weights to the engines by ref. Then: samples as Parquet, metrics, held-out pass@1 every
``stream.eval_every`` steps, a checkpoint with the stream's data position and RNG state, and the
timeline of the stream's spans.
"""

from __future__ import annotations

import logging
import time

import pyarrow as pa
from typing import Callable

from halo_ray.config import to_dict, validated
from halo_ray.data.sources import problems_from_spec
from halo_ray.driver import RolloutGroup, init, resolve_model
from halo_ray.driver.stream import (
    Stream, Timeline, VerifierGroup, check_capacity, checkpoint_dir, evaluate, idle_fraction, latest_checkpoint,
    prune_checkpoints, stage_summary, verifier_cpus,
)
from halo_ray.errors import ConfigError
from halo_ray.io import write_json
from halo_ray.runlog import RunLog, run_path
from halo_ray.samples import SCORED_SCHEMA
from halo_ray.sections import RaftJobConfig
from halo_ray.selection import select, verdict_histogram

log = logging.getLogger(__name__)


def learner_group(model, learner, objective, total_steps=None):
    from halo_ray.actors.learner import LearnerGroup

    return LearnerGroup(model, learner, objective, total_steps=total_steps)


def raft(config: RaftJobConfig, resume: bool = False, progress: Callable[[str], None] = log.info) -> dict:
    """Run RAFT on the stream; returns a summary (run directory, stages, sample accounting).

    Args:
        config: the job config (``configs/raft.yaml`` mirrors it).
        resume: continue the run in ``logging.run_dir/logging.name`` from its last checkpoint;
            no prompt is skipped or trained on twice.
        progress: receives one line per evaluation and step (the CLI prints them).
    """
    config = validated(config)
    if resume and not config.logging.name:
        raise ConfigError("--resume needs the run's name (logging.name) to find its checkpoints")
    if not config.data.train:
        raise ConfigError("data.train: name the RAFT prompts (a problems file or a source such as demo#raft)")
    init(config.cluster)
    model = resolve_model(config.model)
    problems = {p.id: p.to_dict() for p in problems_from_spec(config.data.train)}
    heldout = [p.to_dict() for p in problems_from_spec(config.data.eval)] if config.data.eval else []
    r = config.rollout
    check_capacity(rollout=r.num_engines * r.num_cpus, verifier=verifier_cpus(config.verifier),
                   learner=config.learner.num_ranks * config.learner.num_cpus_per_rank)
    run = RunLog(run_path(config.logging.run_dir, config.logging.name, "raft", resume), config,
                 config.logging.tensorboard)
    groups = []  # shut down whatever started, also when a step fails
    try:
        groups.append(RolloutGroup(model, r))
        groups.append(VerifierGroup(config.verifier))
        groups.append(learner_group(model, config.learner, config.objective))
        return _raft_loop(config, resume, run, problems, heldout, *groups, progress=progress)
    finally:
        run.close()
        for group in groups:
            group.shutdown()


def _evaluate(run: RunLog, rollout, verifiers, heldout, config: RaftJobConfig, name: str, stages: list) -> float:
    results, _ = evaluate(rollout, verifiers, heldout, config.eval, config.rollout.max_new_tokens, name)
    write_json(run.path / "eval" / f"{name}.json", results)
    stages.append(stage_summary(results))
    return results["pass_at_k"]["1"]


def _raft_loop(config: RaftJobConfig, resume: bool, run: RunLog, problems: dict, heldout: list,
               rollout: RolloutGroup, verifiers: VerifierGroup, learner, progress: Callable[[str], None]) -> dict:
    r, sc, cfg = config.rollout, config.stream, config.raft
    start, version, stages, stream_state, kept_total = 0, 0, [], None, 0
    ckpt = latest_checkpoint(run.path) if resume else None
    if ckpt is not None:
        extra = learner.load_checkpoint(str(ckpt))
        start, version, stages = extra["next_step"], extra["version"], extra["stages"]
        stream_state, kept_total = extra["stream"], extra["kept"]
        rollout.update_weights(learner.rollout_weights_ref(), version)
        progress(f"resumed {run.path} at step {start + 1} (policy version {version})")
    elif resume:
        log.warning("no checkpoint in %s: starting from step 0", run.path)
    if heldout and start == 0:
        pass1 = _evaluate(run, rollout, verifiers, heldout, config, "step_0000", stages)
        run.log(0, {"eval/pass_at_1": pass1}, stage="step_0000")
        progress(f"step 0: held-out pass@1 {pass1:.3f}")

    timeline = Timeline()
    stream = Stream(rollout, verifiers, problems, sc, r, config.data.shuffle_seed, stream_state, timeline)
    wall0 = time.perf_counter()
    for step in range(start, sc.num_steps):
        t_step = time.perf_counter()
        taken, wait_s = stream.next_groups(version)
        rows = [row for g in taken for row in g.rows]
        stream.buffer.use(taken, version)
        kept, counts = select(rows, cfg)
        kept_total += counts["kept"]
        examples = [{"prompt_token_ids": k["prompt_token_ids"], "token_ids": k["token_ids"]} for k in kept]
        t0 = time.perf_counter()
        train_metrics = learner.train(examples, temperature=r.temperature) if examples else {}
        t1 = time.perf_counter()
        if examples:  # weights change only when something was trained
            timeline.add("learner", f"train step {step + 1}", t0, t1)
            version += 1
            rollout.update_weights(learner.rollout_weights_ref(), version)
            timeline.add("sync", f"weights v{version}", t1, time.perf_counter())
        t_synced = time.perf_counter()
        stream.buffer.step_done()
        stream.fill()  # the next step's prompts go out before logging and evaluation

        name = f"step_{step + 1:04d}"
        kept_ids = {id(k) for k in kept}
        run.samples(name, pa.Table.from_pylist([dict(x, kept=id(x) in kept_ids) for x in rows],
                                              schema=SCORED_SCHEMA.append(pa.field("kept", pa.bool_()))))
        acc = stream.buffer.state.counts
        tokens = sum(len(x["token_ids"]) for x in rows)
        window = max(t_synced - t_step, 1e-9)
        metrics = {
            "rollout/samples": len(rows), "rollout/tokens": tokens,
            "rollout/completion_len": tokens / max(len(rows), 1),
            "verify/reward_mean": sum(x["reward"] for x in rows) / max(len(rows), 1),
            "verify/pass_fraction": sum(x["verdict"] == "SUCCESS" for x in rows) / max(len(rows), 1),
            "stream/kept_fraction": counts["kept"] / max(len(rows), 1),
            "stream/fallback": counts["fallback"], "stream/wait_s": wait_s,
            "stream/samples_per_s": len(rows) / window, "stream/version": version,
            **{f"stream/{k}": v for k, v in acc.items()},
            **{f"stream/staleness/{k}": v for k, v in stream.buffer.state.staleness.items()},
            "time/train_s": t1 - t0, "time/sync_s": t_synced - t1,
            "train/examples": len(examples),
            **{f"train/{k}": v for k, v in train_metrics.items() if k != "steps_log"},
            **{f"verify/verdict/{k}": v for k, v in verdict_histogram(rows).items()},
        }
        wall = time.perf_counter() - wall0
        for i, s in enumerate(rollout.stats()):
            metrics[f"stream/idle/rollout-{i}"] = idle_fraction(s["busy_s"], wall)
        metrics["stream/idle/verifier"] = idle_fraction(verifiers.busy_s(), wall)
        metrics["stream/idle/learner"] = idle_fraction(timeline.busy("learner"), wall)
        last = step + 1 == sc.num_steps
        if heldout and (last or (step + 1) % sc.eval_every == 0):
            metrics["eval/pass_at_1"] = _evaluate(run, rollout, verifiers, heldout, config, name, stages)
        run.log(step + 1, metrics, stage=name, reward_mean=metrics["verify/reward_mean"], counts=counts)
        held = f", held-out pass@1 {metrics['eval/pass_at_1']:.3f}" if "eval/pass_at_1" in metrics else ""
        progress(f"step {step + 1}/{sc.num_steps}: reward {metrics['verify/reward_mean']:.3f}, kept {counts['kept']} "
                 f"of {len(rows)}, loss {train_metrics.get('loss', float('nan')):.4f}{held}")
        if last or (step + 1) % config.checkpoint.every_steps == 0:
            # Prompts still in flight or waiting are issued again after a resume: they were not trained on.
            learner.save_checkpoint(str(checkpoint_dir(run.path, step + 1)), dict(
                next_step=step + 1, version=version, stages=stages, stream=stream.buffer.checkpoint_state(),
                kept=kept_total, config=to_dict(config)))
            prune_checkpoints(run.path, config.checkpoint.keep)
        if sc.timeline:
            timeline.write(run.path)
    stream.abandon()
    acc = dict(stream.buffer.state.counts)
    accounting = dict(generated=acc["generated"], kept=kept_total, filtered=acc["used"] - kept_total + acc["filtered"],
                      stale=acc["stale"], failed=acc["failed"])
    summary = {"run_dir": str(run.path), "stages": stages, "accounting": accounting, "version": version,
               "staleness": stream.buffer.state.staleness,
               "final_checkpoint": str(latest_checkpoint(run.path) or "")}
    write_json(run.path / "summary.json", summary)
    return summary
