"""Prompts for SRL teachers and students (seed 003 §19): a system role, few-shot anchors, the task.

The teacher samples at low temperature (the traces job's ``rollout`` section) with two or three anchors
(correct traces of other tasks) and stops at ``</state_update>``. vLLM leaves a stop string out of the text unless
``include_stop_str_in_output`` is set, so ``close_trace`` restores it before parsing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from halo_ray.config import opt
from halo_ray.srl.tasks import Task

STOP = "</state_update>"

SYSTEM = (
    "You are a refactoring expert who edits code with ast-grep, a tool that matches syntax trees, not text. "
    "Answer with exactly three blocks and nothing else:\n"
    "<think>a short rationale: what must change, what must not, and why the pattern is safe</think>\n"
    "<action>a JSON object with \"pattern\" (an ast-grep pattern; $NAME matches one node, $$$NAME several), "
    "\"replacement\" (the template), \"language\" (python, javascript or java), \"paths\" (a list of globs "
    "of the files to edit) and optionally \"constraints\" (ast-grep rules on metavariables)</action>\n"
    "<state_update>a JSON object with the lists \"constraints\", \"decisions\", \"open_issues\" and "
    "\"next_focus\"</state_update>"
)


@dataclass(frozen=True)
class TeacherConfig:
    """What ``halo-ray srl traces`` adds to sampling (which is the job's ``rollout`` section: T 0.3, top-p 0.9,
    stop at ``</state_update>``, seed 003 §19): the anchors and the filter."""

    few_shot: int = opt(2, "anchor traces of other (training) tasks shown before each task (seed 003 §19: 2-3)")
    max_think_tokens: int = opt(512, "<think> longer than this many tokens lowers trace_quality (seed 003 §5)")
    min_quality: float = opt(0.6, "teacher steps below this trace_quality are dropped (seed 003 §5)")

    def validate(self) -> list[str]:
        errs = []
        if self.max_think_tokens <= 0:
            errs.append(f"max_think_tokens must be positive, got {self.max_think_tokens}")
        if self.few_shot < 0:
            errs.append(f"few_shot must be >= 0, got {self.few_shot}")
        if not 0 <= self.min_quality <= 1:
            errs.append(f"min_quality must be in [0, 1], got {self.min_quality}")
        return errs


def anchors_for(task: Task, pool: Sequence[Task], k: int) -> list[Task]:
    """Up to ``k`` anchor tasks from ``pool`` for ``task``: never itself nor a held-out task; the same language first."""
    candidates = [t for t in pool if t.id != task.id and t.split == "train"]
    candidates.sort(key=lambda t: (t.language != task.language, t.id))
    return candidates[:k]


def messages(task: Task, anchors: Sequence[Task] = ()) -> list[dict]:
    """Chat messages: the system role, each anchor as a user/assistant exchange, then the task."""
    out = [{"role": "system", "content": task.system or SYSTEM}]
    for anchor in anchors:
        out += [{"role": "user", "content": anchor.prompt()}, {"role": "assistant", "content": anchor.teacher}]
    out.append({"role": "user", "content": task.prompt()})
    return out


def student_prompt(task: Task) -> str:
    """The plain-text prompt a student completes on the stream (no chat template): the system role, then the task."""
    return f"{task.system or SYSTEM}\n\n{task.prompt()}\nAnswer:\n"


def close_trace(text: str) -> str:
    """``text`` with the ``</state_update>`` a stop string removed put back (unchanged when present)."""
    return text if text.rstrip().endswith(STOP) else text.rstrip() + "\n" + STOP
