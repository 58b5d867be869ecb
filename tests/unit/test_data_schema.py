"""The problem schema: JSONL/Parquet round trips and ``data validate`` on malformed files."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import halo_ray.cli as cli
from halo_ray.data import Problem, read_problems, validate_file, write_problems
from halo_ray.errors import DataError

PROBLEMS = [
    Problem(id="p/1", prompt="Add two numbers.", tests="assert add(1, 2) == 3\n", entry_point="add",
            source="unit", split="train", metadata={"canonical_solution": "def add(a, b):\n    return a + b\n",
                                                     "tags": ["easy"], "level": 1}),
    Problem(id="p/2", prompt="Echo stdin.", test_cases=[{"input": "hi\n", "output": "hi\n"}], language="cpp",
            source="unit", metadata={}),
]


def run_cli(monkeypatch, *argv: str) -> int:
    """The real ``halo-ray`` entry point, with only this group registered (others land separately)."""
    monkeypatch.setattr(cli, "COMMAND_MODULES", ["data"])
    return cli.main(list(argv))


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_round_trip(tmp_path, suffix):
    path = tmp_path / f"problems{suffix}"
    write_problems(path, PROBLEMS)
    assert read_problems(path) == PROBLEMS
    kind, count, messages = validate_file(path)
    assert (kind, count, messages) == ("problems", 2, [])


def test_unsupported_extension(tmp_path):
    with pytest.raises(DataError, match="use .jsonl or .parquet"):
        write_problems(tmp_path / "p.csv", PROBLEMS)


MALFORMED = [
    '{"id": "a", "prompt": "ok", "tests": "assert True"}',
    '{"id": "b", "prompt": "broken" ',                      # 2: bad JSON
    '{"prompt": "no id"}',                                   # 3: missing field
    '{"id": 7, "prompt": "x"}',                              # 4: wrong type
    '{"id": "c", "prompt": "x", "tests": ["assert 1"]}',     # 5: wrong type
    '{"id": "d", "prompt": "x", "test_cases": [{"input": 1}]}',  # 6: bad test case
    '{"id": "e", "prompt": "x", "split": "training"}',       # 7: bad split
    '{"id": "f", "promt": "typo"}',                          # 8: unknown field, missing prompt
    '["not", "an", "object"]',                               # 9
    '{"id": "a", "prompt": "again"}',                        # 10: duplicate id
    '',
    '{"id": "g", "prompt": "fine", "metadata": {"k": 1}}',   # 12
]


def test_validate_names_file_and_line(tmp_path, monkeypatch, capsys):
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(MALFORMED) + "\n")
    assert run_cli(monkeypatch, "data", "validate", str(path)) == 1
    out = capsys.readouterr().out.splitlines()
    by_line = {}
    for message in out:
        file, line, text = message.split(":", 2)
        assert file == str(path)
        by_line.setdefault(int(line), []).append(text)
    assert sorted(by_line) == [2, 3, 4, 5, 6, 7, 8, 9, 10]
    assert "invalid JSON" in by_line[2][0]
    assert "missing required field 'id'" in by_line[3][0]
    assert "'id' must be a string, got int" in by_line[4][0]
    assert "'tests' must be a string, got list" in by_line[5][0]
    assert "test_cases[0]" in by_line[6][0]
    assert "training" in by_line[7][0]
    assert any("unknown field 'promt'" in t and "did you mean 'prompt'" in t for t in by_line[8])
    assert any("missing required field 'prompt'" in t for t in by_line[8])
    assert "expected a JSON object, got list" in by_line[9][0]
    assert "duplicate id 'a' (first at line 1)" in by_line[10][0]


def test_read_problems_raises_with_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(MALFORMED) + "\n")
    with pytest.raises(DataError) as info:
        read_problems(path)
    assert f"{path}:2: invalid JSON" in str(info.value)
    assert f"{path}:4: field 'id' must be a string" in str(info.value)


def test_validate_parquet_rows(tmp_path, monkeypatch, capsys):
    path = tmp_path / "bad.parquet"
    pq.write_table(pa.table({"id": ["x", None, "z"], "prompt": ["a", "b", ""]}), path)
    assert run_cli(monkeypatch, "data", "validate", str(path)) == 1
    out = capsys.readouterr().out
    assert f"{path}:2: missing required field 'id'" in out
    assert f"{path}:3: field 'prompt' is empty" in out


def test_validate_good_file_exits_zero(tmp_path, monkeypatch, capsys):
    path = tmp_path / "good.jsonl"
    write_problems(path, PROBLEMS)
    assert run_cli(monkeypatch, "data", "validate", str(path)) == 0
    assert "2 problems records, all valid" in capsys.readouterr().out


def test_validate_preferences(tmp_path, monkeypatch, capsys):
    path = tmp_path / "prefs.jsonl"
    rows = [{"prompt": "p", "chosen": "good", "rejected": "bad", "chosen_score": 1.0},
            {"prompt": "p", "chosen": "same", "rejected": "same"},
            {"prompt": "p", "chosen": 3, "rejected": "bad"},
            {"prompt": "p", "chosen": "good"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert run_cli(monkeypatch, "data", "validate", str(path)) == 1
    out = capsys.readouterr().out
    assert f"{path}:1:" not in out
    assert f"{path}:2: 'chosen' and 'rejected' are identical" in out
    assert f"{path}:3: field 'chosen' must be a string, got int" in out
    assert f"{path}:4: missing required field 'rejected'" in out
    good = tmp_path / "good_prefs.jsonl"
    good.write_text(json.dumps(rows[0]) + "\n")
    assert run_cli(monkeypatch, "data", "validate", str(good)) == 0
    assert "1 preferences records, all valid" in capsys.readouterr().out


def test_validate_missing_file(tmp_path, monkeypatch, capsys):
    assert run_cli(monkeypatch, "data", "validate", str(tmp_path / "nope.jsonl")) == 2
    assert "file not found" in capsys.readouterr().err


def test_project_keeps_only_the_named_columns_and_names_a_missing_one():
    import pyarrow as pa

    from halo_ray.samples import EVAL_COLUMNS, SCORED_SCHEMA, project

    table = SCORED_SCHEMA.empty_table()
    assert project(table, None) is table
    assert project(table, EVAL_COLUMNS).column_names == list(EVAL_COLUMNS)
    assert "token_ids" not in project(table, EVAL_COLUMNS).column_names
    with pytest.raises(ValueError, match="no column.s. nope"):
        project(pa.table({"a": [1]}), ("a", "nope"))
