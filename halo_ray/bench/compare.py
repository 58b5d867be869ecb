"""Paired comparison of benchmark results: per-problem t-test and Wilcoxon signed-rank test per k.

Seed 002 compares baseline and fine-tuned with ``scipy.stats.ttest_rel`` over per-problem pass@k.
Each later stage is compared with the first (the baseline) on the problems both scored.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from statistics import fmean, stdev
from typing import Mapping, Sequence

from halo_ray.errors import DataError

RESULT_KEYS = ("model", "problems", "samples", "pass_at_k", "verdicts", "compile_rate", "per_problem")


def load_result(path: str | Path) -> dict:
    """Read a results.json written by ``halo-ray benchmark run``; DataError names a missing key."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: results file not found")
    try:
        data = json.loads(p.read_text())
    except json.JSONDecodeError as exc:
        raise DataError(f"{p}:{exc.lineno}: invalid JSON: {exc.msg}") from None
    missing = [key for key in RESULT_KEYS if not isinstance(data, dict) or key not in data]
    if missing:
        raise DataError(f"{p}: not a benchmark results file (missing {', '.join(missing)}); "
                        "write one with `halo-ray benchmark run`")
    return data


def paired_test(baseline: Sequence[float], candidate: Sequence[float], confidence: float = 0.95) -> dict:
    """Paired t-test and Wilcoxon signed-rank test of ``candidate - baseline``, problem by problem.

    Args:
        baseline, candidate: per-problem scores in the same problem order.
        confidence: level of the confidence interval of the mean difference.
    Returns:
        ``n``, ``mean_baseline``, ``mean_candidate``, ``mean_diff``, ``ci_low``, ``ci_high``, ``t``,
        ``p_t``, ``wilcoxon_w``, ``p_wilcoxon`` and ``note`` (why a statistic is degenerate, else "").
        Identical scores give p = 1.0 and a note; a constant non-zero difference has no t (None).
    """
    from scipy import stats

    if len(baseline) != len(candidate):
        raise ValueError(f"paired_test: {len(baseline)} baseline scores but {len(candidate)} candidate scores")
    # rounding drops float noise (0.3 - 0.2 != 0.1), so equal scores give exact zeros and ties
    diffs = [round(b - a, 12) for a, b in zip(baseline, candidate)]
    n = len(diffs)
    out = {"n": n, "mean_baseline": fmean(baseline) if n else None, "mean_candidate": fmean(candidate) if n else None,
           "mean_diff": fmean(diffs) if n else None, "ci_low": None, "ci_high": None, "t": None, "p_t": None,
           "wilcoxon_w": None, "p_wilcoxon": None, "note": ""}
    if n < 2:
        out["note"] = f"{n} paired problem(s): at least 2 are needed for a test"
        return out
    if all(d == 0 for d in diffs):
        out.update(ci_low=0.0, ci_high=0.0, t=0.0, p_t=1.0, wilcoxon_w=0.0, p_wilcoxon=1.0,
                   note="all per-problem differences are zero: no evidence of a change (p = 1 by convention)")
        return out
    sd = stdev(diffs)
    if sd > 0:
        half = stats.t.ppf(0.5 + confidence / 2, n - 1) * sd / math.sqrt(n)
        out.update(ci_low=out["mean_diff"] - half, ci_high=out["mean_diff"] + half)
        t = stats.ttest_rel(candidate, baseline)
        out.update(t=float(t.statistic), p_t=float(t.pvalue))
    else:
        out.update(ci_low=out["mean_diff"], ci_high=out["mean_diff"],
                   note="every problem changed by the same amount: zero variance, the t statistic is undefined")
    w = stats.wilcoxon(diffs)
    out.update(wilcoxon_w=float(w.statistic), p_wilcoxon=float(w.pvalue))
    return out


def mean_ci(values: Sequence[float], confidence: float = 0.95) -> list[float] | None:
    """Student-t confidence interval ``[low, high]`` of the mean of per-problem scores (None below 2 values)."""
    from scipy import stats

    if len(values) < 2:
        return None
    mean, sd = fmean(values), stdev(values)
    half = stats.t.ppf(0.5 + confidence / 2, len(values) - 1) * sd / math.sqrt(len(values))
    return [max(0.0, mean - half), min(1.0, mean + half)]


def compare_results(results: Sequence[Mapping], names: Sequence[str]) -> dict:
    """Compare each later stage with the first, per k, on the problems both stages scored.

    Args:
        results: loaded results.json dicts, baseline first.
        names: one stage name each.
    Returns:
        ``stages`` (name, model, subset, problems, pass@k with its 95% CI over problems, verdicts, compile
        rate, reward per stage) and ``tests``: one entry
        per (stage, k) with the ``paired_test`` fields plus ``baseline``, ``stage``, ``k``,
        ``only_baseline`` and ``only_stage`` (problem counts left out of the pairing).
    """
    if len(results) != len(names):
        raise DataError(f"compare: {len(results)} results files but {len(names)} names")
    if len(set(names)) != len(names):
        raise DataError(f"compare: stage names repeat: {list(names)}; pass distinct --names")
    stages = [{"name": name, "model": r["model"], "subset": r.get("subset", "?"), "problems": r["problems"],
               "samples": r["samples"], "pass_at_k": dict(r["pass_at_k"]),
               "pass_at_k_ci": {k: mean_ci([row["pass_at_k"][k] for row in r["per_problem"]]) for k in r["pass_at_k"]},
               "verdicts": dict(r["verdicts"]), "compile_rate": r["compile_rate"], "reward_mean": r.get("reward_mean")}
              for name, r in zip(names, results)]
    base = {row["id"]: row for row in results[0]["per_problem"]}
    tests = []
    for name, result in zip(names[1:], results[1:]):
        rows = {row["id"]: row for row in result["per_problem"]}
        common = [pid for pid in base if pid in rows]
        ks = [k for k in results[0]["pass_at_k"] if k in result["pass_at_k"]]
        for k in ks:
            test = paired_test([base[pid]["pass_at_k"][k] for pid in common],
                               [rows[pid]["pass_at_k"][k] for pid in common])
            tests.append({"baseline": names[0], "stage": name, "k": k, **test,
                          "only_baseline": len(base) - len(common), "only_stage": len(rows) - len(common)})
    return {"stages": stages, "tests": tests}


def reward_curves(run_dirs: Sequence[str | Path]) -> dict[str, list[tuple[int, float]]]:
    """Mean ``reward_mean`` per step from each ``RUN/metrics.jsonl`` (records with ``step`` (or ``cycle``) and ``reward_mean``)."""
    from halo_ray.io import read_jsonl

    curves = {}
    for run in run_dirs:
        path = Path(run) / "metrics.jsonl"
        per_cycle: dict[int, list[float]] = {}
        for _, record in read_jsonl(path, allow_torn_tail=True):
            at = record.get("cycle", record.get("step"))
            if at is not None and record.get("reward_mean") is not None:
                per_cycle.setdefault(int(at), []).append(float(record["reward_mean"]))
        if not per_cycle:
            raise DataError(f"{path}: no record has both 'step' and 'reward_mean'")
        curves[Path(run).name] = [(cycle, fmean(values)) for cycle, values in sorted(per_cycle.items())]
    return curves
