"""GRPO with the DAPO options on the asynchronous stream, top to bottom (Shao et al. 2024; DAPO, Yu et
al. 2025; Dr.GRPO, Liu et al. 2025).

Each learner step: take ``stream.prompts_per_step`` scored groups (all ``samples_per_prompt``
samples of a prompt; sampled up to ``stream.max_staleness`` versions ahead while the learner trains);
shape each sample's reward (``objective.grpo.reward``), handle completions cut at ``max_new_tokens``
(``overlong``); groups whose rewards are all equal carry no signal: with ``filter_zero_variance`` they
are dropped, counted, and replaced by new prompts until the batch is full (DAPO's dynamic sampling);
normalise advantages within each group; train ``updates_per_batch`` passes with the clipped
surrogate, the engine's log-probs correcting for staleness (``objective.correction``); ship weights.
Then samples, metrics, evaluation, checkpoint and timeline as in RAFT.
"""

from __future__ import annotations

import logging
import time
from typing import Callable

import pyarrow as pa

from halo_ray.config import to_dict
from halo_ray.driver.stream import (
    Stream, Timeline, begin, checkpoint_dir, evaluate_stage, latest_checkpoint, prune_checkpoints,
    samples_table, stream_metrics, stream_run, train_and_sync,
)
from halo_ray.errors import ConfigError
from halo_ray.groups import prepare_groups
from halo_ray.io import write_json
from halo_ray.sections import GRPOJobConfig

log = logging.getLogger(__name__)

MAX_REJECTED_BATCHES = 4
"""Dynamic sampling gives up topping a step up after rejecting this many batches' worth of flat groups
(a task the policy always or never solves would otherwise sample forever) and trains on what it has."""


def take_batch(stream: Stream, version: int, cfg, max_new_tokens: int) -> tuple[list, pa.Table, dict, float]:
    """The step's groups with signal: take, drop flat groups (counted, replaced), top up, repeat.

    Returns ``(groups, table, counts, wait_s)``: ``table`` is the groups' samples with the
    ``train_reward``, ``advantage``, ``group`` and ``weight`` columns of ``prepare_groups``.
    """
    per_step = stream.buffer.per_step
    kept, wait, rejected, counts = [], 0.0, 0, dict(filtered_groups=0, overlong=0, overlong_masked=0)
    while len(kept) < per_step:
        groups, waited = stream.next_groups(version, per_step - len(kept))
        wait += waited
        if not cfg.filter_zero_variance or rejected >= MAX_REJECTED_BATCHES * per_step:
            kept += groups
            break
        table = samples_table([r for g in groups for r in g.rows])
        signal, _ = prepare_groups(table, cfg, max_new_tokens)
        live = set(signal.column("prompt_id").to_pylist())
        flat = [g for g in groups if g.prompt_id not in live]
        stream.buffer.reject(flat)
        counts["filtered_groups"] += len(flat)
        rejected += len(flat)
        kept += [g for g in groups if g.prompt_id in live]
    table, c = prepare_groups(samples_table([r for g in kept for r in g.rows]), cfg, max_new_tokens) \
        if kept else (pa.table({}), {})
    counts["overlong"], counts["overlong_masked"] = c.get("overlong", 0), c.get("overlong_masked", 0)
    return kept, table, counts, wait


def grpo(config: GRPOJobConfig, resume: bool = False, progress: Callable[[str], None] = log.info) -> dict:
    """Run GRPO on the stream; returns a summary (run directory, stages, sample accounting).

    Args:
        config: the job config (``configs/grpo.yaml`` mirrors it).
        resume: continue the run in ``logging.run_dir/logging.name`` from its last checkpoint.
        progress: receives one line per evaluation and step (the CLI prints them).
    """
    if config.objective.name != "grpo":
        raise ConfigError(f"objective.name: the GRPO job trains the grpo objective, got {config.objective.name!r}")
    if config.rollout.samples_per_prompt < 2:
        raise ConfigError("rollout.samples_per_prompt: GRPO needs at least 2 samples per prompt to form a group "
                          f"advantage, got {config.rollout.samples_per_prompt}")
    with stream_run(config, "grpo", resume) as (run, problems, heldout, rollout, verifiers, learner):
        r, sc, g = config.rollout, config.stream, config.objective.grpo
        extra = begin(run, config, heldout, rollout, verifiers, learner, resume, progress)
        start, version, stages = extra["next_step"], extra["version"], extra["stages"]

        timeline = Timeline()
        stream = Stream(rollout, verifiers, problems, sc, r, config.data.shuffle_seed, extra.get("stream"), timeline)
        wall0 = time.perf_counter()
        for step in range(start, sc.num_steps):
            t_step = time.perf_counter()
            taken, table, counts, wait_s = take_batch(stream, version, g, r.max_new_tokens)
            stream.buffer.use(taken, version)
            rows = table.to_pylist()
            examples = [{"prompt_token_ids": x["prompt_token_ids"], "token_ids": x["token_ids"], "logprobs": x["logprobs"],
                         "advantage": x["advantage"], "weight": x["weight"], "group": x["group"], "unit": x["group"]}
                        for x in rows if x["token_ids"]]
            train, version = train_and_sync(learner, rollout, timeline, examples, version, step + 1,
                                            epochs=g.updates_per_batch, temperature=r.temperature)
            window = time.perf_counter() - t_step
            stream.buffer.step_done()
            stream.fill()

            name = f"step_{step + 1:04d}"
            if rows:
                run.samples(name, samples_table(rows, advantage=[x["advantage"] for x in rows],
                                                train_reward=[x["train_reward"] for x in rows]))
            metrics = stream_metrics(rows, stream, rollout, verifiers, time.perf_counter() - wall0, wait_s, window)
            metrics.update({"stream/version": version, "stream/groups": len(taken),
                            "stream/dynamic_filtered_groups": counts["filtered_groups"],
                            "rollout/overlong": counts["overlong"], "rollout/overlong_masked": counts["overlong_masked"],
                            "train/examples": len(examples),
                            "verify/train_reward_mean": sum(x["train_reward"] for x in rows) / max(len(rows), 1)})
            metrics.update({k if k.startswith("time/") else f"train/{k}": v
                            for k, v in train.items() if k != "steps_log"})
            last = step + 1 == sc.num_steps
            if heldout and (last or (step + 1) % sc.eval_every == 0):
                metrics["eval/pass_at_1"] = evaluate_stage(run, rollout, verifiers, heldout, config, name, stages)
            run.log(step + 1, metrics, stage=name, reward_mean=metrics["verify/reward_mean"])
            held = f", held-out pass@1 {metrics['eval/pass_at_1']:.3f}" if "eval/pass_at_1" in metrics else ""
            progress(f"step {step + 1}/{sc.num_steps}: reward {metrics['verify/reward_mean']:.3f} over {len(taken)} "
                     f"groups ({counts['filtered_groups']} flat dropped), loss {train.get('loss', float('nan')):.4f}, "
                     f"clip {train.get('clip_frac_low', 0.0) + train.get('clip_frac_high', 0.0):.3f}{held}")
            if last or (step + 1) % config.checkpoint.every_steps == 0:
                learner.save_checkpoint(str(checkpoint_dir(run.path, step + 1)), dict(
                    next_step=step + 1, version=version, stages=stages, stream=stream.buffer.checkpoint_state(),
                    config=to_dict(config)))
                prune_checkpoints(run.path, config.checkpoint.keep)
            if sc.timeline and (last or (step + 1) % config.checkpoint.every_steps == 0):
                timeline.write(run.path, plot=last)
        stream.abandon()
        summary = {"run_dir": str(run.path), "stages": stages, "accounting": dict(stream.buffer.state.counts),
                   "version": version, "staleness": stream.buffer.state.staleness,
                   "final_checkpoint": str(latest_checkpoint(run.path) or "")}
        write_json(run.path / "summary.json", summary)
        return summary
