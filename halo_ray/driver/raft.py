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
from typing import Callable

from halo_ray.config import to_dict
from halo_ray.driver.stream import (
    Stream, Timeline, begin, checkpoint_dir, evaluate_stage, latest_checkpoint, prune_checkpoints,
    samples_table, stream_metrics, stream_run, train_and_sync,
)
from halo_ray.io import write_json
from halo_ray.sections import RaftJobConfig
from halo_ray.selection import select

log = logging.getLogger(__name__)


def raft(config: RaftJobConfig, resume: bool = False, progress: Callable[[str], None] = log.info) -> dict:
    """Run RAFT on the stream; returns a summary (run directory, stages, sample accounting).

    Args:
        config: the job config (``configs/raft.yaml`` mirrors it).
        resume: continue the run in ``logging.run_dir/logging.name`` from its last checkpoint;
            no prompt is skipped or trained on twice.
        progress: receives one line per evaluation and step (the CLI prints them).
    """
    with stream_run(config, "raft", resume) as (run, problems, heldout, rollout, verifiers, learner):
        r, sc = config.rollout, config.stream
        extra = begin(run, config, heldout, rollout, verifiers, learner, resume, progress)
        start, version, stages = extra["next_step"], extra["version"], extra["stages"]
        kept_total = extra.get("kept", 0)

        timeline = Timeline()
        stream = Stream(rollout, verifiers, problems, sc, r, config.data.shuffle_seed, extra.get("stream"), timeline)
        wall0 = time.perf_counter()
        for step in range(start, sc.num_steps):
            t_step = time.perf_counter()
            taken, wait_s = stream.next_groups(version)
            rows = [row for g in taken for row in g.rows]
            stream.buffer.use(taken, version)
            kept, counts = select(rows, config.raft)
            kept_total += counts["kept"]
            examples = [{"prompt_token_ids": k["prompt_token_ids"], "token_ids": k["token_ids"]} for k in kept]
            train, version = train_and_sync(learner, rollout, timeline, examples, version, step + 1,
                                            temperature=r.temperature)
            window = time.perf_counter() - t_step
            stream.buffer.step_done()
            stream.fill()  # the next step's prompts go out before logging and evaluation

            name = f"step_{step + 1:04d}"
            kept_ids = {id(k) for k in kept}
            run.samples(name, samples_table(rows, kept=[id(x) in kept_ids for x in rows]))
            metrics = stream_metrics(rows, stream, rollout, verifiers, time.perf_counter() - wall0, wait_s, window)
            metrics.update({"stream/kept_fraction": counts["kept"] / max(len(rows), 1),
                            "stream/fallback": counts["fallback"], "stream/version": version,
                            "train/examples": len(examples)})
            metrics.update({k if k.startswith("time/") else f"train/{k}": v
                            for k, v in train.items() if k != "steps_log"})
            last = step + 1 == sc.num_steps
            if heldout and (last or (step + 1) % sc.eval_every == 0):
                metrics["eval/pass_at_1"] = evaluate_stage(run, rollout, verifiers, heldout, config, name, stages)
            run.log(step + 1, metrics, stage=name, reward_mean=metrics["verify/reward_mean"], counts=counts)
            held = f", held-out pass@1 {metrics['eval/pass_at_1']:.3f}" if "eval/pass_at_1" in metrics else ""
            progress(f"step {step + 1}/{sc.num_steps}: reward {metrics['verify/reward_mean']:.3f}, kept "
                     f"{counts['kept']} of {len(rows)}, loss {train.get('loss', float('nan')):.4f}{held}")
            if last or (step + 1) % config.checkpoint.every_steps == 0:
                # Prompts still in flight or waiting are issued again after a resume: they were not trained on.
                learner.save_checkpoint(str(checkpoint_dir(run.path, step + 1)), dict(
                    next_step=step + 1, version=version, stages=stages, stream=stream.buffer.checkpoint_state(),
                    kept=kept_total, config=to_dict(config)))
                prune_checkpoints(run.path, config.checkpoint.keep)
            if sc.timeline and (last or (step + 1) % config.checkpoint.every_steps == 0):
                timeline.write(run.path, plot=last)
        stream.abandon()
        acc = dict(stream.buffer.state.counts)
        accounting = dict(generated=acc["generated"], kept=kept_total,
                          filtered=acc["used"] - kept_total + acc["filtered"], stale=acc["stale"], failed=acc["failed"])
        summary = {"run_dir": str(run.path), "stages": stages, "accounting": accounting, "version": version,
                   "staleness": stream.buffer.state.staleness,
                   "final_checkpoint": str(latest_checkpoint(run.path) or "")}
        write_json(run.path / "summary.json", summary)
        return summary
