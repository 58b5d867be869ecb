"""Seed 002's pair rule: within one problem, every two responses whose test pass rates differ enough.

For each problem and each pair (i, j) of its scored responses with ``|score_i - score_j| >= min_gap``
(seed 002: 0.1), the higher-scoring response is chosen and the lower one rejected. A gap of exactly
``min_gap`` counts: pass rates are fractions of assertions (0.3 - 0.2 is 0.09999999999999998 in
floating point), so gaps are compared after rounding to ``DIGITS`` decimals. Equal scores never form
a pair, whatever ``min_gap`` is. Responses whose verification failed (verdict ``FAILED``: the
infrastructure, not the program) have no score and join no pair.

The same rule serves offline DPO (``form_pairs`` on a scored file) and online DPO on the stream
(``group_pairs`` on one prompt's scored group, as soon as it is verified). Pure: no Ray, no torch.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from halo_ray.errors import DataError
from halo_ray.verifiers.verdicts import UNSCORED

DIGITS = 9
"""Gaps are rounded to this many decimals before the comparison with ``min_gap`` (float noise is ~1e-16)."""

SCORED_FIELDS = ("problem_id", "prompt", "completion", "pass_rate", "verdict")
"""One record of a scored file (``verdict`` may be null)."""

PAIR_FIELDS = ("problem_id", "prompt", "chosen", "rejected", "chosen_score", "rejected_score",
               "chosen_verdict", "rejected_verdict")
"""One record of ``dpo_preferences.jsonl``."""


def gap_counts(high: float, low: float, min_gap: float) -> bool:
    """Whether two scores are far enough apart to form a pair (ties never are).

    Args:
        high, low: the two scores (order does not matter).
        min_gap: the smallest gap that counts; a gap equal to it counts.
    Returns:
        True when ``|high - low| >= min_gap`` up to float noise and the scores are not equal.
    """
    gap = round(abs(high - low), DIGITS)
    return gap > 0 and gap >= round(min_gap, DIGITS)


def _check_min_gap(min_gap: float) -> None:
    if isinstance(min_gap, bool) or not isinstance(min_gap, (int, float)) or not math.isfinite(min_gap) or min_gap < 0:
        raise DataError(f"min_gap must be a finite number >= 0, got {min_gap!r} (seed 002: 0.1)")


def _score(value: Any, where: str, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise DataError(f"{where}: {key} must be a number between 0 and 1, got {value!r}")
    if not 0.0 <= value <= 1.0:
        raise DataError(f"{where}: {key} must lie between 0 and 1 (a test pass rate), got {value!r}")
    return float(value)


def check_scored(record: Mapping, where: str, score_key: str = "pass_rate") -> dict:
    """One scored record, checked: ``problem_id`` (str or int), ``prompt`` and ``completion`` (str), a score
    in [0, 1], ``verdict`` (str or missing/null). Raises ``DataError`` naming ``where`` and the field."""
    if not isinstance(record, Mapping):
        raise DataError(f"{where}: expected an object, got {type(record).__name__}")
    missing = [k for k in ("problem_id", "prompt", "completion", score_key) if k not in record]
    if missing:
        raise DataError(f"{where}: missing {', '.join(missing)} (a scored record has {', '.join(SCORED_FIELDS)})")
    pid = record["problem_id"]
    if isinstance(pid, bool) or not isinstance(pid, (str, int)):
        raise DataError(f"{where}: problem_id must be a string, got {pid!r}")
    for key in ("prompt", "completion"):
        if not isinstance(record[key], str):
            raise DataError(f"{where}: {key} must be a string, got {type(record[key]).__name__}")
    verdict = record.get("verdict")
    if verdict is not None and not isinstance(verdict, str):
        raise DataError(f"{where}: verdict must be a string or null, got {verdict!r}")
    return {"problem_id": str(pid), "prompt": record["prompt"], "completion": record["completion"],
            "score": _score(record[score_key], where, score_key), "verdict": verdict}


def read_scored(path: str | Path, score_key: str = "pass_rate") -> list[dict]:
    """Read and check a scored file (JSONL or Parquet, by extension); errors name ``FILE:LINE`` (``FILE: row N``).

    Returns the records as given (each checked with ``check_scored``), in file order.
    """
    from halo_ray.io import check_table_suffix, read_jsonl, read_records

    if check_table_suffix(path, "scored file") == ".jsonl":
        located = [(f"{path}:{line}", record) for line, record in read_jsonl(path)]
    else:
        located = [(f"{path}: row {i}", record) for i, record in enumerate(read_records(path), start=1)]
    prompts: dict[str, tuple[str, str]] = {}
    for where, record in located:
        rec = check_scored(record, where, score_key)
        first = prompts.setdefault(rec["problem_id"], (rec["prompt"], where))
        if first[0] != rec["prompt"]:
            raise DataError(f"{where}: problem {rec['problem_id']!r} has a different prompt than at {first[1]}; "
                            "one problem id, one prompt")
    return [record for _, record in located]


def _pairs_of(items: Sequence[tuple[Any, float, Any]], min_gap: float, max_pairs: int = 0) -> list[tuple[int, int]]:
    """(chosen, rejected) positions of the qualifying pairs among ``(key, score, verdict)`` items, i < j order.

    ``max_pairs`` > 0 keeps at most that many: the widest gaps first, pairs of responses not yet in a
    kept pair before the others (more distinct completions per pair), returned in i < j order.
    """
    pairs = []
    for i in range(len(items)):
        for j in range(i + 1, len(items)):
            si, sj = items[i][1], items[j][1]
            if gap_counts(si, sj, min_gap):
                pairs.append((i, j) if si > sj else (j, i))
    if not max_pairs or len(pairs) <= max_pairs:
        return pairs
    widest = sorted(pairs, key=lambda p: -round(items[p[0]][1] - items[p[1]][1], DIGITS))  # stable: ties keep order
    kept, used = [], set()
    for p in widest:
        if len(kept) < max_pairs and not used & set(p):
            kept.append(p)
            used.update(p)
    kept += [p for p in widest if p not in kept][: max_pairs - len(kept)]
    return sorted(kept, key=lambda p: (min(p), max(p)))


def _check_max_pairs(max_pairs: int) -> None:
    if isinstance(max_pairs, bool) or not isinstance(max_pairs, int) or max_pairs < 0:
        raise DataError(f"max_pairs must be an integer >= 0 (0 keeps every pair), got {max_pairs!r}")


def form_pairs(records: Iterable[Mapping], min_gap: float = 0.1, score_key: str = "pass_rate",
               max_pairs: int = 0) -> list[dict]:
    """Preference pairs of a scored file (seed 002's rule), problem by problem in order of first appearance.

    Args:
        records: scored records (``problem_id``, ``prompt``, ``completion``, ``pass_rate``, ``verdict``).
        min_gap: the smallest score gap that forms a pair (exactly ``min_gap`` counts).
        score_key: the field holding the score.
        max_pairs: at most this many pairs per problem (0: every pair; see ``_pairs_of``).
    Returns:
        One dict per pair with ``PAIR_FIELDS``: the prompt, the chosen (higher) and rejected completions,
        their scores and verdicts; within a problem, pairs (i, j) with i < j in record order.
    """
    _check_min_gap(min_gap)
    _check_max_pairs(max_pairs)
    problems: dict[str, list[dict]] = {}
    for number, record in enumerate(records, start=1):
        rec = check_scored(record, f"record {number}", score_key)
        if rec["verdict"] in UNSCORED:
            continue
        problems.setdefault(rec["problem_id"], []).append(rec)
    out = []
    for pid, recs in problems.items():
        items = [(r["completion"], r["score"], r["verdict"]) for r in recs]
        for c, r in _pairs_of(items, min_gap, max_pairs):
            out.append({"problem_id": pid, "prompt": recs[c]["prompt"], "chosen": recs[c]["completion"],
                        "rejected": recs[r]["completion"], "chosen_score": recs[c]["score"],
                        "rejected_score": recs[r]["score"], "chosen_verdict": recs[c]["verdict"],
                        "rejected_verdict": recs[r]["verdict"]})
    return out


def _rows(group: Any) -> list[dict]:
    return group.to_pylist() if hasattr(group, "to_pylist") else [dict(row) for row in group]


def group_pairs(group: Any, min_gap: float = 0.1, score: str = "pass_rate", max_pairs: int = 0) -> list[dict]:
    """Pairs within one prompt's scored group of the stream (online DPO), by the same rule as ``form_pairs``.

    Args:
        group: an Arrow table or list of rows of ONE prompt: ``prompt_id``, ``completion``, the score
            column, ``token_ids``, ``prompt_token_ids`` (and ``sample_index``, ``verdict`` when present).
        min_gap: the smallest score gap that forms a pair.
        score: the column to rank by: ``pass_rate`` (seed 002) or ``reward`` (the verifier's, under ``verifier.reward``).
        max_pairs: at most this many pairs (0: every pair; see ``_pairs_of``).
    Returns:
        One dict per pair: ``prompt_id``, ``chosen_index``/``rejected_index`` (sample indices),
        ``chosen_score``/``rejected_score``, ``chosen_verdict``/``rejected_verdict``, ``chosen``/``rejected``
        (completion texts), ``prompt_token_ids``, ``chosen_token_ids``, ``rejected_token_ids``.
    Raises:
        ValueError when the rows belong to several prompts (use ``stream_pairs``) or lack a column.
    """
    _check_min_gap(min_gap)
    _check_max_pairs(max_pairs)
    rows = [r for r in _rows(group) if r.get("verdict") not in UNSCORED]
    if not rows:
        return []
    ids = {r["prompt_id"] for r in rows}
    if len(ids) > 1:
        raise ValueError(f"group_pairs: one prompt's group expected, got {len(ids)} prompt ids; use stream_pairs")
    for key in ("completion", score, "token_ids", "prompt_token_ids"):
        if key not in rows[0]:
            raise ValueError(f"group_pairs: rows have no {key!r} column (have {sorted(rows[0])})")
    items = [(i, _score(r[score], f"prompt {r['prompt_id']!r} sample {r.get('sample_index', i)}", score),
              r.get("verdict")) for i, r in enumerate(rows)]
    out = []
    for c, j in _pairs_of(items, min_gap, max_pairs):
        chosen, rejected = rows[c], rows[j]
        out.append({"prompt_id": chosen["prompt_id"], "chosen_index": chosen.get("sample_index", c),
                    "rejected_index": rejected.get("sample_index", j), "chosen_score": items[c][1],
                    "rejected_score": items[j][1], "chosen_verdict": chosen.get("verdict"),
                    "rejected_verdict": rejected.get("verdict"), "chosen": chosen["completion"],
                    "rejected": rejected["completion"], "prompt_token_ids": list(chosen["prompt_token_ids"]),
                    "chosen_token_ids": list(chosen["token_ids"]), "rejected_token_ids": list(rejected["token_ids"])})
    return out


def stream_pairs(table: Any, min_gap: float = 0.1, score: str = "pass_rate", max_pairs: int = 0) -> list[dict]:
    """``group_pairs`` of every prompt in a scored batch (groups in order of first appearance)."""
    groups: dict[Any, list[dict]] = {}
    for row in _rows(table):
        groups.setdefault(row["prompt_id"], []).append(row)
    return [pair for rows in groups.values() for pair in group_pairs(rows, min_gap, score, max_pairs)]


def pair_examples(pairs: Iterable[Mapping], tokenizer=None, first_pair_id: int = 0) -> list[dict]:
    """Learner examples of pairs: per pair a chosen row then a rejected row, with ``pair_id`` and ``pair_role``.

    Pairs from the stream (``group_pairs``) carry their token ids; pairs from a preferences file
    (``form_pairs``) are tokenized here with ``objectives.tokenize_pair`` (prompt and completion
    apart, EOS appended), so ``tokenizer`` is needed for them.

    Args:
        pairs: pair records (``group_pairs`` or ``form_pairs`` output).
        tokenizer: a Hugging Face tokenizer, for pairs without token ids.
        first_pair_id: the ``pair_id`` of the first pair (ids count up).
    Returns:
        ``[{prompt_token_ids, token_ids, pair_id, pair_role}, ...]``: role 0 chosen, 1 rejected.
    """
    out = []
    for offset, pair in enumerate(pairs):
        pid = first_pair_id + offset
        if "chosen_token_ids" in pair:
            prompt_ids = list(pair["prompt_token_ids"])
            sides = (list(pair["chosen_token_ids"]), list(pair["rejected_token_ids"]))
        else:
            if tokenizer is None:
                raise ValueError("pair_examples: pairs without token ids need a tokenizer")
            from halo_ray.objectives import tokenize_pair

            chosen = tokenize_pair(tokenizer, pair["prompt"], pair["chosen"])
            rejected = tokenize_pair(tokenizer, pair["prompt"], pair["rejected"])
            prompt_ids, sides = chosen["prompt_token_ids"], (chosen["token_ids"], rejected["token_ids"])
        for role, ids in enumerate(sides):
            out.append({"prompt_token_ids": prompt_ids, "token_ids": ids, "pair_id": pid, "pair_role": role})
    return out
