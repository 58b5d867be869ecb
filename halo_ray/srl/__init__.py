"""SRL for ast-grep refactoring agents (seed 003): traces, trace-matching rewards, actions run in the sandbox.

Components only (no Ray): ``trace`` (format and strict parser), ``tokens`` (tags as special tokens),
``reward`` (``score``, ``score_records``, ``SRLRewardConfig``), ``embed`` (think similarity),
``actions`` (``apply_action`` with ast-grep), ``execute`` (tests in the verifier sandbox),
``quality`` (teacher-step filtering), ``tasks`` (the built-in refactoring tasks), ``prompts`` (system
role, few-shot anchors, teacher sampling settings) and ``evaluate`` (seed 003 §27 metrics by slice).
"""

from halo_ray.srl.actions import apply_action
from halo_ray.srl.quality import filter_steps, trace_quality
from halo_ray.srl.reward import SRLRewardConfig, score, score_records
from halo_ray.srl.tasks import Task, builtin_tasks
from halo_ray.srl.tokens import add_trace_tokens
from halo_ray.srl.trace import (SCHEMA_VERSION, Action, RejectionCounter, StateUpdate, Trace, TraceError,
                                format_trace, parse_trace, round_trips)

__all__ = ["SCHEMA_VERSION", "Action", "RejectionCounter", "SRLRewardConfig", "StateUpdate", "Task", "Trace",
           "TraceError", "add_trace_tokens", "apply_action", "builtin_tasks", "filter_steps", "format_trace",
           "parse_trace", "round_trips", "score", "score_records", "trace_quality"]
