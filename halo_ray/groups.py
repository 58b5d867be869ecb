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
from halo_ray.verifiers.reward import SCHEMES, scheme_reward

ZERO_VARIANCE_ATOL = 1e-6
"""A group whose rewards span no more than this is treated as all-equal (rewards are floats)."""


def shape_rewards(how: str, rewards: Sequence[float], verdicts: Sequence[str] = (), passed: Sequence[int] = (),
                  total: Sequence[int] = (), warnings: Sequence[bool] = ()) -> list[float]:
    """The reward the advantages use (``objective.grpo.reward``).

    Args:
        how: ``verifier`` (each sample's ``rewards`` as the verifier gave them, under ``verifier.reward``)
            or a scheme of ``halo_ray.verifiers.reward`` (``graduated``, ``pass_rate``, ``pass_fail``),
            recomputed by the same ``scheme_reward`` the verifiers use from the other columns.
        rewards: the verifier's reward of each sample.
        verdicts, passed, total, warnings: each sample's verdict, tests passed, tests and compiler
            warnings flag (read only for a scheme).
    Returns:
        One float per sample.
    """
    if how == "verifier":
        return [float(r) for r in rewards]
    if how not in SCHEMES:
        raise ValueError(f"unknown reward shaping {how!r} (known: verifier, {', '.join(SCHEMES)})")
    return [scheme_reward(how, v, int(p), int(t), bool(w))[0] for v, p, t, w in zip(verdicts, passed, total, warnings)]


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
        table: a ``ScoredBatch`` (``prompt_id`` is the group; ``reward``, ``finish_reason``,
            ``token_ids`` are read, and ``verdict``, ``tests_passed``, ``tests_total``, ``warnings``
            when ``cfg.reward`` names a scheme). Samples whose verification failed should be
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
    scheme = ("verdict", "tests_passed", "tests_total", "warnings") if cfg.reward != "verifier" else ()
    needed = ("prompt_id", "reward", "finish_reason", "token_ids", *scheme)
    missing = [c for c in needed if c not in table.column_names]
    if missing:
        raise DataError(f"prepare_groups: the scored batch lacks columns {', '.join(missing)} (has: {', '.join(table.column_names)})")
    keys = table.column("prompt_id").to_pylist()
    reasons = table.column("finish_reason").to_pylist()
    lengths = pc.list_value_length(table.column("token_ids")).to_pylist()
    rewards = shape_rewards(cfg.reward, table.column("reward").to_pylist(),
                            *(table.column(c).to_pylist() for c in scheme))
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
