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
from typing import Callable

from halo_ray.driver.loop import StepBatch, run_stream
from halo_ray.driver.stream import Stream
from halo_ray.sections import RaftJobConfig
from halo_ray.selection import select

log = logging.getLogger(__name__)


def raft_batch(config: RaftJobConfig) -> Callable[[Stream, int], StepBatch]:
    """RAFT's step: the next groups as they come, the best samples kept (``halo_ray.selection.select``)."""

    def make(stream: Stream, version: int) -> StepBatch:
        taken, wait_s = stream.next_groups(version)
        rows = [row for g in taken for row in g.rows]
        kept, counts = select(rows, config.raft)
        kept_ids = {id(k) for k in kept}
        return StepBatch(
            taken=taken, rows=rows, wait_s=wait_s, temperature=config.rollout.temperature,
            examples=[{"prompt_token_ids": k["prompt_token_ids"], "token_ids": k["token_ids"]} for k in kept],
            columns={"kept": [id(x) in kept_ids for x in rows]},
            metrics={"stream/kept_fraction": counts["kept"] / max(len(rows), 1), "stream/kept": counts["kept"],
                     "stream/fallback": counts["fallback"]},
            totals={"kept": counts["kept"]},
            describe=lambda train: f"kept {counts['kept']} of {len(rows)}, ")

    return make


def raft(config: RaftJobConfig, resume: bool = False, progress: Callable[[str], None] = log.info) -> dict:
    """Run RAFT on the stream; returns a summary (run directory, stages, sample accounting).

    Args:
        config: the job config (``configs/raft.yaml`` mirrors it).
        resume: continue the run in ``logging.run_dir/logging.name`` from its last checkpoint;
            no prompt is skipped or trained on twice.
        progress: receives one line per evaluation and step (the CLI prints them).
    Returns:
        The summary; its ``accounting`` splits the stream's used samples into RAFT's ``kept`` and
        ``filtered``: ``generated = kept + filtered + stale + failed``.
    """
    def account(acc: dict, totals: dict) -> dict:
        kept = totals.get("kept", 0)
        return dict(generated=acc["generated"], kept=kept, filtered=acc["used"] - kept + acc["filtered"],
                    stale=acc["stale"], failed=acc["failed"])

    return run_stream(config, "raft", resume, progress, raft_batch(config), account)
