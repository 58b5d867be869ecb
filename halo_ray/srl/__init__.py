"""SRL for ast-grep refactoring agents (seed 003): traces, trace-matching rewards, actions run in the sandbox.

Components only (no Ray): ``trace`` (format and strict parser), ``tokens`` (tags as special tokens),
``reward`` (``score``, ``score_records``, ``SRLRewardConfig``), ``embed`` (think similarity),
``actions`` (``apply_action`` with ast-grep), ``execute`` (tests in the verifier sandbox),
``quality`` (teacher-step filtering), ``tasks`` (the built-in refactoring tasks), ``prompts`` (system
role, few-shot anchors, teacher sampling settings) and ``evaluate`` (seed 003 §27 metrics by slice).
The job: ``train(config)`` (``halo-ray srl train``, ``halo_ray.driver.srl``) and ``evaluate_model(config)``
(``halo-ray srl eval``); the ``srl_trace`` verifier (``halo_ray.verifiers.srl``) scores on the stream.
"""

from halo_ray.srl.actions import apply_action
from halo_ray.srl.quality import filter_steps, trace_quality
from halo_ray.srl.reward import SRLRewardConfig, score, score_records
from halo_ray.srl.tasks import Task, builtin_tasks
from halo_ray.srl.tokens import add_trace_tokens
from halo_ray.srl.trace import (SCHEMA_VERSION, Action, RejectionCounter, StateUpdate, Trace, TraceError,
                                format_trace, parse_trace, round_trips)



# The job's entry points live in the driver (Ray); resolved on first use, as ``halo_ray.grpo`` is.
_DRIVER_NAMES = {"train": "srl", "evaluate_model": "evaluate_model"}


def __getattr__(name: str):
    """``train(config, resume=False, progress=...)``: SRL on the stream (``halo-ray srl train``,
    ``halo_ray.driver.srl.srl``); ``evaluate_model(config, output="")``: §27 metrics on held-out tasks."""
    if name in _DRIVER_NAMES:
        import importlib

        return getattr(importlib.import_module("halo_ray.driver.srl"), _DRIVER_NAMES[name])
    raise AttributeError(f"module 'halo_ray.srl' has no attribute {name!r}")

__all__ = ["SCHEMA_VERSION", "evaluate_model", "train", "Action", "RejectionCounter", "SRLRewardConfig", "StateUpdate", "Task", "Trace",
           "TraceError", "add_trace_tokens", "apply_action", "builtin_tasks", "filter_steps", "format_trace",
           "parse_trace", "round_trips", "score", "score_records", "trace_quality"]
