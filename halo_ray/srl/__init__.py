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



def train(config, resume: bool = False, progress=None) -> dict:
    """SRL on the stream (``halo-ray srl train``): ``halo_ray.driver.srl.srl``; Ray starts only here."""
    from halo_ray.driver.srl import log, srl

    return srl(config, resume=resume, progress=progress or log.info)


def evaluate_model(config, output: str = "", progress=None) -> dict:
    """Seed 003 §27's metrics of ``config.model`` on held-out tasks (``halo-ray srl eval``)."""
    from halo_ray.driver.srl import evaluate_model as run, log

    return run(config, output, progress=progress or log.info)


__all__ = ["SCHEMA_VERSION", "evaluate_model", "train", "Action", "RejectionCounter", "SRLRewardConfig", "StateUpdate", "Task", "Trace",
           "TraceError", "add_trace_tokens", "apply_action", "builtin_tasks", "filter_steps", "format_trace",
           "parse_trace", "round_trips", "score", "score_records", "trace_quality"]
