"""SRL actions applied with ast-grep and tested in the real bubblewrap sandbox, on every built-in task.

No Ray: the verifier pool runs locally. Node and a JDK run inside the sandbox for the JavaScript
and Java tasks.
"""

from __future__ import annotations

import shutil
from dataclasses import replace

import pytest

from halo_ray.srl import builtin_tasks, filter_steps
from halo_ray.srl.execute import execute, execute_many, execute_original
from halo_ray.srl.evaluate import evaluate, summarize
from halo_ray.srl.trace import Action, Trace, format_trace

pytestmark = pytest.mark.skipif(not (shutil.which("bwrap") and shutil.which("node") and shutil.which("javac")),
                                reason="needs bubblewrap, node and a JDK")


def test_teacher_actions_pass_and_untouched_repositories_fail():
    tasks = builtin_tasks()
    runs = execute_many([(t, t.teacher_trace.action) for t in tasks])
    for task, run in zip(tasks, runs):
        report = run.env_report
        assert run.success, (task.id, report)
        assert report["applied"] and report["verdict"] == "SUCCESS" and report["pass_rate"] == 1.0
        assert report["changed"] and report["diff"].startswith("--- a/")
    for task, result in zip(tasks, execute_original(tasks)):
        assert result["verdict"] != "SUCCESS" and result["pass_rate"] < 1.0, (task.id, result)


@pytest.mark.parametrize("task_id, wrong", [
    # precedence lost: (a + b) ** 2 becomes a + b ** 2
    ("py_pow_square", dict(replacement="$A ** 2")),
    # stats.py's own average() rewritten too: its test fails
    ("py_average_to_mean", dict(paths=("**/*.py",))),
    # the semicolon the matched node holds is dropped: JavaScript syntax error in the loop header
    ("js_var_to_let", dict(pattern="var $X = $V", replacement="let $X = $V")),
    # int comparisons rewritten too: n.equals(0) does not compile
    ("java_string_equals", dict(constraints=None)),
])
def test_wrong_actions_fail_their_tests(task_id, wrong):
    (task,) = [t for t in builtin_tasks() if t.id == task_id]
    run = execute(task, replace(task.teacher_trace.action, **wrong))
    assert run.env_report["applied"], run.env_report
    assert not run.success and run.env_report["verdict"] in ("WRONG_OUTPUT", "RUNTIME_ERROR"), run.env_report
    assert run.env_report["pass_rate"] < 1.0


def test_actions_that_do_not_apply_are_not_run_and_steps_are_filtered():
    (task,) = builtin_tasks(language="python", split="heldout")[:1]
    nothing = Action("no_such_call($X)", "x", "python", ("*.py",))
    bad = Action("$X == None", "$X is None", "python", ("*.py",), {"X": {"bogus": 1}})
    runs = execute_many([(task, nothing), (task, bad), (task, task.teacher_trace.action)])
    assert [r.success for r in runs] == [False, False, True]
    assert runs[0].env_report["verdict"] == "NOT_APPLIED" and "matched nothing" in runs[0].env_report["detail"]
    assert runs[1].env_report["verdict"] == "NOT_APPLIED" and "bogus" in runs[1].env_report["detail"]
    steps = [{"text": task.teacher, "success": r.success, "env_report": r.env_report} for r in runs]
    kept, dropped = filter_steps(steps)
    assert len(kept) == 1 and kept[0]["env_report"]["verdict"] == "SUCCESS" and dropped == {"execution": 2}


def test_evaluate_reports_execution_success_by_language():
    tasks = builtin_tasks(split="heldout")
    wrong = replace(tasks[0].teacher_trace.action, paths=("nowhere/*.py",))
    wrong_text = format_trace(Trace(tasks[0].teacher_trace.think, wrong, tasks[0].teacher_trace.state))
    rows = evaluate(tasks + tasks[:1] + tasks[:1], [t.teacher for t in tasks] + ["garbage", wrong_text])
    report = summarize(rows)
    first = tasks[0].language
    assert all(report["by_language"][t.language]["execution_success"] == 1.0 for t in tasks[1:] if t.language != first)
    assert report["by_language"][first]["execution_success"] == pytest.approx(
        sum(1 for t in tasks if t.language == first) / (sum(1 for t in tasks if t.language == first) + 2))
    assert rows[-1]["env_report"]["verdict"] == "NOT_APPLIED" and rows[-2]["success"] is False


@pytest.mark.parametrize("task_id, pattern, replacement", [
    # each rewrite exits with status 0 before the checks can fail
    ("py_len_zero", "len($X) == 0", '__import__("os")._exit(0)'),
    ("js_strict_equality", "$A == $B", "process.exit(0)"),
    ("js_index_of_includes", "$A.indexOf($B) !== -1", "(process.stdout.write(require('fs').readFileSync(0, 'utf8')), process.exit(0))"),
    ("java_size_is_empty", "$L.size() == 0", "new Object() { boolean f() { System.exit(0); return true; } }.f()"),
])
def test_early_exit_does_not_pass(task_id, pattern, replacement):
    (task,) = [t for t in builtin_tasks() if t.id == task_id]
    run = execute(task, Action(pattern, replacement, task.language, ("**",)))
    assert run.env_report["applied"], run.env_report
    assert not run.success and run.env_report["pass_rate"] < 1.0, run.env_report


def test_a_perfect_student_passes_every_held_out_synthetic_task_through_the_eval_path():
    # srl eval's scoring of engine output: the teacher trace as vLLM returns it (the stop string removed), restored,
    # parsed, executed. Execution success 1.0 here is what makes a model's 0.0 a finding about the model.
    from halo_ray.srl.evaluate import report
    from halo_ray.srl.synthetic import synthetic_tasks
    from halo_ray.srl.prompts import STOP

    tasks = [t for t in synthetic_tasks() if t.split == "heldout"]
    assert len(tasks) == 40
    completions = [t.teacher.removesuffix(STOP) for t in tasks]
    assert not any(STOP in c for c in completions)
    # a student that copies every identifier but one: the other task's new name, then a module that is not there
    swapped = replace(tasks[0].teacher_trace.action, replacement=tasks[1].teacher_trace.action.replacement)
    elsewhere = replace(tasks[0].teacher_trace.action, paths=("nowhere.py",))
    wrong = [format_trace(Trace(tasks[0].teacher_trace.think, a, tasks[0].teacher_trace.state)) for a in (swapped, elsewhere)]
    out = report(tasks + tasks[:1] * 3, completions + wrong + ["<think>cut short"])
    good = out["samples"][:40]
    assert all(s["success"] and s["failure"] == "passed" and s["verdict"] == "SUCCESS" for s in good), \
        [s for s in good if not s["success"]][:2]
    assert [s["failure"] for s in out["samples"][40:]] == ["replacement", "paths", "malformed"]
    assert out["overall"]["failures"] == {"passed": 40, "malformed": 1, "paths": 1, "replacement": 1}
    assert out["by_task"][tasks[1].id]["execution_success"] == 1.0
    assert out["by_task"][tasks[0].id]["execution_success"] == 0.25
    assert out["overall"]["execution_success"] == pytest.approx(40 / 43)
    assert out["rejections"] == {"missing_tag": 1}
