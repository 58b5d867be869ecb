"""ast-grep actions applied to files (pure), the built-in tasks, and teacher-step filtering."""

from __future__ import annotations

import json

import pytest

from halo_ray.errors import DataError
from halo_ray.srl import Action, apply_action, builtin_tasks, filter_steps, parse_trace, round_trips, trace_quality
from halo_ray.srl.actions import in_scope
from halo_ray.srl.execute import execution_record, program
from halo_ray.srl.tasks import by_language, load_task

FILES = {
    "src/a.py": "def f(xs):\n    return len(xs) == 0\n",
    "src/deep/b.py": "ok = len(items) == 0 and len(more) == 0\n",
    "tests/test_a.py": "assert len([]) == 0\n",
    "README.md": "len(x) == 0\n",
}


def act(pattern="len($X) == 0", replacement="not $X", language="python", paths=("**/*.py",), constraints=None):
    return Action(pattern, replacement, language, tuple(paths), constraints)


def test_rewrites_matches_in_scope_only_and_is_pure():
    before = dict(FILES)
    new, report = apply_action(act(paths=("src/**/*.py",)), FILES)
    assert FILES == before  # input untouched
    assert new["src/a.py"] == "def f(xs):\n    return not xs\n"
    assert new["src/deep/b.py"] == "ok = not items and not more\n"
    assert new["tests/test_a.py"] == FILES["tests/test_a.py"] and new["README.md"] == FILES["README.md"]
    assert report["ok"] and report["matches"] == {"src/a.py": 1, "src/deep/b.py": 2}
    assert report["changed"] == ["src/a.py", "src/deep/b.py"]
    assert "-    return len(xs) == 0" in report["diff"] and "+    return not xs" in report["diff"]


def test_globs():
    assert in_scope("a.py", ["*.py"]) and not in_scope("src/a.py", ["*.py"])
    assert in_scope("src/a.py", ["**/*.py"]) and in_scope("a.py", ["**/*.py"])
    assert in_scope("src/x/y.py", ["src/**"]) and not in_scope("lib/x.py", ["src/**"])
    assert in_scope("src/a1.py", ["src/a?.py"]) and not in_scope("src/a12.py", ["src/a?.py"])
    assert in_scope("a.b.py", ["a.b.py"]) and not in_scope("aXb.py", ["a.b.py"])


def test_multi_metavariable_keeps_separators():
    files = {"m.py": "print(a, b,  c)\nprint()\n"}
    new, report = apply_action(act("print($$$ARGS)", "log($$$ARGS)", paths=["m.py"]), files)
    assert new["m.py"] == "log(a, b,  c)\nlog()\n" and report["matches"] == {"m.py": 2}


def test_constraints_filter_matches():
    files = {"g.py": "x = math.pow(a, 2) + math.pow(b, 3)\n"}
    action = act("math.pow($A, $B)", "$A ** 2", paths=["g.py"], constraints={"B": {"regex": "^2$"}})
    new, _ = apply_action(action, files)
    assert new["g.py"] == "x = a ** 2 + math.pow(b, 3)\n"


def test_non_ascii_source():
    files = {"u.py": 's = "é€ü"\nprint(s, "ß")\n'}
    new, _ = apply_action(act("print($$$A)", "log($$$A)", paths=["u.py"]), files)
    assert new["u.py"] == 's = "é€ü"\nlog(s, "ß")\n'


def test_language_selects_files():
    files = {"a.js": "if (x == 1) {}\n", "a.py": "y = x == 1\n"}
    new, report = apply_action(act("$A == $B", "$A === $B", language="javascript", paths=["*"]), files)
    assert new["a.js"] == "if (x === 1) {}\n" and new["a.py"] == files["a.py"] and report["matches"] == {"a.js": 1}


def test_failures_are_reported_not_raised():
    new, report = apply_action(act(paths=["nothing/*.py"]), FILES)
    assert new == FILES and not report["ok"] and report["matches"] == {} and report["errors"] == []
    _, report = apply_action(act(constraints={"X": {"bogus": 1}}), FILES)
    assert not report["ok"] and "unknown field" in report["errors"][0]
    _, report = apply_action(act(language="cobol"), FILES)
    assert not report["ok"] and "cobol" in report["errors"][0]


def test_builtin_tasks_load_with_slices():
    tasks = builtin_tasks()
    assert len(tasks) >= 12 and len({t.id for t in tasks}) == len(tasks)
    groups = by_language(tasks)
    assert {lang: len(ts) >= 3 for lang, ts in groups.items()} == {"python": True, "javascript": True, "java": True}
    heldout = builtin_tasks(split="heldout")
    assert {t.language for t in heldout} == {"python", "javascript", "java"}
    assert len(heldout) + len(builtin_tasks(split="train")) == len(tasks)
    assert all(t.language == "java" for t in builtin_tasks(language="java"))
    with pytest.raises(DataError, match="cobol"):
        builtin_tasks(language="cobol")
    with pytest.raises(DataError, match="dev"):
        builtin_tasks(split="dev")


@pytest.mark.parametrize("task", builtin_tasks(), ids=lambda t: t.id)
def test_every_teacher_trace_is_canonical_and_rewrites_its_repository(task):
    assert round_trips(task.teacher)
    action = task.teacher_trace.action
    assert action.language == task.language
    new, report = apply_action(action, task.files)
    assert report["ok"] and report["changed"], report
    assert set(new) == set(task.files)
    assert task.tests.strip() and task.instruction in task.prompt()
    assert all(f"--- {path}" in task.prompt() for path in task.files)
    if task.language != "python":
        assert task.checks, "JavaScript and Java tasks run test programs from checks/"


def test_sandbox_record_shape():
    task = builtin_tasks(language="javascript")[0]
    record = execution_record(task, task.files, "r1")
    assert record["verifier"] == "python" and record["tests"] == task.tests and record["id"] == "r1"
    compile(record["code"], "<program>", "exec")  # the harness is valid Python
    assert json.dumps(next(iter(task.checks.values())))[1:20] in program(task, task.files, 5.0)


def test_load_task_errors(tmp_path):
    with pytest.raises(DataError, match="task.json"):
        load_task(tmp_path)
    (tmp_path / "task.json").write_text('{"id": "t", "language": "python", "split": "train"}')
    with pytest.raises(DataError, match="instruction"):
        load_task(tmp_path)
    (tmp_path / "task.json").write_text('{"id": "t", "language": "python", "split": "train", "instruction": "i"}')
    (tmp_path / "teacher.txt").write_text("<think>x</think>")
    with pytest.raises(DataError, match="teacher.txt"):
        load_task(tmp_path)


def teacher_text(think_words=20, state=None):
    state = state or {"constraints": ["c"], "decisions": ["d"], "open_issues": ["o"], "next_focus": ["n"]}
    action = {"pattern": "a($X)", "replacement": "b($X)", "language": "python", "paths": ["*.py"]}
    return (f"<think>{' '.join(['word'] * think_words)}</think><action>{json.dumps(action)}</action>"
            f"<state_update>{json.dumps(state)}</state_update>")


def test_trace_quality_hand_worked():
    assert trace_quality(parse_trace(teacher_text(20))) == 1.0
    # no state: completeness 0; 8 words: substance 8/16
    empty = {"constraints": [], "decisions": [], "open_issues": [], "next_focus": []}
    assert trace_quality(parse_trace(teacher_text(8, empty))) == pytest.approx((0 + 1 + 0.5) / 3)
    # 1024 words with a 512 cap: brevity 1/2; two of four lists filled
    half = {"constraints": ["c"], "decisions": ["d"], "open_issues": [], "next_focus": []}
    assert trace_quality(parse_trace(teacher_text(1024, half))) == pytest.approx((0.5 + 0.5 + 1) / 3)
    assert trace_quality(parse_trace(teacher_text(4)), count_tokens=lambda t: 16) == 1.0


def test_filter_steps_drops_unparsed_failed_and_low_quality():
    empty = {"constraints": [], "decisions": [], "open_issues": [], "next_focus": []}
    steps = [{"text": teacher_text(20), "success": True, "task": "a"},
             {"text": teacher_text(20), "success": False, "task": "b"},
             {"text": "no tags", "success": True, "task": "c"},
             {"text": teacher_text(4, empty), "success": True, "task": "d"},  # (0 + 1 + 0.25) / 3 < 0.6
             {"text": "  " + teacher_text(20) + "\n", "success": True, "task": "e"}]
    kept, dropped = filter_steps(steps)
    assert [s["task"] for s in kept] == ["a", "e"]
    assert all(s["trace_quality"] == 1.0 and round_trips(s["trace"]) for s in kept)
    assert dropped == {"execution": 1, "parse:missing_tag": 1, "quality": 1}
    kept, _ = filter_steps(steps, min_quality=0.0)
    assert [s["task"] for s in kept] == ["a", "d", "e"]


def test_every_task_file_is_package_data():
    import tomllib
    from pathlib import Path

    import halo_ray.srl.tasks as tasks_pkg

    root = Path(tasks_pkg.__file__).parent
    pyproject = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["halo_ray.srl.tasks"]
    assert "halo_ray.srl.tasks" in pyproject["tool"]["setuptools"]["packages"]
    files = [p.relative_to(root).as_posix() for p in root.rglob("*")
             if p.is_file() and "__pycache__" not in p.parts and p != root / "__init__.py"]
    missing = [f for f in files if not in_scope(f, patterns)]
    assert files and not missing
