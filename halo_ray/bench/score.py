"""Benchmark scoring: the program to verify from problem + completion, and results.json from verdicts.

Pure functions, no Ray, no model: ``run.py`` feeds them generated samples and verifier results.
"""

from __future__ import annotations

import re
from statistics import fmean
from typing import Iterable, Mapping, Sequence

from halo_ray.bench.passk import PassAtKError, pass_at_k
from halo_ray.errors import DataError
from halo_ray.verifiers.base import LANGUAGES, extract_code
from halo_ray.verifiers.verdicts import SUCCESS, SYNTAX_ERROR, VERDICTS


def _definition(code: str, entry_point: str, language: str) -> re.Match | None:
    """Where ``code`` defines function ``entry_point`` (Python ``def``; brace languages ``name(...) {``)."""
    name = re.escape(entry_point)
    if language == "python":
        return re.search(rf"^[ \t]*(?:async[ \t]+)?def[ \t]+{name}[ \t]*\(", code, re.M)
    return re.search(rf"\b{name}\s*\([^;{{}}]*\)[^;{{}}]*\{{", code)


def build_program(problem: Mapping, completion: str) -> str:
    """The program to verify, HumanEval style.

    The completion is first reduced to its fenced code block when it has one (the block tagged with
    the problem's language, else the first: ``halo_ray.verifiers.extract_code``). If the prompt defines
    the entry point and the completion does not, the completion continues the prompt (prompt +
    completion). If the completion defines the entry point itself, it replaces the prompt's
    definition but keeps what the prompt put before it (imports, helper functions). Otherwise (no
    entry point, or a prompt in prose, as in MBPP) the completion is the whole program.

    Args:
        problem: a problem record (``prompt``, optional ``entry_point`` and ``language``).
        completion: the model's raw completion.
    Returns:
        The source code handed to the verifier.
    """
    language = problem.get("language") or "python"
    body = extract_code(completion, LANGUAGES.get(str(language).lower(), str(language)))
    entry = problem.get("entry_point") or ""
    prompt = problem.get("prompt") or ""
    if not entry:
        return body
    in_prompt = _definition(prompt, entry, language)
    if in_prompt is None:
        return body
    if _definition(body, entry, language) is None:
        return prompt + body
    line_start = prompt.rfind("\n", 0, in_prompt.start()) + 1
    return prompt[:line_start] + body


def verify_record(problem: Mapping, completion: str, record_id: str) -> dict:
    """The record ``verify_batch`` takes for one sample: id, language, code, tests or test_cases, entry_point
    (and, for an SRL problem, its ``verifier``, the raw ``completion``, ``teacher_trace`` and ``srl_task``)."""
    record = {"id": record_id, "language": problem.get("language") or "python",
              "code": build_program(problem, completion), "entry_point": problem.get("entry_point")}
    for key in ("tests", "test_cases"):
        if problem.get(key) is not None:
            record[key] = problem[key]
    metadata = problem.get("metadata") or {}
    if metadata.get("verifier"):  # a problem that names its verifier (SRL problems: srl_trace) keeps it
        record["verifier"] = metadata["verifier"]
    if metadata.get("teacher_trace") is not None:  # SRL trace matching scores the raw completion
        record.update(completion=completion, teacher_trace=metadata["teacher_trace"],
                      srl_task=metadata.get("srl_task"))
    return record


def problem_category(problem: Mapping) -> str | None:
    """A problem's group for ``by_category``: ``metadata.category``, else its ``source``, else None."""
    metadata = problem.get("metadata") or {}
    return metadata.get("category") or problem.get("source") or None


def _summary(rows: Sequence[dict], results: Iterable[Mapping], ks: Sequence[int]) -> dict:
    """Pass@k (mean over problems), verdict counts, compile rate and mean reward of some problems."""
    verdicts = dict.fromkeys(VERDICTS, 0)
    rewards = []
    for result in results:
        verdicts[result["verdict"]] = verdicts.get(result["verdict"], 0) + 1
        if result.get("reward") is not None:
            rewards.append(float(result["reward"]))
    samples = sum(verdicts.values())
    return {
        "problems": len(rows),
        "samples": samples,
        "pass_at_k": {str(k): fmean(row["pass_at_k"][str(k)] for row in rows) for k in ks},
        "verdicts": verdicts,
        "compile_rate": (samples - verdicts[SYNTAX_ERROR]) / samples,
        "reward_mean": fmean(rewards) if rewards else None,
    }


def score_results(problems: Sequence[Mapping], results_by_problem: Mapping[str, Sequence[Mapping]],
                  ks: Sequence[int], *, model: str, timing: Mapping[str, float | None],
                  settings: Mapping | None = None) -> dict:
    """Turn per-sample verifier results, grouped by problem, into the results.json structure.

    A sample is correct only when its verdict is SUCCESS (compiling is not passing; UNTESTED, a
    program with nothing to check, is not either). ``verdicts`` lists every verdict of the taxonomy.

    Args:
        problems: problem records (``id``, optional ``metadata.category`` / ``source``), in report order.
        results_by_problem: problem id -> that problem's verifier results (``verdict``, ``reward``).
        ks: the k values of pass@k; each needs k <= n for every problem.
        model: what was evaluated (a model directory or a samples file).
        timing: ``generation_s`` (None when nothing was generated), ``verification_s``, ``total_s``.
        settings: sampling and verifier settings to record alongside (optional).
    Returns:
        ``model``, ``problems``, ``samples``, ``ks``, ``pass_at_k`` {str(k): mean}, ``verdicts``,
        ``compile_rate``, ``reward_mean``, ``timing`` (+ ``per_problem_s``), ``by_category``,
        ``per_problem`` [{id, n, c, pass_at_k, verdicts, reward_mean, category}], ``settings``.
    Raises:
        DataError when a problem has no results, fewer than k samples, or results name unknown problems.
    """
    if not problems:
        raise DataError("benchmark: no problems to score")
    known = {p["id"] for p in problems}
    unknown = sorted(set(results_by_problem) - known)
    if unknown:
        raise DataError(f"benchmark: results for {len(unknown)} problem id(s) not in the problems file, "
                        f"e.g. {unknown[:3]}; score with the problems file the samples came from")
    missing = [p["id"] for p in problems if not results_by_problem.get(p["id"])]
    if missing:
        raise DataError(f"benchmark: {len(missing)} problem(s) have no samples, e.g. {missing[:3]}; "
                        "every problem needs at least max(k) samples")
    rows, groups = [], {}
    for problem in problems:
        results = results_by_problem[problem["id"]]
        n = len(results)
        c = sum(1 for r in results if r["verdict"] == SUCCESS)
        try:
            by_k = {str(k): pass_at_k(n, c, k) for k in ks}
        except PassAtKError as exc:
            raise DataError(f"benchmark: problem {problem['id']!r}: {exc}") from None
        category = problem_category(problem)
        row = {"id": problem["id"], "n": n, "c": c, "pass_at_k": by_k, "category": category}
        row.update({key: value for key, value in _summary([row], results, ks).items()
                    if key in ("verdicts", "reward_mean")})
        rows.append(row)
        groups.setdefault(category, []).append(row)
    if list(groups) == [None]:
        groups = {}  # no problem names a category: nothing to break down
    elif None in groups:
        groups["(none)"] = groups.pop(None)

    def results_of(subset):
        return (r for row in subset for r in results_by_problem[row["id"]])

    overall = _summary(rows, results_of(rows), ks)
    total = timing.get("total_s")
    return {
        "model": model,
        "problems": overall["problems"],
        "samples": overall["samples"],
        "ks": list(ks),
        "pass_at_k": overall["pass_at_k"],
        "verdicts": overall["verdicts"],
        "compile_rate": overall["compile_rate"],
        "reward_mean": overall["reward_mean"],
        "timing": {**timing, "per_problem_s": None if total is None else total / len(rows)},
        "by_category": {name: _summary(subset, results_of(subset), ks) for name, subset in sorted(groups.items())},
        "per_problem": rows,
        "settings": dict(settings or {}),
    }
