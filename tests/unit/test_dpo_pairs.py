"""Seed 002's pair rule on crafted scored records and files: count, direction, the exact gap, ties."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest

from halo_ray.pairs import form_pairs, gap_counts, group_pairs, pair_examples, read_scored, stream_pairs
from halo_ray.errors import DataError


def rec(pid, completion, rate, verdict="WRONG_OUTPUT", prompt=None):
    return {"problem_id": pid, "prompt": prompt or f"def {pid}():\n", "completion": completion, "pass_rate": rate,
            "verdict": verdict}


def test_exact_gap_counts_although_float_subtraction_falls_short():
    assert 0.3 - 0.2 < 0.1 and 0.7 - 0.6 < 0.1  # why the rule cannot compare raw differences
    assert gap_counts(0.3, 0.2, 0.1) and gap_counts(0.6, 0.7, 0.1) and gap_counts(2 / 3, 17 / 30, 0.1)
    assert not gap_counts(0.29, 0.2, 0.1)
    assert not gap_counts(0.5, 0.5, 0.0) and not gap_counts(0.5, 0.5, 0.1)  # ties never pair, even at gap 0
    assert gap_counts(0.5, 0.5 + 1e-6, 0.0)


def test_pairs_count_direction_ties_and_problems_kept_apart():
    records = [rec("a", "x0", 0.0, "SYNTAX_ERROR"), rec("a", "x1", 1.0, "SUCCESS"), rec("a", "x2", 0.2),
               rec("a", "x3", 0.3), rec("a", "x4", 1.0, "SUCCESS"),
               rec("b", "y0", 0.5), rec("b", "y1", 0.5),  # a tie: no pair
               rec("c", "z0", 0.25), rec("c", "z1", 0.2, "FAILED")]  # FAILED is unscored: no pair
    pairs = form_pairs(records, min_gap=0.1)
    got = [(p["problem_id"], p["chosen"], p["rejected"]) for p in pairs]
    # a: scores 0, 1, .2, .3, 1 -> every two apart by >= .1 except the tie x1/x4: C(5,2) - 1 = 9 pairs
    assert got == [("a", "x1", "x0"), ("a", "x2", "x0"), ("a", "x3", "x0"), ("a", "x4", "x0"), ("a", "x1", "x2"),
                   ("a", "x1", "x3"), ("a", "x3", "x2"), ("a", "x4", "x2"), ("a", "x4", "x3")]
    assert ("a", "x3", "x2") in got  # the 0.3 vs 0.2 gap, exactly the minimum
    assert all(p["chosen_score"] > p["rejected_score"] for p in pairs)
    first = pairs[0]
    assert first == {"problem_id": "a", "prompt": "def a():\n", "chosen": "x1", "rejected": "x0", "chosen_score": 1.0,
                     "rejected_score": 0.0, "chosen_verdict": "SUCCESS", "rejected_verdict": "SYNTAX_ERROR"}
    assert len(form_pairs(records, min_gap=0.5)) == 6  # a: (x1|x4) over (x0, x2, x3)
    assert form_pairs(records, min_gap=1.01) == []


def test_bad_min_gap_and_bad_records_are_data_errors():
    with pytest.raises(DataError, match="min_gap"):
        form_pairs([], min_gap=-0.1)
    with pytest.raises(DataError, match="record 2: pass_rate must lie between 0 and 1"):
        form_pairs([rec("a", "x", 0.5), rec("a", "y", 1.5)])
    with pytest.raises(DataError, match="record 1: missing pass_rate"):
        form_pairs([{"problem_id": "a", "prompt": "p", "completion": "c"}])


def test_read_scored_names_file_and_line(tmp_path):
    path = tmp_path / "scored.jsonl"
    lines = [json.dumps(rec("a", "x", 0.5)), "", json.dumps(rec("a", "y", True))]
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"scored.jsonl:3: pass_rate must be a number"):
        read_scored(path)
    path.write_text(json.dumps(rec("a", "x", 0.5)) + "\n" + json.dumps(rec("a", "y", 0.1, prompt="other")) + "\n")
    with pytest.raises(DataError, match=r"scored.jsonl:2: problem 'a' has a different prompt than at .*scored.jsonl:1"):
        read_scored(path)
    path.write_text("{not json\n")
    with pytest.raises(DataError, match=r"scored.jsonl:1: invalid JSON"):
        read_scored(path)
    with pytest.raises(DataError, match="unsupported scored file extension"):
        read_scored(tmp_path / "scored.csv")


def scored_group(pid="p", rates=(1.0, 0.0, 0.5, 1.0)):
    return pa.Table.from_pylist([
        {"prompt_id": pid, "sample_index": i, "completion": f"c{i}", "pass_rate": r, "reward": 0.3 + 0.7 * r,
         "verdict": "SUCCESS" if r == 1.0 else "WRONG_OUTPUT", "prompt_token_ids": [1, 2], "token_ids": [10 + i, 0]}
        for i, r in enumerate(rates)])


def test_group_pairs_on_a_scored_stream_group():
    pairs = group_pairs(scored_group(), min_gap=0.1)
    assert [(p["chosen_index"], p["rejected_index"]) for p in pairs] == [(0, 1), (0, 2), (2, 1), (3, 1), (3, 2)]
    assert pairs[0]["chosen_token_ids"] == [10, 0] and pairs[0]["rejected_token_ids"] == [11, 0]
    assert pairs[0]["prompt_token_ids"] == [1, 2] and pairs[0]["chosen_score"] == 1.0
    assert len(group_pairs(scored_group().to_pylist(), min_gap=0.6, score="reward")) == 2  # 1.0 vs 0.3 only
    with pytest.raises(ValueError, match="one prompt"):
        group_pairs(pa.concat_tables([scored_group("p"), scored_group("q")]))
    both = stream_pairs(pa.concat_tables([scored_group("p"), scored_group("q", (0.4, 0.4))]))
    assert {p["prompt_id"] for p in both} == {"p"} and len(both) == 5


def test_pair_examples_keep_each_pair_together_chosen_first():
    examples = pair_examples(group_pairs(scored_group()), first_pair_id=10)
    assert len(examples) == 10
    assert [(e["pair_id"], e["pair_role"]) for e in examples[:4]] == [(10, 0), (10, 1), (11, 0), (11, 1)]
    assert examples[0]["token_ids"] == [10, 0] and examples[1]["token_ids"] == [11, 0]
    with pytest.raises(ValueError, match="tokenizer"):
        pair_examples(form_pairs([rec("a", "x", 1.0), rec("a", "y", 0.0)]))


def test_max_pairs_keeps_the_widest_gaps_with_distinct_responses_first():
    # scores 1, 0, 0.5, 0 -> pairs by gap: (x0,x1) 1, (x0,x3) 1, (x0,x2) .5, (x2,x1) .5, (x2,x3) .5
    records = [rec("a", "x0", 1.0, "SUCCESS"), rec("a", "x1", 0.0), rec("a", "x2", 0.5), rec("a", "x3", 0.0)]
    every = form_pairs(records)
    assert len(every) == 5 and form_pairs(records, max_pairs=0) == every
    two = [(p["chosen"], p["rejected"]) for p in form_pairs(records, max_pairs=2)]
    # widest first, then the widest pair of responses not used yet: (x2, x3) beats (x0, x3)
    assert two == [("x0", "x1"), ("x2", "x3")]
    three = [(p["chosen"], p["rejected"]) for p in form_pairs(records, max_pairs=3)]
    assert three == [("x0", "x1"), ("x0", "x3"), ("x2", "x3")]  # the next widest, in record order
    assert len(form_pairs(records, max_pairs=9)) == 5
    with pytest.raises(DataError, match="max_pairs"):
        form_pairs(records, max_pairs=-1)


def test_group_pairs_honours_max_pairs_like_form_pairs():
    rows = [{"prompt_id": "a", "sample_index": i, "completion": f"x{i}", "pass_rate": s, "verdict": "WRONG_OUTPUT",
             "token_ids": [i], "prompt_token_ids": [9]} for i, s in enumerate((1.0, 0.0, 0.5, 0.0))]
    got = [(p["chosen_index"], p["rejected_index"]) for p in group_pairs(rows, max_pairs=2)]
    assert got == [(0, 1), (2, 3)]
    offline = form_pairs([rec("a", r["completion"], r["pass_rate"]) for r in rows], max_pairs=2)
    assert [(p["chosen"], p["rejected"]) for p in offline] == [(f"x{c}", f"x{j}") for c, j in got]
