"""Online DPO on the asynchronous stream, top to bottom (seed 002's pair rule on the policy's own samples).

Each learner step: take ``stream.prompts_per_step`` scored groups (``samples_per_prompt`` responses
of a prompt, sampled up to ``stream.max_staleness`` versions ahead while the learner trains); pair
each group's responses by seed 002's rule (``halo_ray.pairs.group_pairs``: a pass-rate gap of at
least ``pairs.min_gap``, higher chosen, at most ``pairs.max_pairs_per_problem`` per prompt); a group
without a pair (every response scored alike) carries no preference and is dropped, counted and
replaced by a new prompt until the step is full, as GRPO's dynamic sampling does; train the one DPO
loss of the project (``objective.dpo``) against the frozen starting model, each pair's two sequences
in one micro-batch; ship weights. Samples, metrics, evaluation, checkpoints and timeline as in RAFT.

DPO's policy term is the model's own distribution, so the learner's log-probs are taken at
temperature 1 whatever the sampling temperature was; the staleness bound limits how far the pairs'
sampling policy lags the trained one.
"""

from __future__ import annotations

import logging
from typing import Callable

from halo_ray.driver.loop import StepBatch, run_stream, take_with_signal
from halo_ray.driver.stream import Stream
from halo_ray.pairs import group_pairs, pair_examples
from halo_ray.sections import OnlineDPOJobConfig

log = logging.getLogger(__name__)


def dpo_batch(config: OnlineDPOJobConfig) -> Callable[[Stream, int], StepBatch]:
    """Online DPO's step: groups with at least one pair, their pairs as learner examples."""
    rule = config.pairs

    def pairs_of(group) -> list[dict]:
        return group_pairs(group.rows, rule.min_gap, rule.score, rule.max_pairs_per_problem)

    def make(stream: Stream, version: int) -> StepBatch:
        taken, unpaired, wait_s = take_with_signal(stream, version, lambda groups: {
            g.position for g in groups if pairs_of(g)})
        pairs, rows, in_pair = [], [], []
        for g in taken:
            group_pairs_ = pairs_of(g)
            paired = {p["chosen_index"] for p in group_pairs_} | {p["rejected_index"] for p in group_pairs_}
            pairs += group_pairs_
            rows += g.rows
            in_pair += [r.get("sample_index") in paired for r in g.rows]
        examples = [dict(ex, unit=ex["pair_id"]) for ex in pair_examples(pairs)]
        gaps = [p["chosen_score"] - p["rejected_score"] for p in pairs]
        return StepBatch(
            taken=taken, rows=rows, examples=examples, wait_s=wait_s, temperature=1.0,
            columns={"paired": in_pair},
            metrics={"stream/pairs": len(pairs), "stream/unpaired_groups": unpaired,
                     "stream/pair_gap_mean": sum(gaps) / len(gaps) if gaps else 0.0,
                     "stream/paired_fraction": sum(in_pair) / max(len(in_pair), 1)},
            totals={"pairs": len(pairs)},
            describe=lambda train: (f"{len(pairs)} pairs ({unpaired} unpaired groups dropped), accuracy "
                                    f"{train.get('rewards/accuracies', float('nan')):.3f}, margin "
                                    f"{train.get('rewards/margins', float('nan')):.3f}, "))

    return make


def online_dpo(config: OnlineDPOJobConfig, resume: bool = False, progress: Callable[[str], None] = log.info) -> dict:
    """Run online DPO on the stream; returns a summary (run directory, stages, accounting, pairs trained).

    Args:
        config: the job config (``configs/dpo-online.yaml`` mirrors it).
        resume: continue the run in ``logging.run_dir/logging.name`` from its last checkpoint.
        progress: receives one line per evaluation and step (the CLI prints them).
    """
    return run_stream(config, "online_dpo", resume, progress, dpo_batch(config))
