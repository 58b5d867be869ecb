"""The learner's pure step plan: which examples each rank trains on in each optimizer step, the
step-wide normalisers of the learner contract, and how the ranks' results combine.

Plain functions of the examples and the layout (no torch, no DeepSpeed), the same on every rank.
"""

from __future__ import annotations

import math
import random
from typing import Any, Sequence


def plan_micro_batches(examples: Sequence[dict], num_ranks: int, micro_batch_size: int, grad_accum: int,
                       rng: random.Random) -> list[list[list[list[int | None]]]]:
    """Shuffle, pack and deal examples into optimizer steps of each rank's micro-batches, for one epoch.

    Examples sharing a ``unit`` key (a GRPO group, a DPO pair) stay together: units are shuffled
    whole and packed in order into micro-batches of at most ``micro_batch_size`` sequences (a unit
    larger than that gets a micro-batch of its own). The last step is filled with padding
    micro-batches (``None``: one weight-0 row that trains nothing), so every rank runs the same
    number of collective steps.

    Args:
        examples: the training examples (every rank passes the same list).
        num_ranks, micro_batch_size, grad_accum: the data-parallel layout.
        rng: shuffling RNG; all ranks hold the same state, so all compute the same plan.
    Returns:
        ``plan[step][rank]`` is that rank's list of ``grad_accum`` micro-batches for the step, each a
        list of example indices (or ``None`` for a padding micro-batch). Step s holds micro-batches
        ``s*g*N ... (s+1)*g*N - 1`` of the packed order, micro-batch k going to rank ``k mod N``, so
        N ranks with accumulation g make the same steps as one rank with N*g.
    """
    units: dict[Any, list[int]] = {}
    for i, ex in enumerate(examples):
        units.setdefault(ex.get("unit", ("example", i)), []).append(i)
    order = list(units.values())
    rng.shuffle(order)
    micro: list[list[int] | None] = []
    for unit in order:
        if micro and micro[-1] is not None and len(micro[-1]) + len(unit) <= micro_batch_size:
            micro[-1].extend(unit)
        else:
            micro.append(list(unit))
    per_step = grad_accum * num_ranks
    steps = max(1, math.ceil(len(micro) / per_step))
    micro += [None] * (steps * per_step - len(micro))
    return [[[micro[s * per_step + j] for j in range(r, per_step, num_ranks)] for r in range(num_ranks)]
            for s in range(steps)]


def step_norms(examples: Sequence[dict], step: list[list[list[int] | None]], max_len: int) -> dict[str, float]:
    """The contract's step-wide normalisers for one step of the plan (the same on every rank)."""
    tokens, sequences, pairs = 0.0, 0.0, set()
    for rank in step:
        for micro in rank:
            for i in micro or []:
                ex = examples[i]
                if float(ex.get("weight", 1.0)) == 0:
                    continue
                room = max(0, max_len - len(ex["prompt_token_ids"]))
                tokens += min(len(ex["token_ids"]), room)
                sequences += 1
                if ex.get("pair_id", -1) is not None and ex.get("pair_id", -1) >= 0:
                    pairs.add(ex["pair_id"])
    return {"norm_tokens": tokens, "norm_sequences": sequences, "norm_pairs": float(len(pairs))}


SUMMED = ("loss", "samples", "tokens")  # per-rank shares that add up; every other metric is averaged


def merge_metrics(per_rank: list[dict]) -> dict:
    """Combine the ``Learner.train`` results of all ranks.

    The loss is the sum of the ranks' shares (each rank's share of each step's loss), samples and
    tokens add up, throughput is over the slowest rank, and every other metric an objective returned
    is averaged. ``steps_log`` (one record per optimizer step) is merged the same way, step by step.
    """
    out = {key: (sum(m[key] for m in per_rank) if key in SUMMED else mean_finite([m[key] for m in per_rank]))
           for key in per_rank[0] if key != "steps_log"}
    for key in ("steps", "global_step", "lr", "grad_norm", "padded_samples"):
        if key in per_rank[0]:
            out[key] = per_rank[0][key]
    seconds = max(m["seconds"] for m in per_rank)
    out["seconds"] = seconds
    out["samples_per_s"] = out["samples"] / seconds if seconds > 0 else 0.0
    out["tokens_per_s"] = out["tokens"] / seconds if seconds > 0 else 0.0
    logs = [m.get("steps_log", []) for m in per_rank]
    out["steps_log"] = [
        {key: (sum(r[key] for r in recs) if key in SUMMED else (recs[0][key] if key in ("lr", "grad_norm", "global_step")
                                                                  else mean_finite([r[key] for r in recs])))
         for key in recs[0]}
        for recs in zip(*logs)]
    return out


def mean_finite(values: list) -> float:
    """The mean of the values that are numbers (None and NaN left out); NaN when none is."""
    values = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return sum(values) / len(values) if values else float("nan")
