"""Group handling for GRPO-style algorithms: reward shaping, overlong completions, dynamic sampling.

Pure functions on columns (plain lists), and ``prepare_groups`` which applies them to a scored Arrow
batch (``halo_ray.samples``), appending columns rather than rebuilding rows. The order is fixed:
shape the verifier's reward, add the overlong penalty, drop groups whose rewards are all equal,
compute group advantages, and zero the weight of masked overlong samples (they still count in their
group's mean and std, as DAPO's overlong filtering masks only their loss).
"""

from __future__ import annotations

from typing import Sequence

import pyarrow as pa
import pyarrow.compute as pc

from halo_ray.errors import DataError
from halo_ray.objectives.grpo import GRPOConfig, group_advantages

ZERO_VARIANCE_ATOL = 1e-6
"""A group whose rewards span no more than this is treated as all-equal (rewards are floats)."""


def shape_rewards(rewards: Sequence[float], verdicts: Sequence[str], pass_rates: Sequence[float], how: str) -> list[float]:
    """The reward the advantages use.

    Args:
        rewards: the verifier's graduated reward (seed 000: 0, 0.3, 0.5, 0.7, 1).
        verdicts: the verifier's verdict of each sample (``SUCCESS`` passes).
        pass_rates: fraction of the sample's tests that passed.
        how: ``graduated`` (the reward as is), ``pass_fail`` (1.0 on SUCCESS, else 0.0) or ``pass_rate``.
    Returns:
        One float per sample.
    """
    if how == "graduated":
        return [float(r) for r in rewards]
    if how == "pass_fail":
        return [1.0 if v == "SUCCESS" else 0.0 for v in verdicts]
    if how == "pass_rate":
        return [float(p) for p in pass_rates]
    raise ValueError(f"unknown reward shaping {how!r} (known: graduated, pass_fail, pass_rate)")


def overlong_penalties(finish_reasons: Sequence[str], lengths: Sequence[int], max_new_tokens: int,
                       buffer: int, penalty: float) -> list[float]:
    """DAPO's soft overlong punishment (Yu et al. 2025, eq. 13), as an amount to subtract from the reward.

    With ``L_max = max_new_tokens`` and ``L_cache = buffer``: 0 up to ``L_max - L_cache`` tokens, then
    rising linearly to ``penalty`` at ``L_max``; a completion cut off (``finish_reason == "length"``)
    always takes the full ``penalty``.
    """
    start = max_new_tokens - buffer
    out = []
    for reason, n in zip(finish_reasons, lengths):
        if reason == "length":
            out.append(float(penalty))
        elif buffer > 0 and n > start:
            out.append(float(penalty) * min(1.0, (n - start) / buffer))
        else:
            out.append(0.0)
    return out


def zero_variance_filter(group_keys: Sequence, rewards: Sequence[float],
                         atol: float = ZERO_VARIANCE_ATOL) -> tuple[list[bool], int]:
    """Which samples belong to a group whose rewards differ (DAPO's dynamic sampling keeps only those).

    Returns:
        ``(keep, dropped_groups)``: a per-sample keep flag and the number of groups dropped. A group of
        one sample has no variance and is dropped.
    """
    lo: dict = {}
    hi: dict = {}
    for key, r in zip(group_keys, rewards):
        lo[key] = min(lo.get(key, r), r)
        hi[key] = max(hi.get(key, r), r)
    flat = {key for key in lo if hi[key] - lo[key] <= atol}
    return [key not in flat for key in group_keys], len(flat)


def _set_column(table: pa.Table, name: str, values, type_: pa.DataType) -> pa.Table:
    column = pa.array(values, type=type_)
    if name in table.column_names:
        return table.set_column(table.column_names.index(name), name, column)
    return table.append_column(name, column)


def prepare_groups(table: pa.Table, cfg: GRPOConfig, max_new_tokens: int) -> tuple[pa.Table, dict[str, int]]:
    """Shape rewards, handle overlong samples, filter flat groups and add advantages to a scored batch.

    Args:
        table: a ``ScoredBatch`` (``prompt_id`` is the group; ``reward``, ``verdict``, ``pass_rate``,
            ``finish_reason``, ``token_ids`` are read). Samples whose verification failed should be
            counted and removed before (their reward is not a judgement).
        cfg: the GRPO section (``reward``, ``overlong*``, ``filter_zero_variance``, ``scale_std``, ``std_eps``).
        max_new_tokens: the rollout's completion limit (DAPO's L_max).
    Returns:
        ``(kept, counts)``. ``kept`` has the rows of the kept groups plus columns ``train_reward``
        (float64, the shaped and penalised reward), ``advantage`` (float32), ``group`` (int64, dense
        index of the prompt in order of first appearance) and ``weight`` (float32, 0 for masked overlong
        samples, else 1). ``counts``: ``groups``, ``filtered_groups``, ``filtered_samples`` (rows
        dropped as zero-variance), ``overlong`` (rows cut at the limit), ``overlong_masked``.
    """
    needed = ("prompt_id", "reward", "verdict", "pass_rate", "finish_reason", "token_ids")
    missing = [c for c in needed if c not in table.column_names]
    if missing:
        raise DataError(f"prepare_groups: the scored batch lacks columns {', '.join(missing)} (has: {', '.join(table.column_names)})")
    keys = table.column("prompt_id").to_pylist()
    reasons = table.column("finish_reason").to_pylist()
    lengths = pc.list_value_length(table.column("token_ids")).to_pylist()
    rewards = shape_rewards(table.column("reward").to_pylist(), table.column("verdict").to_pylist(),
                            table.column("pass_rate").to_pylist(), cfg.reward)
    if cfg.overlong == "penalty":
        pen = overlong_penalties(reasons, lengths, max_new_tokens, cfg.overlong_buffer, cfg.overlong_penalty)
        rewards = [r - p for r, p in zip(rewards, pen)]
    n_groups = len(set(keys))
    if cfg.filter_zero_variance:
        keep, dropped = zero_variance_filter(keys, rewards)
    else:
        keep, dropped = [True] * len(keys), 0
    idx = [i for i, k in enumerate(keep) if k]
    kept = table.take(pa.array(idx, type=pa.int64()))
    keys = [keys[i] for i in idx]
    rewards = [rewards[i] for i in idx]
    overlong = [reasons[i] == "length" for i in idx]
    dense: dict = {}
    group = [dense.setdefault(k, len(dense)) for k in keys]
    adv = group_advantages(rewards, group, scale_std=cfg.scale_std, eps=cfg.std_eps).tolist() if idx else []
    weight = [0.0 if (cfg.overlong == "mask" and o) else 1.0 for o in overlong]
    kept = _set_column(kept, "train_reward", rewards, pa.float64())
    kept = _set_column(kept, "advantage", adv, pa.float32())
    kept = _set_column(kept, "group", group, pa.int64())
    kept = _set_column(kept, "weight", weight, pa.float32())
    counts = {"groups": n_groups, "filtered_groups": dropped, "filtered_samples": len(table) - len(idx),
              "overlong": sum(r == "length" for r in reasons),
              "overlong_masked": sum(1 for w in weight if w == 0.0)}
    return kept, counts
