"""``srl_trace``: an SRL student's trace scored against the problem's teacher trace, in process.

Trace matching executes nothing, so it needs no sandbox: the pool (``Verifier.verify``) hands records
of an ``in_process`` verifier to its ``score_records`` instead of planning sandbox requests. The
reward is ``halo_ray.srl.reward``'s (seed 003 §18): in [-0.2, 1.0], -0.2 for output that does not
parse. A record carries ``completion`` (the raw model output) and ``teacher_trace`` (the teacher's
trace text); ``halo_ray.bench.score.verify_record`` copies both from an SRL problem (``srl#train``).

The reward settings come from the verifier section when it is an ``SRLVerifierConfig``
(``verifier.srl``; defaults otherwise). With ``verifier.execute`` the parsed action is also applied
with ast-grep to the record's task (``srl_task``, built-in or synthetic) and the task's tests run in the pool's own
sandboxes: ``reward_components["executed"]`` is then 1.0 when they pass (a metric, not part of the reward).
``verifier.reward`` (the graduated / pass_rate / pass_fail table) does not apply: the trace match is the reward.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from halo_ray.errors import DataError
from halo_ray.verifiers.base import VERIFIERS

if TYPE_CHECKING:
    from halo_ray.sections import VerifierConfig

STOP = "</state_update>"


@VERIFIERS.register("srl_trace")
class SRLTraceVerifier:
    """SRL trace matching against the record's teacher_trace, in process (rewards in [-0.2, 1], -0.2 malformed)."""

    in_process = True

    def available(self) -> str | None:
        return None

    def binds(self) -> list[str]:
        return []

    def check(self, record: dict) -> None:
        """DataError naming the record when it lacks the fields trace matching needs."""
        student = record.get("completion", record.get("code"))
        if not isinstance(student, str) or not isinstance(record.get("teacher_trace"), str):
            raise DataError(f"record {record.get('id')!r}: the srl_trace verifier needs 'completion' (or 'code') "
                            "and 'teacher_trace' strings (SRL problems: srl#train, srl#heldout)")

    def plan(self, record: dict, cfg: VerifierConfig) -> dict:
        """No sandbox request: checked here, scored by ``score_records`` (the pool routes it there)."""
        self.check(record)
        return {"in_process": True}

    def score_records(self, records: list[dict], cfg: VerifierConfig, sandbox=None) -> list[dict]:
        """The verifiers' result dicts for ``records`` (``halo_ray.srl.reward.score_records``).

        Args:
            records: dicts with ``id``, ``completion`` (or ``code``), ``teacher_trace`` and, for
                execution, ``srl_task`` (a built-in or synthetic task id).
            cfg: the verifier section (``srl``, ``execute`` and ``restore_stop`` when it has them).
            sandbox: a ``Verifier`` whose sandboxes run the executed actions (needed for ``execute``).
        """
        from halo_ray.srl.reward import SRLRewardConfig, score_records

        for record in records:
            self.check(record)
        if getattr(cfg, "restore_stop", True):
            records = [_restored(r) for r in records]
        results = score_records(records, getattr(cfg, "srl", None) or SRLRewardConfig())
        if getattr(cfg, "execute", False) and sandbox is not None:
            _execute(records, results, sandbox)
        return results


def restore_stop(text: str) -> str:
    """``text`` with the ``</state_update>`` a rollout stop string removed put back (vLLM drops it); unchanged
    when it has one or never opened the block."""
    return text if STOP in text or "<state_update>" not in text else text.rstrip() + "\n" + STOP


def _restored(record: dict) -> dict:
    text = record.get("completion", record.get("code"))
    fixed = restore_stop(text)
    return record if fixed == text else {**record, "completion": fixed}


def _execute(records: list[dict], results: list[dict], sandbox) -> None:
    """Apply each parsed action to its task's files and run the task's tests in ``sandbox``; adds
    ``reward_components["executed"]`` (1.0 passed, 0.0 otherwise; malformed output: 0.0)."""
    from halo_ray.srl.actions import apply_action
    from halo_ray.srl.execute import execution_record
    from halo_ray.srl.tasks import task_index
    from halo_ray.srl.trace import parse_trace

    tasks = task_index()
    runs, where = [], []
    for i, (record, result) in enumerate(zip(records, results)):
        result["reward_components"]["executed"] = 0.0
        task = tasks.get(record.get("srl_task"))
        if result["verdict"] == "SYNTAX_ERROR" or task is None:
            continue
        files, report = apply_action(parse_trace(record.get("completion", record.get("code"))).action, task.files)
        if report["ok"]:
            runs.append(execution_record(task, files, f"{i}:{task.id}", sandbox.cfg))
            where.append(i)
    for i, done in zip(where, sandbox.verify(runs) if runs else []):
        results[i]["reward_components"]["executed"] = 1.0 if done["verdict"] == "SUCCESS" else 0.0
