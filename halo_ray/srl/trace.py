"""SRL traces (seed 003 §§2, 20): one ``<think>``, ``<action>``, ``<state_update>`` step, parsed strictly.

A trace is the three tagged blocks in that order and nothing else around them but whitespace.
``<action>`` holds a JSON object with the ast-grep rewrite (``pattern``, ``replacement``,
``language``, ``paths`` globs, optional ``constraints`` on metavariables); ``<state_update>`` a
JSON object with four lists of strings. Anything else is rejected with a reason: the paper rejects
noisy traces instead of cleaning them, and the reasons are counted to spot schema drift (§20).
"""

from __future__ import annotations

import collections
import json
import re
from dataclasses import dataclass, field
from typing import Iterable

SCHEMA_VERSION = "srl-trace-v1"  # bump when the tags or the action/state schema change (seed 003 §33)
TAGS = ("think", "action", "state_update")
TAG_TOKENS = tuple(t for name in TAGS for t in (f"<{name}>", f"</{name}>"))
ACTION_KEYS = ("pattern", "replacement", "language", "paths")  # required
ACTION_OPTIONAL = ("constraints",)
STATE_KEYS = ("constraints", "decisions", "open_issues", "next_focus")
LANGUAGES = ("python", "javascript", "java")  # the languages the built-in tasks and apply_action support

_TAG = re.compile(r"</?(think|action|state_update)>")


class TraceError(ValueError):
    """A trace that does not follow the schema; ``reason`` is a short stable key for counting."""

    def __init__(self, reason: str, message: str):
        self.reason = reason
        super().__init__(f"{reason}: {message}")


@dataclass(frozen=True)
class Action:
    """One ast-grep rewrite: replace every match of ``pattern`` by ``replacement`` in files matching ``paths``."""

    pattern: str
    replacement: str
    language: str
    paths: tuple[str, ...]
    constraints: dict | None = None

    def to_json(self) -> dict:
        out = {"pattern": self.pattern, "replacement": self.replacement, "language": self.language,
               "paths": list(self.paths)}
        if self.constraints is not None:
            out["constraints"] = self.constraints
        return out


@dataclass(frozen=True)
class StateUpdate:
    """The planner state after the step: four lists of short strings."""

    constraints: tuple[str, ...] = ()
    decisions: tuple[str, ...] = ()
    open_issues: tuple[str, ...] = ()
    next_focus: tuple[str, ...] = ()

    def to_json(self) -> dict:
        return {key: list(getattr(self, key)) for key in STATE_KEYS}


@dataclass(frozen=True)
class Trace:
    """A parsed step: the rationale, the action and the state update."""

    think: str
    action: Action
    state: StateUpdate = field(default_factory=StateUpdate)


def _json_object(body: str, tag: str) -> dict:
    try:
        value = json.loads(body)
    except json.JSONDecodeError as exc:
        raise TraceError(f"{tag}_json", f"<{tag}> is not valid JSON: {exc.msg} at char {exc.pos}") from None
    if not isinstance(value, dict):
        raise TraceError(f"{tag}_json", f"<{tag}> must hold a JSON object, got {type(value).__name__}")
    return value


def _action(body: str) -> Action:
    obj = _json_object(body, "action")
    missing = [k for k in ACTION_KEYS if k not in obj]
    if missing:
        raise TraceError("action_missing_key", f"<action> lacks {', '.join(missing)}")
    unknown = sorted(set(obj) - set(ACTION_KEYS) - set(ACTION_OPTIONAL))
    if unknown:
        raise TraceError("action_unknown_key", f"<action> has unknown key(s) {', '.join(unknown)} "
                         f"(allowed: {', '.join(ACTION_KEYS + ACTION_OPTIONAL)})")
    for key in ("pattern", "replacement", "language"):
        if not isinstance(obj[key], str):
            raise TraceError("action_type", f"<action> {key!r} must be a string, got {type(obj[key]).__name__}")
    if not obj["pattern"].strip():
        raise TraceError("action_type", "<action> 'pattern' is empty")
    if obj["language"] not in LANGUAGES:
        raise TraceError("action_language", f"<action> language {obj['language']!r} is not one of {', '.join(LANGUAGES)}")
    paths = obj["paths"]
    if not isinstance(paths, list) or not paths or not all(isinstance(p, str) and p for p in paths):
        raise TraceError("action_type", "<action> 'paths' must be a non-empty list of glob strings")
    constraints = obj.get("constraints")
    if "constraints" in obj and not isinstance(constraints, dict):
        raise TraceError("action_type", f"<action> 'constraints' must be an object, got {type(constraints).__name__}")
    return Action(obj["pattern"], obj["replacement"], obj["language"], tuple(paths), constraints)


def _state(body: str) -> StateUpdate:
    obj = _json_object(body, "state_update")
    missing = [k for k in STATE_KEYS if k not in obj]
    if missing:
        raise TraceError("state_missing_key", f"<state_update> lacks {', '.join(missing)}")
    unknown = sorted(set(obj) - set(STATE_KEYS))
    if unknown:
        raise TraceError("state_unknown_key", f"<state_update> has unknown key(s) {', '.join(unknown)}")
    for key in STATE_KEYS:
        value = obj[key]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise TraceError("state_type", f"<state_update> {key!r} must be a list of strings")
    return StateUpdate(*(tuple(obj[k]) for k in STATE_KEYS))


def parse_trace(text: str) -> Trace:
    """Parse one step, strictly.

    Args:
        text: the model's output (or a stored teacher trace).
    Returns:
        The ``Trace``.
    Raises:
        TraceError with ``reason`` one of: ``not_text``, ``missing_tag``, ``tag_order``, ``nested_tag``,
        ``extra_text``, ``empty_think``, ``action_json``, ``action_missing_key``, ``action_unknown_key``,
        ``action_type``, ``action_language``, ``state_json``, ``state_missing_key``, ``state_unknown_key``,
        ``state_type``.
    """
    if not isinstance(text, str):
        raise TraceError("not_text", f"a trace must be a string, got {type(text).__name__}")
    tags = [(m.group(0), m.start(), m.end()) for m in _TAG.finditer(text)]
    expected = list(TAG_TOKENS)
    names = [t for t, _, _ in tags]
    for token in expected:
        if token not in names:
            raise TraceError("missing_tag", f"{token} is missing")
    if len(names) != len(expected):
        repeated = sorted({t for t in names if names.count(t) > 1})
        raise TraceError("nested_tag", f"tag(s) repeated: {', '.join(repeated)}")
    if names != expected:
        raise TraceError("tag_order", f"tags appear as {' '.join(names)}; expected {' '.join(expected)}")
    bodies, gaps, pos = [], [], 0
    for i in range(0, len(tags), 2):
        (_, open_start, open_end), (_, close_start, close_end) = tags[i], tags[i + 1]
        gaps.append(text[pos:open_start])
        bodies.append(text[open_end:close_start])
        pos = close_end
    gaps.append(text[pos:])
    if any(gap.strip() for gap in gaps):
        stray = next(gap.strip() for gap in gaps if gap.strip())
        raise TraceError("extra_text", f"text outside the tags: {stray[:60]!r}")
    think = bodies[0].strip()
    if not think:
        raise TraceError("empty_think", "<think> is empty")
    return Trace(think, _action(bodies[1]), _state(bodies[2]))


def format_trace(trace: Trace) -> str:
    """The canonical text of ``trace``: tags on their own lines, JSON with sorted keys (one line each)."""
    action = json.dumps(trace.action.to_json(), sort_keys=True, ensure_ascii=False)
    state = json.dumps(trace.state.to_json(), sort_keys=True, ensure_ascii=False)
    return f"<think>\n{trace.think}\n</think>\n<action>\n{action}\n</action>\n<state_update>\n{state}\n</state_update>"


def round_trips(text: str) -> bool:
    """Whether ``text`` parses and re-serialises to itself (seed 003 §20: deterministic traces).

    Raises TraceError when it does not parse.
    """
    return format_trace(parse_trace(text)) == text


def canonical(text: str) -> str:
    """The canonical form of a trace that parses (so that stored traces round-trip); TraceError otherwise."""
    return format_trace(parse_trace(text))


class RejectionCounter:
    """Counts parse outcomes by reason (``ok`` for a trace that parsed), for schema-drift monitoring."""

    def __init__(self):
        self.counts: collections.Counter[str] = collections.Counter()

    def parse(self, text: str) -> Trace | None:
        """Parse ``text``; count the outcome; the trace, or None when it was rejected."""
        try:
            trace = parse_trace(text)
        except TraceError as exc:
            self.counts[exc.reason] += 1
            return None
        self.counts["ok"] += 1
        return trace

    def parse_all(self, texts: Iterable[str]) -> list[Trace | None]:
        return [self.parse(t) for t in texts]

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def parse_rate(self) -> float:
        """Fraction of texts that parsed (seed 003 §27's trace parse rate); 0.0 when nothing was seen."""
        return self.counts["ok"] / self.total if self.total else 0.0

    def rejections(self) -> dict[str, int]:
        """The rejection reasons and their counts, most frequent first."""
        return {k: v for k, v in self.counts.most_common() if k != "ok"}
