"""SRL metrics by slice (without execution) and the teacher/student prompts."""

from __future__ import annotations

import pytest

from halo_ray.config import from_dict
from halo_ray.errors import ConfigError
from halo_ray.srl import builtin_tasks, parse_trace
from halo_ray.srl.evaluate import evaluate, failure, summarize
from halo_ray.srl.prompts import SYSTEM, TeacherConfig, anchors_for, close_trace, messages


def test_metrics_by_language_hand_worked():
    py = builtin_tasks(language="python", split="train")[0]
    js = builtin_tasks(language="javascript", split="train")[0]
    tasks = [py, py, js, js]
    outputs = [py.teacher, "garbage", js.teacher, py.teacher]  # the last: a python action for a JS task
    rows = evaluate(tasks, outputs, execute=False)
    assert [r["malformed"] for r in rows] == [False, True, False, False]
    assert all(r["success"] is None for r in rows)
    assert rows[0]["think_tokens"] == len(py.teacher_trace.think.split()) and rows[0]["state_tokens"] > 0
    report = summarize(rows)
    overall, by = report["overall"], report["by_language"]
    assert overall["samples"] == 4 and overall["trace_parse_rate"] == 0.75
    assert by["python"]["trace_parse_rate"] == 0.5 and by["javascript"]["trace_parse_rate"] == 1.0
    assert by["python"]["action_fidelity"] == pytest.approx(0.5)  # 1.0 and a malformed 0.0
    assert by["python"]["reward_mean"] == pytest.approx((1.0 - 0.2) / 2)
    assert 0 < by["javascript"]["action_fidelity"] < 1.0
    assert overall["execution_success"] is None
    assert [r["failure"] for r in rows] == ["malformed" if r["malformed"] else None for r in rows]
    assert overall["failures"] == {"malformed": 1} and rows[0]["parsed_action"]["pattern"] == py.teacher_trace.action.pattern
    hist = overall["histograms"]["total"]
    assert sum(hist["counts"]) == 4 and hist["edges"][0] == -0.2 and hist["edges"][-1] == 1.0
    assert hist["counts"][0] == 1 and hist["counts"][-1] == 2  # -0.2 in the first bin, the two 1.0s in the last
    with pytest.raises(ValueError):
        summarize([])
    with pytest.raises(ValueError):
        evaluate([py], [])


def test_failure_names_the_first_action_field_that_differs():
    from dataclasses import replace

    teacher = builtin_tasks(language="python", split="train")[0].teacher_trace.action
    assert failure(None, teacher, False) == "malformed" and failure(teacher, teacher, None) is None
    assert failure(replace(teacher, replacement="x"), teacher, True) == "passed"  # another action may pass too
    assert failure(replace(teacher, replacement="x", pattern="y"), teacher, False) == "pattern"
    assert failure(replace(teacher, replacement="x"), teacher, False) == "replacement"
    assert failure(replace(teacher, paths=("z.py",), pattern="y"), teacher, False) == "paths"
    assert failure(replace(teacher, language="java"), teacher, False) == "other_field"
    assert failure(teacher, teacher, False) == "execution"


def test_prompts_and_anchors():
    tasks = builtin_tasks()
    task = builtin_tasks(language="java", split="heldout")[0]
    anchors = anchors_for(task, tasks, 2)
    assert len(anchors) == 2 and all(a.split == "train" and a.id != task.id for a in anchors)
    assert all(a.language == "java" for a in anchors)
    msgs = messages(task, anchors)
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert msgs[0]["content"] == SYSTEM and msgs[-1]["content"] == task.prompt()
    assert parse_trace(msgs[2]["content"]) == anchors[0].teacher_trace


def test_close_trace_restores_the_stop_string():
    t = builtin_tasks()[0].teacher
    cut = t[: -len("</state_update>")]
    assert parse_trace(close_trace(cut)) == parse_trace(t)
    assert close_trace(t) == t


def test_teacher_config():
    from halo_ray.sections import TeacherJobConfig

    job = from_dict(TeacherJobConfig, {})
    assert (job.rollout.temperature, job.rollout.top_p, job.rollout.stop) == (0.3, 0.9, ("</state_update>",))
    assert from_dict(TeacherConfig, {}).min_quality == 0.6
    with pytest.raises(ConfigError, match="min_quality"):
        from_dict(TeacherConfig, {"min_quality": 1.5})
