"""RAFT's pure parts (seeds 000, 001): scoring rollouts, keeping the best.

RAFT (Dong et al., "RAFT: Reward rAnked FineTuning", TMLR 2023) is iterated rejection sampling:
sample n completions per prompt, verify them, keep those with reward >= ``reward_threshold``, of those
the top ``keep_top_percent`` by reward, and fine-tune on what was kept. Every generated sample is
accounted for: generated = kept + filtered + stale + failed.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence

import pyarrow as pa

from halo_ray.bench.score import verify_record
from halo_ray.errors import SandboxError
from halo_ray.samples import SCORED_SCHEMA
from halo_ray.sections import RaftConfig
from halo_ray.verifiers.verdicts import FAILED, UNSCORED

log = logging.getLogger(__name__)


def score_rollouts(table: pa.Table, problems: Mapping[str, Mapping], verify) -> pa.Table:
    """Verify every sample of a rollout batch against its problem's tests.

    Args:
        table: a ``RolloutBatch``.
        problems: problem dicts by id (the ids are the batch's ``prompt_id``).
        verify: ``callable(records) -> results`` (``halo_ray.verifiers`` result dicts, in order).
    Returns:
        A ``ScoredBatch``: the batch plus verdict, reward, reward components, pass rate, test counts,
        warnings flag and time. A sample the sandbox could not run (infrastructure) gets verdict
        ``FAILED``, reward 0 and no reward components (no judgement; every selection sets it apart).
    """
    rows = table.to_pylist()
    records = [verify_record(problems[r["prompt_id"]], r["completion"], f"{r['prompt_id']}#{r['sample_index']}")
               for r in rows]
    try:
        results = verify(records) if records else []
    except SandboxError as exc:  # infrastructure, never the model's failure: counted as failed
        log.error("verification failed for %d samples: %s", len(records), exc)
        results = [dict(verdict=FAILED, reward=0.0, reward_components={}, pass_rate=0.0) for _ in records]
    for row, res in zip(rows, results):
        row.update(verdict=res["verdict"], reward=float(res["reward"]), pass_rate=float(res["pass_rate"]),
                   reward_components={k: float(v) for k, v in (res.get("reward_components") or {}).items()},
                   tests_passed=int(res.get("tests_passed") or 0), tests_total=int(res.get("tests_total") or 0),
                   warnings=bool(res.get("warnings")), verify_s=float(res.get("duration_s", 0.0)))
    return pa.Table.from_pylist(rows, schema=SCORED_SCHEMA)


def select(rows: list[dict], cfg: RaftConfig) -> tuple[list[dict], dict]:
    """Keep the samples RAFT trains on (the stream has already dropped stale samples).

    Steps: drop infrastructure failures; keep
    rewards >= ``reward_threshold``; of those keep the top ``keep_top_percent`` by reward (ties at
    the cutoff are kept); drop duplicate completions of a prompt. When fewer than ``min_kept`` pass,
    log it and keep the best ``min_kept`` samples with reward > 0 instead of training on nothing.

    Returns:
        ``(kept, counts)`` with counts ``generated``, ``kept``, ``filtered``, ``stale``, ``failed``,
        ``duplicates`` (part of filtered) and ``fallback`` (1 when the fallback was used).
    """
    counts = dict(generated=len(rows), kept=0, filtered=0, stale=0, failed=0, duplicates=0, fallback=0)
    fresh = []
    for r in rows:
        if r["verdict"] in UNSCORED:
            counts["failed"] += 1
        else:
            fresh.append(r)
    passing = sorted((r for r in fresh if r["reward"] >= cfg.reward_threshold), key=lambda r: -r["reward"])
    if passing and cfg.keep_top_percent < 1:
        cutoff = passing[max(0, math.ceil(cfg.keep_top_percent * len(passing)) - 1)]["reward"]
        passing = [r for r in passing if r["reward"] >= cutoff]
    if len(passing) < cfg.min_kept:
        best = sorted((r for r in fresh if r["reward"] > 0), key=lambda r: -r["reward"])[:cfg.min_kept]
        if len(best) > len(passing):
            log.warning("only %d of %d samples reached reward %.2f; keeping the best %d instead",
                        len(passing), len(rows), cfg.reward_threshold, len(best))
            passing, counts["fallback"] = best, 1
    kept, seen = [], set()
    for r in passing:
        key = (r["prompt_id"], r["completion"])
        if cfg.dedupe and key in seen:
            counts["duplicates"] += 1
            continue
        seen.add(key)
        kept.append(r)
    counts["kept"] = len(kept)
    counts["filtered"] = counts["generated"] - counts["kept"] - counts["stale"] - counts["failed"]
    return kept, counts


def verdict_histogram(rows: list[dict]) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in rows:
        out[r["verdict"]] = out.get(r["verdict"], 0) + 1
    return out
