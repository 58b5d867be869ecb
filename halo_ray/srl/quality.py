"""Teacher-step filtering (seed 003 §§5, 11, 23): parse, execution gate, then a trace-quality threshold.

A step is kept only when its text parses, its action executed successfully in the sandbox, and

    trace_quality = (state completeness + think brevity + think substance) / 3  >=  0.6

- state completeness: the fraction of the four ``<state_update>`` lists that are non-empty;
- think brevity: min(1, max_think_tokens / n), n the ``<think>`` length (512 tokens by default, §5);
- think substance: min(1, n / min_think_tokens): a bare "ok" explains nothing.

Pure functions: the execution results are inputs (``halo_ray.srl.execute`` produces them).
"""

from __future__ import annotations

from collections import Counter
from typing import Callable, Iterable

from halo_ray.srl.trace import STATE_KEYS, Trace, TraceError, format_trace, parse_trace

MIN_QUALITY = 0.6
MAX_THINK_TOKENS = 512
MIN_THINK_TOKENS = 16


def words(text: str) -> int:
    return len(text.split())


def trace_quality(trace: Trace, *, max_think_tokens: int = MAX_THINK_TOKENS, min_think_tokens: int = MIN_THINK_TOKENS,
                  count_tokens: Callable[[str], int] = words) -> float:
    """The quality of a parsed trace in [0, 1] (module docstring); ``count_tokens`` measures ``<think>``."""
    n = count_tokens(trace.think)
    completeness = sum(1 for key in STATE_KEYS if getattr(trace.state, key)) / len(STATE_KEYS)
    brevity = min(1.0, max_think_tokens / n) if n else 0.0
    substance = min(1.0, n / min_think_tokens)
    return (completeness + brevity + substance) / 3


def filter_steps(steps: Iterable[dict], *, min_quality: float = MIN_QUALITY, max_think_tokens: int = MAX_THINK_TOKENS,
                 min_think_tokens: int = MIN_THINK_TOKENS, count_tokens: Callable[[str], int] = words
                 ) -> tuple[list[dict], Counter]:
    """Keep the teacher steps worth learning from.

    Args:
        steps: dicts with ``text`` (the teacher's output) and ``success`` (whether its action executed and
            the task's tests passed); other keys are carried along.
        min_quality: the trace-quality threshold (seed 003 §5: 0.6).
    Returns:
        ``(kept, dropped)``: kept steps gain ``trace`` (the canonical text) and ``trace_quality``;
        ``dropped`` counts reasons: ``parse:<reason>``, ``execution``, ``quality``.
    """
    kept, dropped = [], Counter()
    for step in steps:
        try:
            trace = parse_trace(step["text"])
        except TraceError as exc:
            dropped[f"parse:{exc.reason}"] += 1
            continue
        if not step.get("success"):
            dropped["execution"] += 1
            continue
        quality = trace_quality(trace, max_think_tokens=max_think_tokens, min_think_tokens=min_think_tokens,
                                count_tokens=count_tokens)
        if quality < min_quality:
            dropped["quality"] += 1
            continue
        kept.append({**step, "trace": format_trace(trace), "trace_quality": quality})
    return kept, dropped
