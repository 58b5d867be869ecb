"""What every verifier shares: the registry, verdicts, the graduated reward, code extraction.

A verifier turns one input record into a sandbox request (``plan``); the sandbox worker runs it
and judges it; ``score`` turns the worker's judgement into the output record.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from halo_ray.errors import DataError
from halo_ray.registry import Registry

if TYPE_CHECKING:
    from halo_ray.sections import VerifierConfig

VERIFIERS: Registry = Registry("verifier")

# Seed 002's error taxonomy; a compile failure is a SYNTAX_ERROR, warnings are a separate flag.
VERDICTS = ("SUCCESS", "WRONG_OUTPUT", "RUNTIME_ERROR", "TIMEOUT", "SYNTAX_ERROR")

# Seed 000's graduated rewards.
REWARD_SYNTAX_ERROR = 0.0
REWARD_WARNINGS = 0.3
REWARD_CLEAN = 0.5
REWARD_WRONG_OUTPUT = 0.7
REWARD_CORRECT = 1.0

LANGUAGES = {"python": "python", "py": "python", "python3": "python", "c": "c", "cpp": "cpp", "c++": "cpp",
             "cxx": "cpp", "rust": "rust", "rs": "rust", "go": "go", "golang": "go"}
_FENCE = re.compile(r"```[ \t]*([\w+#-]*)[^\n]*\n(.*?)(?:```|\Z)", re.S)


def language_of(record: dict) -> str:
    """The record's language, normalised (python when absent); DataError for an unknown one."""
    raw = str(record.get("language") or "python").strip().lower()
    if raw not in LANGUAGES:
        raise DataError(f"record {record.get('id')!r}: unknown language {raw!r} "
                        f"(known: {', '.join(sorted(set(LANGUAGES.values())))})")
    return LANGUAGES[raw]


def extract_code(text: str, language: str = "python") -> str:
    """The program inside markdown fences, if ``text`` has any; otherwise ``text`` itself.

    Picks the first fenced block tagged with ``language`` (or an alias), else the first block; an
    unterminated last fence (a completion cut at max tokens) runs to the end of the text.
    """
    if "```" not in text:
        return text
    blocks = [(tag.lower(), body) for tag, body in _FENCE.findall(text)]
    if not blocks:
        return text
    for tag, body in blocks:
        if LANGUAGES.get(tag) == language:
            return body
    return blocks[0][1]


def limits(cfg: VerifierConfig) -> dict:
    """The per-run limits a sandbox request carries (also part of the cache key)."""
    return {"timeout": float(cfg.timeout_s), "memory_mb": int(cfg.memory_mb), "max_processes": int(cfg.max_processes),
            "max_output": int(cfg.max_output_bytes), "file_mb": int(cfg.scratch_mb)}


def record_code(record: dict, cfg: VerifierConfig, language: str) -> str:
    code = record.get("code")
    if not isinstance(code, str):
        raise DataError(f"record {record.get('id')!r}: 'code' must be a string, got {type(code).__name__}")
    return extract_code(code, language) if cfg.extract_code else code


def record_cases(record: dict) -> list[dict]:
    """The record's ``test_cases`` as ``[{"input": str, "output": str}]``; DataError when malformed."""
    cases = record.get("test_cases") or []
    if not isinstance(cases, list) or not all(isinstance(c, dict) and "output" in c for c in cases):
        raise DataError(f"record {record.get('id')!r}: 'test_cases' must be a list of {{\"input\", \"output\"}} objects")
    return [{"input": str(c.get("input", "")), "output": str(c["output"])} for c in cases]


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")
DETAIL_CHARS = 300


def clean_text(value: object, limit: int = DETAIL_CHARS) -> str:
    """``value`` as text that any output file can hold: no lone surrogates, no control characters."""
    text = value if isinstance(value, str) else str(value)
    text = text[: limit * 4].encode("utf-8", "replace").decode("utf-8", "replace")
    return _CONTROL.sub(" ", text).strip()[:limit]


def _count(value: object, cap: int = 1_000_000) -> int:
    return value if type(value) is int and 0 <= value <= cap else 0


def sanitize(raw: object) -> dict:
    """A judge's raw result reduced to known fields of exact types; anything else is a RUNTIME_ERROR."""
    if not isinstance(raw, dict) or raw.get("verdict") not in VERDICTS:
        return {"verdict": "RUNTIME_ERROR", "passed": 0, "total": 0, "warnings": False,
                "detail": "the sandbox returned a malformed result", "duration_s": 0.0}
    total = _count(raw.get("total"))
    duration = raw.get("duration_s")
    return {"verdict": raw["verdict"], "total": total, "passed": min(_count(raw.get("passed")), total),
            "warnings": raw.get("warnings") is True, "detail": clean_text(raw.get("detail") or ""),
            "duration_s": float(duration) if type(duration) in (int, float) and 0 <= duration < 1e6 else 0.0}


def score(raw: dict) -> dict:
    """The output fields from a worker judgement: verdict, graduated reward, pass_rate, detail.

    Reward (seed 000): syntax error 0.0; a program that compiles but crashes or times out gets its
    compile tier (0.3 with warnings, 0.5 clean); wrong output 0.7; correct 1.0. With nothing to
    check (no tests, no cases) a clean run is worth its compile tier only.
    """
    raw = sanitize(raw)
    verdict, warnings = raw["verdict"], raw["warnings"]
    total, passed = int(raw.get("total") or 0), int(raw.get("passed") or 0)
    compiled = REWARD_SYNTAX_ERROR if verdict == "SYNTAX_ERROR" else (REWARD_WARNINGS if warnings else REWARD_CLEAN)
    if verdict == "SUCCESS":
        reward = REWARD_CORRECT if total else compiled
        pass_rate = 1.0
    else:
        reward = REWARD_WRONG_OUTPUT if verdict == "WRONG_OUTPUT" else compiled
        pass_rate = passed / total if total else 0.0
    return {"verdict": verdict, "reward": reward, "pass_rate": pass_rate,
            "duration_s": round(float(raw.get("duration_s", 0.0)), 6), "detail": raw["detail"],
            "reward_components": {"compile": compiled, "pass_rate": pass_rate}, "warnings": warnings}
