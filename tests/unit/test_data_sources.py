"""Data sources, seeded splits and ``halo-ray data prepare``."""

from __future__ import annotations

import hashlib
import json
import random
from collections import Counter
from importlib import resources
from pathlib import Path

import pytest

import halo_ray.cli as cli
from halo_ray import io
from halo_ray.data import SOURCES, Problem, assign_splits, load_source, read_problems, split_sizes
from halo_ray.data.schema import check_problem
from halo_ray.data.sources import parse_mapping
from halo_ray.data.splits import parse_ratios
from halo_ray.errors import ConfigError, DataError

EXPECTED = {
    # total, then train/val/test at seed 42 and 50/20/30
    "humaneval": (164, {"train": 82, "val": 33, "test": 49}),
    "mbpp": (974, {"train": 487, "val": 195, "test": 292}),
    "mbpp_sanitized": (427, {"train": 214, "val": 85, "test": 128}),
}

CODEFORCES_ROWS = [
    {"id": "1/A", "contest_id": 1, "index": "A", "title": "Theatre Square", "prompt": "Solve theatre square.",
     "examples": [{"input": "6 6 4\n", "output": "4\n"}],
     "generation": "think...\n```cpp\n#include <cstdio>\nint main(){return 0;}\n```\n"},
    {"id": "1/A", "prompt": "Solve theatre square.", "examples": [], "generation": "a second trace"},
    {"id": "4/A", "title": "Watermelon", "description": "Split a watermelon.", "input_format": "w",
     "output_format": "YES or NO", "examples": [{"input": "8\n", "output": "YES\n"}], "generation": "no code"},
]


def run_cli(monkeypatch, *argv: str) -> int:
    monkeypatch.setattr(cli, "COMMAND_MODULES", ["data"])
    return cli.main(list(argv))


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    io.write_jsonl(path, rows)
    return path


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_counts_and_split_sizes(name):
    total, sizes = EXPECTED[name]
    problems = assign_splits(load_source(name))
    assert len(problems) == total
    assert len({p.id for p in problems}) == total
    assert dict(Counter(p.split for p in problems)) == sizes
    assert sum(sizes.values()) == total
    for p in problems:
        assert check_problem(p.to_dict()) == [], p.id
        assert p.tests and p.metadata["canonical_solution"] and p.language == "python"


def test_humaneval_fields():
    first = load_source("humaneval")[0]
    assert first.id == "HumanEval/0" and first.entry_point == "has_close_elements"
    assert "def check(candidate)" in first.tests
    assert first.metadata["canonical_solution"].startswith(first.prompt)


def test_mbpp_setup_code_runs_after_solution():
    by_id = {p.id: p for p in load_source("mbpp")}
    tree = by_id["mbpp/367"]
    assert tree.tests.index("Node(") < tree.tests.index("assert")
    assert "class Node" in tree.metadata["canonical_solution"] and "class Node" not in tree.tests
    assert "\r" not in tree.metadata["canonical_solution"]


@pytest.mark.parametrize("name", SOURCES.names())
def test_every_registered_source_loads(name, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    mine = write_jsonl(tmp_path / "mine.jsonl", [{"id": "m1", "prompt": "p", "tests": "assert True"}])
    extra = {"codeforces_cpp": {"from_path": str(write_jsonl(tmp_path / "cf.jsonl", CODEFORCES_ROWS))}}
    spec = {"jsonl": f"jsonl:{mine}", "parquet": None}.get(name, name)
    if name == "srl_traces":
        spec = f"srl_traces:{_teacher_traces(tmp_path / 'teacher')}"
    if name == "parquet":
        from halo_ray.data import write_problems

        write_problems(tmp_path / "mine.parquet", [Problem(id="m1", prompt="p", tests="assert True")])
        spec = f"parquet:{tmp_path / 'mine.parquet'}"
    problems = load_source(spec, **extra.get(name, {}))
    assert problems and all(isinstance(p, Problem) and not check_problem(p.to_dict()) for p in problems)


def _teacher_traces(folder):
    """A folder as ``halo-ray srl traces`` writes it: every built-in training task's teacher trace, kept."""
    from halo_ray.srl.tasks import builtin_tasks
    from halo_ray.srl.teacher import slice_of, write_traces
    from halo_ray.srl.trace import SCHEMA_VERSION

    rows = [{"task": t.id, "language": t.language, "split": t.split, "slice": slice_of(t), "sample_index": 0,
             "text": t.teacher, "trace": t.teacher, "trace_quality": 1.0, "success": True, "env_report": "",
             "schema_version": SCHEMA_VERSION} for t in builtin_tasks(split="train")]
    write_traces(folder, rows, {"kept": len(rows)})
    return folder


def test_srl_train_data_from_teacher_traces_by_folder_or_slice(tmp_path):
    from halo_ray.data.sources import problems_from_spec
    from halo_ray.srl.prompts import student_prompt
    from halo_ray.srl.tasks import task_index

    folder = _teacher_traces(tmp_path / "teacher")
    every = problems_from_spec(f"srl_traces:{folder}#train")
    python = problems_from_spec(f"srl_traces:{folder}/traces/python.parquet")
    assert len(every) == 8 and 0 < len(python) < len(every)
    for p in every:
        task = task_index()[p.metadata["srl_task"]]
        assert p.prompt == student_prompt(task) and p.metadata["verifier"] == "srl_trace"
        assert p.metadata["teacher_trace"] == p.metadata["completion"] == task.teacher
    with pytest.raises(DataError, match="not found"):
        problems_from_spec(f"srl_traces:{tmp_path / 'nowhere'}")


def test_the_synthetic_srl_slice_is_deterministic_and_its_teacher_actions_pass():
    from halo_ray.data.sources import problems_from_spec
    from halo_ray.srl.actions import apply_action
    from halo_ray.srl.synthetic import synthetic_tasks

    train, heldout = problems_from_spec("srl:synthetic#train"), problems_from_spec("srl:synthetic#heldout")
    assert len(train) == 4000 and len(heldout) == 40
    assert [p.id for p in heldout] == [p.id for p in problems_from_spec("srl:synthetic#heldout")]
    tasks = synthetic_tasks()
    assert len({t.id for t in tasks}) == len(tasks)
    actions = {(a.pattern, a.replacement, a.paths) for a in (t.teacher_trace.action for t in tasks)}
    assert len(actions) == len(tasks), "every task needs its own action"

    def pair(task):
        action = task.teacher_trace.action
        return action.pattern.split("(")[0].split(".")[-1], action.replacement.split("(")[0].split(".")[-1]

    held_pairs = {pair(t) for t in tasks if t.split == "heldout"}
    assert len(held_pairs) == 40 and not held_pairs & {pair(t) for t in tasks if t.split == "train"}
    for task in tasks[:4]:  # the sandbox run of the tests is tests/integration/test_srl_execute.py's
        files, report = apply_action(task.teacher_trace.action, task.files)
        assert report["ok"] and files != task.files
        # the instruction, read last, names the file and both names in the action's order
        assert task.prompt().rstrip().endswith(task.instruction) and task.instruction.index(pair(task)[0]) < \
            task.instruction.index(pair(task)[1]) and task.instruction.index(next(iter(task.files))) < task.instruction.index(pair(task)[0])
    with pytest.raises(ConfigError, match="heldout"):
        synthetic_tasks(train=10, heldout=0)


def test_the_synthetic_names_are_one_token_each_of_the_tiny_tokenizer(tmp_path):
    # what makes the slice copyable by the two-layer tiny model (halo_ray/srl/synthetic.py); a tokenizer change that
    # splits a word must change WORDS too
    import builtins
    import keyword
    import sys

    from transformers import AutoTokenizer

    from halo_ray.srl.synthetic import WORDS
    from halo_ray.tiny import init_tiny

    tok = AutoTokenizer.from_pretrained(init_tiny(tmp_path / "tiny"))
    for before in ("", "`", '"', ".", "_", "def ", "x.", ' "'):
        width = len(tok(before, add_special_tokens=False)["input_ids"])
        split = [w for w in WORDS if len(tok(before + w, add_special_tokens=False)["input_ids"]) != width + 1]
        assert not split, (before, split)
    assert not [w for w in WORDS if keyword.iskeyword(w) or hasattr(builtins, w) or w in sys.stdlib_module_names]


def test_splits_stable_under_shuffled_input():
    problems = load_source("mbpp")
    reference = {p.id: p.split for p in assign_splits(problems)}
    for trial in range(3):
        shuffled = problems[:]
        random.Random(trial).shuffle(shuffled)
        assert {p.id: p.split for p in assign_splits(shuffled)} == reference
    other_seed = {p.id: p.split for p in assign_splits(problems, seed=7)}
    assert other_seed != reference
    assert Counter(other_seed.values()) == Counter(reference.values())


def test_split_sizes_and_ratios():
    assert split_sizes(10, (0.5, 0.2, 0.3)) == {"train": 5, "val": 2, "test": 3}
    assert split_sizes(0) == {"train": 0, "val": 0, "test": 0}
    assert sum(split_sizes(1001, (0.8, 0.1, 0.1)).values()) == 1001
    assert parse_ratios("0.8,0.1,0.1") == (0.8, 0.1, 0.1)
    for bad in ("0.5,0.5", "0.5,0.2,0.2", "a,b,c", "-0.1,0.6,0.5"):
        with pytest.raises(ConfigError, match="--ratios"):
            parse_ratios(bad)


def test_duplicate_ids_rejected():
    with pytest.raises(DataError, match="duplicate problem ids"):
        assign_splits([Problem(id="x", prompt="a"), Problem(id="x", prompt="b")])


def test_prepare_one_split_and_parquet(tmp_path, monkeypatch, capsys):
    out = tmp_path / "test.parquet"
    assert run_cli(monkeypatch, "data", "prepare", "--dataset", "humaneval", "--output", str(out), "--split", "test") == 0
    printed = capsys.readouterr().out
    assert "164 problems" in printed and "train 82, val 33, test 49" in printed
    problems = read_problems(out)
    assert len(problems) == 49 and {p.split for p in problems} == {"test"}
    assert problems[0].metadata["canonical_solution"]


def test_prepare_user_file_with_mapping_is_order_independent(tmp_path, monkeypatch, capsys):
    rows = [{"task_id": i, "question": f"Q{i}", "test": [f"assert f({i}) == {i}"], "difficulty": "easy"}
            for i in range(40)]
    outs = []
    for trial in range(2):
        random.Random(trial).shuffle(rows)
        src = write_jsonl(tmp_path / f"mine{trial}.jsonl", rows)
        out = tmp_path / f"out{trial}.jsonl"
        assert run_cli(monkeypatch, "data", "prepare", "--dataset", f"jsonl:{src}", "--output", str(out),
                       "--map", "id=task_id,prompt=question", "--map", "tests=test", "--seed", "3") == 0
        outs.append({p.id: p for p in read_problems(out)})
    assert outs[0].keys() == {str(i) for i in range(40)}
    assert {k: p.split for k, p in outs[0].items()} == {k: p.split for k, p in outs[1].items()}
    sample = outs[0]["5"]
    assert sample.prompt == "Q5" and sample.tests == "assert f(5) == 5\n"
    assert sample.metadata == {"difficulty": "easy"} and sample.source == "mine0"
    assert "train 20, val 8, test 12" in capsys.readouterr().out


def test_user_file_errors_name_line(tmp_path, monkeypatch, capsys):
    src = write_jsonl(tmp_path / "mine.jsonl", [{"task_id": 1, "question": "q"}, {"task_id": 2}])
    code = run_cli(monkeypatch, "data", "prepare", "--dataset", f"jsonl:{src}", "--output", str(tmp_path / "o.jsonl"),
                   "--map", "id=task_id,prompt=question")
    assert code == 2
    err = capsys.readouterr().err
    assert f"{src}:2: mapped column(s) 'question' not in this record" in err
    with pytest.raises(ConfigError, match="not a problem field"):
        parse_mapping(["question=prompt"])


def test_codeforces_offline_says_how_to_provide_a_file(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code = run_cli(monkeypatch, "data", "prepare", "--dataset", "codeforces_cpp", "--output", str(tmp_path / "cf.jsonl"))
    assert code == 2
    assert "--from PATH" in capsys.readouterr().err


def test_codeforces_from_local_file(tmp_path):
    problems = load_source("codeforces_cpp", from_path=str(write_jsonl(tmp_path / "cf.jsonl", CODEFORCES_ROWS)))
    assert [p.id for p in problems] == ["codeforces/1/A", "codeforces/4/A"]
    first, second = problems
    assert first.language == "cpp" and first.test_cases == [{"input": "6 6 4\n", "output": "4\n"}]
    assert "int main()" in first.metadata["canonical_solution"]
    assert "Split a watermelon." in second.prompt and "YES or NO" in second.prompt
    assert "canonical_solution" not in second.metadata


def test_prepare_sft(tmp_path, monkeypatch, capsys):
    out = tmp_path / "sft.jsonl"
    assert run_cli(monkeypatch, "data", "prepare", "--dataset", "mbpp", "--output", str(out), "--format", "sft",
                   "--split", "val") == 0
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == 195
    record = records[0]
    assert record["prompt"].startswith("<|im_start|>system\n") and record["prompt"].endswith("<|im_start|>assistant\n")
    assert record["completion"].startswith("```python\n") and record["completion"].endswith("```<|im_end|>\n")
    user_file = write_jsonl(tmp_path / "nosol.jsonl", [{"id": "a", "prompt": "p"}])
    assert run_cli(monkeypatch, "data", "prepare", "--dataset", f"jsonl:{user_file}", "--output",
                   str(tmp_path / "x.jsonl"), "--format", "sft") == 2
    assert "reference solution" in capsys.readouterr().err


def test_packaged_mbpp_files_match_readme_and_carry_licence():
    files = resources.files("halo_ray.data") / "files"
    readme = (files / "README.md").read_text()
    for name in ("mbpp.jsonl", "sanitized-mbpp.json"):
        digest = hashlib.sha256((files / name).read_bytes()).hexdigest()
        assert digest in readme, name
    notice = (files / "NOTICE").read_text()
    assert "CC BY 4.0" in notice and "Austin" in notice
