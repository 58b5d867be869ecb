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
from typing import Callable

import pyarrow as pa

from halo_ray.driver.loop import StepBatch, run_stream, take_with_signal
from halo_ray.driver.stream import Stream, samples_table
from halo_ray.errors import ConfigError
from halo_ray.groups import prepare_groups
from halo_ray.sections import GRPOJobConfig

log = logging.getLogger(__name__)


def grpo_batch(config: GRPOJobConfig, zero_advantage: Callable[[dict], bool] | None = None
               ) -> Callable[[Stream, int], StepBatch]:
    """GRPO's step: groups with signal (dynamic sampling), shaped rewards and group-normalised advantages.

    ``zero_advantage(row)`` True trains that sample with advantage 0 after its group's advantages are
    computed (SRL: malformed traces; their reward still counts in the group's mean and std).
    """
    g, max_new_tokens, temperature = config.objective.grpo, config.rollout.max_new_tokens, config.rollout.temperature

    def signal(groups: list) -> set:
        return {grp.position for grp in groups
                if prepare_groups(samples_table(grp.rows), g, max_new_tokens)[0].num_rows}

    def make(stream: Stream, version: int) -> StepBatch:
        taken, flat, wait_s = take_with_signal(stream, version, signal, g.filter_zero_variance)
        table, counts = prepare_groups(samples_table([r for grp in taken for r in grp.rows]), g, max_new_tokens) \
            if taken else (pa.table({}), {})
        rows = table.to_pylist()
        for x in rows if zero_advantage else ():
            if zero_advantage(x):
                x["advantage"] = 0.0
        examples = [{"prompt_token_ids": x["prompt_token_ids"], "token_ids": x["token_ids"], "logprobs": x["logprobs"],
                     "advantage": x["advantage"], "weight": x["weight"], "group": x["group"], "unit": x["group"]}
                    for x in rows if x["token_ids"]]
        clip = lambda train: train.get("clip_frac_low", 0.0) + train.get("clip_frac_high", 0.0)  # noqa: E731
        return StepBatch(
            taken=taken, rows=rows, examples=examples, wait_s=wait_s, epochs=g.updates_per_batch, temperature=temperature,
            columns={"advantage": [x["advantage"] for x in rows], "train_reward": [x["train_reward"] for x in rows]},
            metrics={"stream/dynamic_filtered_groups": flat, "rollout/overlong": counts.get("overlong", 0),
                     "rollout/overlong_masked": counts.get("overlong_masked", 0),
                     "verify/train_reward_mean": sum(x["train_reward"] for x in rows) / max(len(rows), 1)},
            describe=lambda train: f"{flat} flat dropped, clip {clip(train):.3f}, ")

    return make


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
    return run_stream(config, "grpo", resume, progress, grpo_batch(config))
