"""SRL trace-matching rewards (seed 003 §§3, 6, 18): action fidelity, state faithfulness, think similarity.

    R = clip(w_a · R_action + w_s · R_state + w_t · R_think, -0.2, 1.0);  malformed output: R = -0.2

- R_action = f · F1 + (1 - f) · Lev, f = ``action_f1_weight`` (0.5). F1 is over the action's field
  items: ``(pattern, p)``, ``(replacement, r)``, ``(language, l)``, one ``(paths, glob)`` per glob and one
  ``(constraints, name=rule)`` per metavariable constraint; an item counts when student and teacher
  hold it with the same value. Lev is the mean normalised Levenshtein similarity
  1 - d(a, b) / max(|a|, |b|) over the string fields ``pattern`` and ``replacement``. In [0, 1].
- R_state = Σ_k w_k · J(student_k, teacher_k) / Σ_k w_k, J the Jaccard index of the two lists as
  sets of normalised strings (two empty lists: 1), w = 1.5 for ``constraints`` and ``decisions``, 1 else.
- R_think = cos(e(student_think), e(teacher_think)) - 0.2 · max(0, len_s / (1.5 · len_t) - 1),
  lengths in words (teacher length at least 1), e the configured embedder (``halo_ray.srl.embed``).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, fields
from typing import Iterable

from halo_ray.config import opt
from halo_ray.errors import DataError
from halo_ray.srl.embed import LEXICAL, make_embedder
from halo_ray.srl.trace import STATE_KEYS, Action, StateUpdate, Trace, TraceError, parse_trace
from halo_ray.verifiers.verdicts import SUCCESS, SYNTAX_ERROR, WRONG_OUTPUT

COMPONENTS = ("total", "action", "state", "think", "brevity_penalty", "malformed")


@dataclass(frozen=True)
class SRLRewardConfig:
    action_weight: float = opt(0.5, "weight of action fidelity in the total (seed 003 §6)")
    state_weight: float = opt(0.3, "weight of state faithfulness in the total")
    think_weight: float = opt(0.2, "weight of think similarity in the total")
    action_f1_weight: float = opt(0.5, "share of field-level F1 in the action reward; the rest is Levenshtein similarity of pattern and replacement")
    state_key_weight: float = opt(1.5, "weight of the constraints and decisions lists in the state reward (the other two weigh 1)")
    brevity_coef: float = opt(0.2, "think penalty per unit of excess length; 0 turns the brevity penalty off (seed 003 §12 ablation)")
    brevity_slack: float = opt(1.5, "student think may be this many times the teacher's length before the penalty starts")
    malformed_reward: float = opt(-0.2, "reward of output that does not parse as a trace (seed 003 §12 ablation: -0.1)")
    clip_min: float = opt(-0.2, "lower clip of the total reward")
    clip_max: float = opt(1.0, "upper clip of the total reward")
    embedder: str = opt(LEXICAL, "think similarity: 'lexical' (TF-IDF cosine), 'minilm' (all-MiniLM-L6-v2, needs the srl extra) or a local sentence-embedding model directory")

    def validate(self) -> list[str]:
        errs = [f"{f.name} must be >= 0, got {getattr(self, f.name)}"
                for f in fields(self) if f.name.endswith(("_weight", "_coef")) and getattr(self, f.name) < 0]
        if not 0.0 <= self.action_f1_weight <= 1.0:
            errs.append(f"action_f1_weight must be in [0, 1], got {self.action_f1_weight}")
        if self.brevity_slack <= 0:
            errs.append(f"brevity_slack must be positive, got {self.brevity_slack}")
        if self.clip_min > self.clip_max:
            errs.append(f"clip_min ({self.clip_min}) must not exceed clip_max ({self.clip_max})")
        if not self.clip_min <= self.malformed_reward <= self.clip_max:
            errs.append(f"malformed_reward ({self.malformed_reward}) must lie in [clip_min, clip_max] "
                        f"= [{self.clip_min}, {self.clip_max}]")
        return errs


def levenshtein(a: str, b: str) -> int:
    """Edit distance (insertions, deletions, substitutions of one character each)."""
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def string_similarity(a: str, b: str) -> float:
    """1 - levenshtein(a, b) / max(len): 1.0 for equal strings (two empty ones included), 0.0 for nothing in common."""
    longest = max(len(a), len(b))
    return 1.0 if longest == 0 else 1.0 - levenshtein(a, b) / longest


def _canon(value) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def action_items(action: Action) -> set[tuple[str, str]]:
    """The field items the action F1 counts (empty strings are absent fields)."""
    items = {(key, getattr(action, key)) for key in ("pattern", "replacement", "language") if getattr(action, key)}
    items |= {("paths", glob) for glob in action.paths}
    items |= {("constraints", f"{name}={_canon(rule)}") for name, rule in (action.constraints or {}).items()}
    return items


def action_f1(student: Action, teacher: Action) -> float:
    """F1 of the student's field items against the teacher's (1.0 when both have none)."""
    s, t = action_items(student), action_items(teacher)
    if not s and not t:
        return 1.0
    hit = len(s & t)
    return 0.0 if hit == 0 else 2 * hit / (len(s) + len(t))


def action_reward(student: Action, teacher: Action, cfg: SRLRewardConfig) -> float:
    """R_action in [0, 1] (module docstring)."""
    lev = (string_similarity(student.pattern, teacher.pattern) + string_similarity(student.replacement, teacher.replacement)) / 2
    return cfg.action_f1_weight * action_f1(student, teacher) + (1 - cfg.action_f1_weight) * lev


def _norm(items: Iterable[str]) -> set[str]:
    return {" ".join(s.lower().split()) for s in items if s.strip()}


def jaccard(a: Iterable[str], b: Iterable[str]) -> float:
    """|A ∩ B| / |A ∪ B| of normalised strings (lower case, collapsed whitespace); 1.0 when both are empty."""
    sa, sb = _norm(a), _norm(b)
    return 1.0 if not sa and not sb else len(sa & sb) / len(sa | sb)


def state_reward(student: StateUpdate, teacher: StateUpdate, cfg: SRLRewardConfig) -> float:
    """R_state in [0, 1]: weighted mean of the per-field Jaccard indices."""
    weights = {key: cfg.state_key_weight if key in ("constraints", "decisions") else 1.0 for key in STATE_KEYS}
    total = sum(weights.values())
    if total == 0:
        return 1.0
    return sum(w * jaccard(getattr(student, k), getattr(teacher, k)) for k, w in weights.items()) / total


def brevity_penalty(student_len: int, teacher_len: int, slack: float = 1.5) -> float:
    """max(0, len_s / (slack · len_t) - 1), the teacher's length taken as at least 1 (seed 003 §18)."""
    return max(0.0, student_len / (slack * max(1, teacher_len)) - 1.0)


def think_reward(student: str, teacher: str, cfg: SRLRewardConfig, embedder=None) -> tuple[float, float]:
    """(R_think, brevity penalty): cosine of the two rationales minus ``brevity_coef`` x the penalty."""
    penalty = brevity_penalty(len(student.split()), len(teacher.split()), cfg.brevity_slack)
    cosine = (embedder or make_embedder(cfg.embedder)).similarity(student, teacher)
    return cosine - cfg.brevity_coef * penalty, penalty


def score_traces(student: Trace, teacher: Trace, cfg: SRLRewardConfig, embedder=None) -> dict:
    """The breakdown for two parsed traces (``malformed`` False)."""
    action = action_reward(student.action, teacher.action, cfg)
    state = state_reward(student.state, teacher.state, cfg)
    think, penalty = think_reward(student.think, teacher.think, cfg, embedder)
    raw = cfg.action_weight * action + cfg.state_weight * state + cfg.think_weight * think
    return {"total": min(cfg.clip_max, max(cfg.clip_min, raw)), "action": action, "state": state, "think": think,
            "brevity_penalty": penalty, "malformed": False}


def score(student_text: str, teacher_trace: Trace | str, config: SRLRewardConfig | None = None, *,
          embedder=None) -> dict:
    """Score a student's output against a teacher trace.

    Args:
        student_text: the raw model output.
        teacher_trace: the teacher's ``Trace`` (or its text; a teacher text that does not parse is a DataError).
        config: the reward settings (defaults: seed 003).
        embedder: optional embedder object overriding ``config.embedder`` (for example a
            ``LexicalEmbedder`` fitted on the teacher corpus).
    Returns:
        ``{"total", "action", "state", "think", "brevity_penalty", "malformed", "reason"}``; malformed
        output has ``total = malformed_reward``, the other components 0.0 and the parser's reason.
    """
    parts, _ = _breakdown(student_text, teacher_trace, config or SRLRewardConfig(), embedder)
    return parts


def _breakdown(student_text: str, teacher_trace: Trace | str, cfg: SRLRewardConfig, embedder) -> tuple[dict, Trace | None]:
    if isinstance(teacher_trace, str):
        try:
            teacher_trace = parse_trace(teacher_trace)
        except TraceError as exc:
            raise DataError(f"teacher trace does not parse ({exc}); regenerate or drop it") from None
    try:
        student = parse_trace(student_text)
    except TraceError as exc:
        return {"total": cfg.malformed_reward, "action": 0.0, "state": 0.0, "think": 0.0, "brevity_penalty": 0.0,
                "malformed": True, "reason": exc.reason}, None
    return {**score_traces(student, teacher_trace, cfg, embedder), "reason": ""}, student


def score_records(records: list[dict], config: SRLRewardConfig | None = None, *, embedder=None) -> list[dict]:
    """Trace matching as a verifier: one result dict per record, in the verifiers' shape.

    Runs in process (no sandbox: nothing is executed). Rewards may be negative.

    Args:
        records: dicts with ``id``, the student output in ``completion`` (or ``code``), and the
            teacher's trace text in ``teacher_trace``.
        config: the reward settings.
    Returns:
        Per record: ``id``, ``verdict`` (SYNTAX_ERROR for malformed output, SUCCESS when every action
        field matches the teacher's, WRONG_OUTPUT otherwise), ``reward`` (the total), ``pass_rate``
        (the action's field F1), ``reward_components`` (the breakdown), ``duration_s``, ``detail``, ``warnings``.
    Raises:
        DataError naming the record when a field is missing or the teacher trace does not parse.
    """
    cfg = config or SRLRewardConfig()
    results = []
    for record in records:
        start = time.perf_counter()
        rid = record.get("id")
        student = record.get("completion", record.get("code"))
        teacher = record.get("teacher_trace")
        if not isinstance(student, str) or not isinstance(teacher, str):
            raise DataError(f"record {rid!r}: trace matching needs 'completion' (or 'code') and 'teacher_trace' strings")
        try:
            teacher_trace = parse_trace(teacher)
        except TraceError as exc:
            raise DataError(f"record {rid!r}: teacher_trace does not parse ({exc})") from None
        parts, parsed = _breakdown(student, teacher_trace, cfg, embedder)
        if parsed is None:
            verdict, f1 = SYNTAX_ERROR, 0.0
        else:
            f1 = action_f1(parsed.action, teacher_trace.action)
            verdict = SUCCESS if f1 == 1.0 else WRONG_OUTPUT
        results.append({"id": rid, "verdict": verdict, "reward": parts["total"], "pass_rate": f1,
                        "reward_components": {k: float(parts[k]) for k in COMPONENTS},
                        "duration_s": round(time.perf_counter() - start, 6), "detail": parts["reason"],
                        "warnings": False})
    return results


class TraceMatchVerifier:
    """SRL trace matching: the student's trace scored against the record's teacher_trace, in process (rewards may be negative).

    The shape a verifier-registry entry needs once the pool learns in-process scorers: nothing to
    bind or plan for the sandbox; ``score_records`` gives the verifiers' result dicts.
    """

    in_process = True

    def __init__(self, config: SRLRewardConfig | None = None):
        self.config = config or SRLRewardConfig()

    def available(self) -> str | None:
        return None

    def binds(self) -> list[str]:
        return []

    def score_records(self, records: list[dict]) -> list[dict]:
        return score_records(records, self.config)
