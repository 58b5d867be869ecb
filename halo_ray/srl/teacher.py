"""Teacher traces (seed 003 §§2, 5, 19, 23): prompts with anchors, then parse, execute, filter, store by slice.

Pure parts of ``halo-ray srl traces`` (the driver samples): ``teacher_prompt`` renders a task's chat
messages (system role, few-shot anchors, the task) with the teacher's chat template; ``collect``
parses every sampled text, keeps the executed results the caller measured, applies ``filter_steps``
(parse, execution success, ``trace_quality >= min_quality``) and counts why steps were dropped;
``write_traces`` stores what was kept as Parquet: ``traces.parquet`` and one file per slice under
``traces/`` (the task's language; ``synthetic`` for tasks marked so), plus ``summary.json``.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Callable, Sequence

from halo_ray.srl.prompts import TeacherConfig, anchors_for, close_trace, messages
from halo_ray.srl.quality import filter_steps, words
from halo_ray.srl.tasks import Task
from halo_ray.srl.trace import SCHEMA_VERSION, RejectionCounter

SLICES = ("python", "javascript", "java", "synthetic")
COLUMNS = ("task", "language", "split", "slice", "sample_index", "text", "trace", "trace_quality", "success",
           "env_report", "schema_version")


def slice_of(task: Task) -> str:
    """The data slice of a task (seed 003 §13): ``synthetic`` for generated variants (id prefix ``synthetic``), else its language."""
    return "synthetic" if task.id.startswith("synthetic") else task.language


def teacher_prompt(task: Task, pool: Sequence[Task], cfg: TeacherConfig,
                   render: Callable[[list[dict], bool], str]) -> str:
    """The text a teacher completes for ``task``: its messages with ``cfg.few_shot`` anchors from ``pool``,
    rendered by ``render(messages, add_generation_prompt)`` (a chat template)."""
    return render(messages(task, anchors_for(task, pool, cfg.few_shot)), True)


def collect(tasks: Sequence[Task], texts: Sequence[str], sample_index: Sequence[int], executions: dict[int, object],
            cfg: TeacherConfig, count_tokens: Callable[[str], int] = words) -> tuple[list[dict], dict]:
    """Parse, gate on execution and filter sampled teacher steps.

    Args:
        tasks, texts, sample_index: one entry per sampled step (the text as sampled; the stop string is put back).
        executions: position -> ``halo_ray.srl.execute.Execution`` of that step's parsed action (steps
            that did not parse have none).
        cfg: ``min_quality`` and ``max_think_tokens``.
        count_tokens: measures ``<think>`` (the teacher's tokenizer).
    Returns:
        ``(kept, counts)``: kept rows have ``COLUMNS``; counts hold ``sampled``, ``kept``, ``dropped``
        (reason -> count: ``parse:<reason>``, ``execution``, ``quality``), ``rejections`` (parser reasons)
        and ``parse_rate``.
    """
    counter = RejectionCounter()
    steps = []
    for i, (task, text, index) in enumerate(zip(tasks, texts, sample_index)):
        text = close_trace(text)
        counter.parse(text)
        run = executions.get(i)
        steps.append({"task": task.id, "language": task.language, "split": task.split, "slice": slice_of(task),
                      "sample_index": int(index), "text": text, "success": bool(run and run.success),
                      "env_report": json.dumps(run.env_report, sort_keys=True) if run else "",
                      "schema_version": SCHEMA_VERSION})
    kept, dropped = filter_steps(steps, min_quality=cfg.min_quality, max_think_tokens=cfg.max_think_tokens,
                                 count_tokens=count_tokens)
    counts = {"sampled": len(steps), "kept": len(kept), "dropped": dict(Counter(dropped).most_common()),
              "rejections": counter.rejections(), "parse_rate": counter.parse_rate()}
    return [{k: row[k] for k in COLUMNS} for row in kept], counts


def write_traces(folder: str | Path, kept: list[dict], summary: dict) -> dict[str, int]:
    """``traces.parquet``, ``traces/<slice>.parquet`` for every slice with rows, ``summary.json``; returns rows per slice."""
    import pyarrow as pa

    from halo_ray.io import write_json, write_table

    folder = Path(folder)
    schema = pa.schema([pa.field(c, pa.int64() if c == "sample_index" else pa.float64() if c == "trace_quality"
                                 else pa.bool_() if c == "success" else pa.string()) for c in COLUMNS])
    write_table(folder / "traces.parquet", pa.Table.from_pylist(kept, schema=schema))
    per_slice = {}
    for name in SLICES:
        rows = [r for r in kept if r["slice"] == name]
        if rows:
            write_table(folder / "traces" / f"{name}.parquet", pa.Table.from_pylist(rows, schema=schema))
            per_slice[name] = len(rows)
    write_json(folder / "summary.json", {**summary, "slices": per_slice})
    return per_slice
