"""What every verifier shares: the registry, code extraction, sanitizing a judgement and scoring it.

A verifier turns one input record into a sandbox request (``plan``); the sandbox worker runs it
and judges it; ``score`` turns the worker's judgement, sanitized on the host, into the output
record under the request's reward scheme (``halo_ray.verifiers.reward``). The verdicts are listed
once, in ``halo_ray.verifiers.verdicts``.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from halo_ray.errors import DataError
from halo_ray.registry import Registry
from halo_ray.verifiers.reward import final_verdict, scheme_reward
from halo_ray.verifiers.verdicts import JUDGED, RUNTIME_ERROR, VERDICTS

if TYPE_CHECKING:
    from halo_ray.verifiers.config import VerifierConfig

VERIFIERS: Registry = Registry("verifier")

LANGUAGES = {"python": "python", "py": "python", "python3": "python", "c": "c", "cpp": "cpp", "c++": "cpp",
             "cxx": "cpp", "rust": "rust", "rs": "rust", "go": "go", "golang": "go"}
# An opening fence: three backticks, an optional language tag, the rest of the info line (no backticks,
# as CommonMark requires); the block runs to the closing fence or, cut at max tokens, to the end.
_FENCE = re.compile(r"```[ \t]*([\w+#-]*)[^\n`]*\n(.*?)(?:```|\Z)", re.S)


def auto_rewards() -> dict[str, list[str]]:
    """Scheme -> the registered verifiers whose ``verifier.reward: auto`` it is, in registration order.

    Verifiers that dispatch by language (``auto``, ``stdio``) are left out: they take the scheme of
    the verifier each record goes to; so are in-process scorers (``srl_trace``), whose reward is their own.
    """
    out: dict[str, list[str]] = {}
    for name in VERIFIERS:
        impl = VERIFIERS.get(name)()
        if not hasattr(impl, "delegate") and not getattr(impl, "in_process", False):
            out.setdefault(impl.default_reward({}), []).append(name)
    return out


def auto_rewards_text() -> str:
    """``auto_rewards`` in words, for help texts."""
    parts = [f"{scheme} for {', '.join(names)}" for scheme, names in sorted(auto_rewards().items())]
    return "; ".join(parts) + "; auto and stdio by each record's language"


def language_of(record: dict) -> str:
    """The record's language, normalised (python when absent); DataError for an unknown one."""
    raw = str(record.get("language") or "python").strip().lower()
    if raw not in LANGUAGES:
        raise DataError(f"record {record.get('id')!r}: unknown language {raw!r} "
                        f"(known: {', '.join(sorted(set(LANGUAGES.values())))})")
    return LANGUAGES[raw]


def code_blocks(text: str) -> list[tuple[str, str]]:
    """The fenced blocks of a Markdown text as ``(tag, body)``, in order; ``tag`` is lower-case, maybe empty.

    An unterminated last fence (a completion cut at max tokens) runs to the end of the text. This is
    the project's one fence reader: verifiers, the benchmark and the data sources all use it.
    """
    if "```" not in text:
        return []
    return [(tag.lower(), body) for tag, body in _FENCE.findall(text)]


def extract_code(text: str, language: str = "python") -> str:
    """The program inside markdown fences, if ``text`` has any; otherwise ``text`` itself.

    Picks the first fenced block tagged with ``language`` (or an alias), else the first block.
    """
    blocks = code_blocks(text)
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
    if not isinstance(raw, dict) or raw.get("verdict") not in JUDGED:
        return {"verdict": RUNTIME_ERROR, "passed": 0, "total": 0, "warnings": False,
                "detail": "the sandbox returned a malformed result", "duration_s": 0.0}
    total = _count(raw.get("total"))
    duration = raw.get("duration_s")
    return {"verdict": raw["verdict"], "total": total, "passed": min(_count(raw.get("passed")), total),
            "warnings": raw.get("warnings") is True, "detail": clean_text(raw.get("detail") or ""),
            "duration_s": float(duration) if type(duration) in (int, float) and 0 <= duration < 1e6 else 0.0}


def score(raw: dict, scheme: str) -> dict:
    """The output fields from a worker judgement, on the host: verdict, reward under ``scheme`` and its parts.

    The judge's verdict and counts are sanitized first; a SUCCESS with nothing checked becomes
    UNTESTED. ``pass_rate`` is tests passed / tests (0 with none); ``reward_components`` sum to ``reward``.
    """
    raw = sanitize(raw)
    total, passed, warnings = raw["total"], raw["passed"], raw["warnings"]
    verdict = final_verdict(raw["verdict"], total)
    reward, parts = scheme_reward(scheme, verdict, passed, total, warnings)
    return {"verdict": verdict, "reward": reward, "pass_rate": passed / total if total else 0.0,
            "tests_passed": passed, "tests_total": total, "duration_s": round(float(raw["duration_s"]), 6),
            "detail": raw["detail"], "reward_components": parts, "warnings": warnings}
