"""Score model outputs on tasks and report seed 003 §27's metrics, overall and by slice (language).

``evaluate`` scores each output against its task's teacher trace and executes the parsed actions in
the sandbox; ``summarize`` turns the rows into the report: trace parse rate, action fidelity, state
faithfulness, think similarity and brevity penalty, execution success, tokens in ``<think>`` and
``<state_update>``, and per-component reward histograms. Malformed outputs count as 0 in the
component means and as failures in execution success (they are part of the model's behaviour).
Each row also names why it failed (``FAILURES``), so a report says which part of the action went wrong.
``report`` is ``halo-ray srl eval``'s scoring of sampled completions, one function from text to JSON.
"""

from __future__ import annotations

import dataclasses
from statistics import fmean
from typing import Callable, Sequence

import numpy as np

from halo_ray.verifiers.config import VerifierConfig
from halo_ray.srl.execute import SANDBOX, execute_many
from halo_ray.srl.reward import SRLRewardConfig, score
from halo_ray.srl.tasks import Task
from halo_ray.srl.trace import Action, RejectionCounter, parse_trace

HISTOGRAM_BINS = {"total": (-0.2, 1.0), "action": (0.0, 1.0), "state": (0.0, 1.0), "think": (-1.0, 1.0)}
BINS = 12
TASK_METRICS = ("trace_parse_rate", "action_fidelity", "state_faithfulness", "think_similarity", "reward_mean",
                "execution_success")  # a report's by_task entries (for paired tests across models)
# Why an output did not pass, the first that applies: it did not parse; its paths, pattern or replacement differ
# from the teacher's (in that order, the action's); other fields differ (language, constraints); or an action
# equal to the teacher's failed (a fault of execution, never of the model).
FAILURES = ("passed", "malformed", "paths", "pattern", "replacement", "other_field", "execution")


def _words(text: str) -> int:
    return len(text.split())


def _state_text(output: str) -> str:
    start, end = output.find("<state_update>"), output.find("</state_update>")
    return output[start + len("<state_update>"):end] if 0 <= start < end else ""


def failure(student: Action | None, teacher: Action, success: bool | None) -> str:
    """The ``FAILURES`` entry of one output (``student`` None: malformed); None when it was not executed."""
    if student is None:
        return "malformed"
    if success is None:
        return None
    if success:
        return "passed"
    for key in ("paths", "pattern", "replacement"):
        if getattr(student, key) != getattr(teacher, key):
            return key
    return "other_field" if student != teacher else "execution"


def evaluate(tasks: Sequence[Task], outputs: Sequence[str], config: SRLRewardConfig | None = None, *,
             verifier: VerifierConfig = SANDBOX, execute: bool = True, embedder=None,
             count_tokens: Callable[[str], int] = _words) -> list[dict]:
    """One row per ``(task, output)``: the reward breakdown, execution result and token counts.

    Args:
        tasks, outputs: parallel sequences (several outputs per task: repeat the task).
        config: reward settings.
        verifier: the sandbox settings for executing actions; ``execute=False`` skips execution
            (``success`` is then None).
        count_tokens: measures ``<think>`` and ``<state_update>`` (the model's tokenizer; words by default).
    Returns:
        Rows with ``task``, ``language``, ``split``, the breakdown keys, ``success``, ``env_report``,
        ``think_tokens``, ``state_tokens``, ``parsed_action`` (the action's fields, None when malformed)
        and ``failure`` (``FAILURES``; None when not executed).
    """
    if len(tasks) != len(outputs):
        raise ValueError(f"evaluate: {len(tasks)} tasks but {len(outputs)} outputs")
    rows, to_run = [], []
    for i, (task, text) in enumerate(zip(tasks, outputs)):
        parts = score(text, task.teacher_trace, config, embedder=embedder)
        row = {"task": task.id, "language": task.language, "split": task.split, **parts, "success": None,
               "env_report": None, "think_tokens": 0, "state_tokens": 0, "parsed_action": None,
               "failure": "malformed" if parts["malformed"] else None}
        if not parts["malformed"]:
            trace = parse_trace(text)
            row["think_tokens"] = count_tokens(trace.think)
            row["state_tokens"] = count_tokens(_state_text(text).strip())
            row["parsed_action"] = dataclasses.asdict(trace.action)
            to_run.append((i, task, trace.action))
        elif execute:
            row["success"] = False
        rows.append(row)
    if execute and to_run:
        for (i, task, action), run in zip(to_run, execute_many([(t, a) for _, t, a in to_run], verifier)):
            rows[i]["success"], rows[i]["env_report"] = run.success, run.env_report
            rows[i]["failure"] = failure(action, task.teacher_trace.action, run.success)
    return rows


def _histogram(values: list[float], lo: float, hi: float) -> dict:
    counts, edges = np.histogram(np.clip(values, lo, hi), bins=BINS, range=(lo, hi))
    return {"edges": [round(float(e), 6) for e in edges], "counts": [int(c) for c in counts]}


def slice_metrics(rows: list[dict]) -> dict:
    """The §27 metrics of some rows (``summarize``'s per-slice entry)."""
    parsed = [r for r in rows if not r["malformed"]]
    executed = [r for r in rows if r["success"] is not None]
    return {
        "samples": len(rows),
        "trace_parse_rate": len(parsed) / len(rows),
        "action_fidelity": fmean(r["action"] for r in rows),
        "state_faithfulness": fmean(r["state"] for r in rows),
        "think_similarity": fmean(r["think"] for r in rows),
        "brevity_penalty": fmean(r["brevity_penalty"] for r in rows),
        "reward_mean": fmean(r["total"] for r in rows),
        "execution_success": fmean(1.0 if r["success"] else 0.0 for r in executed) if executed else None,
        "think_tokens": fmean(r["think_tokens"] for r in parsed) if parsed else 0.0,
        "state_tokens": fmean(r["state_tokens"] for r in parsed) if parsed else 0.0,
        "histograms": {k: _histogram([r[k] for r in rows], lo, hi) for k, (lo, hi) in HISTOGRAM_BINS.items()},
        "failures": {k: n for k in FAILURES if (n := sum(1 for r in rows if r.get("failure") == k))},
    }


def summarize(rows: Sequence[dict], by: str = "language") -> dict:
    """The §27 metrics of ``rows`` (from ``evaluate``) overall and for each value of ``by``.

    Returns:
        ``{"overall": metrics, "by_<by>": {value: metrics}}``; metrics hold ``samples``,
        ``trace_parse_rate``, ``action_fidelity``, ``state_faithfulness``, ``think_similarity``,
        ``brevity_penalty``, ``reward_mean``, ``execution_success`` (None when nothing was executed),
        ``think_tokens``, ``state_tokens`` (means over parsed outputs), ``histograms`` and ``failures``
        (``FAILURES`` entry -> outputs, those that occur).
    """
    rows = list(rows)
    if not rows:
        raise ValueError("summarize: no rows")
    groups: dict[str, list[dict]] = {}
    for row in rows:
        groups.setdefault(str(row[by]), []).append(row)
    return {"overall": slice_metrics(rows), f"by_{by}": {k: slice_metrics(v) for k, v in sorted(groups.items())}}



def report(tasks: Sequence[Task], completions: Sequence[str], config: SRLRewardConfig | None = None, *,
           verifier: VerifierConfig = SANDBOX, restore: bool = True) -> dict:
    """``halo-ray srl eval``'s report of sampled completions: restore the stop string, parse, score, execute, summarize.

    Args:
        tasks, completions: parallel sequences, as ``evaluate``'s (the raw text the engine returned).
        config: reward settings; verifier: the sandbox that executes the actions.
        restore: put back the ``</state_update>`` a stop string removed (``verifier.restore_stop``).
    Returns:
        ``summarize``'s ``overall`` and ``by_language``; ``by_task`` (``TASK_METRICS`` per task);
        ``rejections`` (parse failure reason -> count); ``samples``: per completion its ``task``, ``text``,
        ``action``, ``action_fidelity``, ``success``, ``failure`` and the sandbox's ``verdict`` and ``detail``.
    """
    from halo_ray.verifiers.srl import restore_stop

    texts = [restore_stop(c) if restore else c for c in completions]
    counter = RejectionCounter()
    counter.parse_all(texts)
    rows = evaluate(tasks, texts, config, verifier=verifier)
    per_task = summarize(rows, by="task")["by_task"]
    samples = [{"task": r["task"], "text": text, "action": r["parsed_action"], "action_fidelity": r["action"],
                "success": r["success"], "failure": r["failure"], "verdict": (r["env_report"] or {}).get("verdict"),
                "detail": (r["env_report"] or {}).get("detail") or r["reason"]} for r, text in zip(rows, texts)]
    return {**summarize(rows), "by_task": {t: {k: m[k] for k in TASK_METRICS} for t, m in per_task.items()},
            "rejections": counter.rejections(), "samples": samples}
