"""RAFT's pure parts: selection and sample accounting (seeds 000, 001)."""

from __future__ import annotations

import pyarrow as pa

from halo_ray.selection import score_rollouts, select
from halo_ray.samples import ROLLOUT_SCHEMA
from halo_ray.sections import RaftConfig


def row(pid, i, reward, completion=None, version=0, verdict=None):
    verdict = verdict or ("SUCCESS" if reward == 1.0 else "WRONG_OUTPUT")
    return dict(prompt_id=pid, sample_index=i, completion=completion or f"c{pid}{i}", reward=reward,
                verdict=verdict, policy_version=version)


def test_threshold_top_percent_ties_and_accounting():
    rows = [row("a", 0, 1.0), row("a", 1, 0.7), row("a", 2, 0.7), row("b", 0, 0.3), row("b", 1, 0.0), row("b", 2, 1.0)]
    kept, counts = select(rows, RaftConfig(reward_threshold=0.5, keep_top_percent=0.5, min_kept=0))
    # passing: 1.0, 1.0, 0.7, 0.7 -> top half is the two 1.0s; the 0.7 ties are below the cutoff
    assert sorted((r["prompt_id"], r["sample_index"]) for r in kept) == [("a", 0), ("b", 2)]
    assert counts["generated"] == 6 == counts["kept"] + counts["filtered"] + counts["stale"] + counts["failed"]
    kept, _ = select(rows, RaftConfig(reward_threshold=0.5, keep_top_percent=0.75, min_kept=0))
    assert len(kept) == 4, "ties at the cutoff (0.7) are all kept"


def test_duplicates_and_failed_are_counted_not_silent():
    rows = [row("a", 0, 1.0, "same", 1), row("a", 1, 1.0, "same", 1), row("b", 0, 1.0, "same", 2),
            row("d", 0, 1.0, version=2), row("e", 0, 0.0, version=2, verdict="FAILED")]
    kept, counts = select(rows, RaftConfig(reward_threshold=1.0, keep_top_percent=1.0, min_kept=0))
    assert sorted((r["prompt_id"], r["sample_index"]) for r in kept) == [("a", 0), ("b", 0), ("d", 0)]
    assert counts == dict(generated=5, kept=3, filtered=1, stale=0, failed=1, duplicates=1, fallback=0)


def test_too_few_passing_keeps_the_best_rather_than_nothing(caplog):
    rows = [row("a", i, r) for i, r in enumerate([0.0, 0.3, 0.5, 0.7, 0.0])]
    kept, counts = select(rows, RaftConfig(reward_threshold=1.0, min_kept=2))
    assert [r["reward"] for r in kept] == [0.7, 0.5] and counts["fallback"] == 1
    assert "keeping the best 2" in caplog.text
    kept, counts = select([row("a", 0, 0.0)], RaftConfig(reward_threshold=1.0, min_kept=2))
    assert kept == [] and counts["filtered"] == 1, "reward 0 is never trained on"


def test_score_rollouts_attaches_verdicts_in_order():
    problems = {"p": {"id": "p", "prompt": "def f(x):\n", "tests": "assert f(2) == 3\nassert f(0) == 1\n",
                      "entry_point": "f", "language": "python"}}
    table = pa.Table.from_pylist([
        dict(prompt_id="p", sample_index=i, prompt="def f(x):\n", completion=c, prompt_token_ids=[1],
             token_ids=[2], logprobs=[-0.1], policy_version=0, policy_version_last=0, finish_reason="stop", engine=0, generate_s=0.1)
        for i, c in enumerate(["    return x + 1\n", "    return x\n"])], schema=ROLLOUT_SCHEMA)
    seen = []

    def verify(records):
        seen.extend(records)
        return [dict(verdict="SUCCESS", reward=1.0, pass_rate=1.0, duration_s=0.01),
                dict(verdict="WRONG_OUTPUT", reward=0.7, pass_rate=0.0, duration_s=0.01, reward_components={"tests": 0.0})]

    scored = score_rollouts(table, problems, verify).to_pylist()
    assert [r["verdict"] for r in scored] == ["SUCCESS", "WRONG_OUTPUT"]
    assert seen[0]["code"].startswith("def f(x):\n    return x + 1") and seen[0]["entry_point"] == "f"
    assert scored[1]["reward_components"] == [("tests", 0.0)]  # Arrow maps read back as pairs


def test_a_run_directory_is_reused_only_to_resume(tmp_path):
    import pytest

    from halo_ray.errors import ConfigError
    from halo_ray.runlog import run_path

    assert run_path(str(tmp_path), "r", "raft") == tmp_path / "r"
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "metrics.jsonl").write_text("")
    with pytest.raises(ConfigError, match="already holds a run: continue it with --resume"):
        run_path(str(tmp_path), "r", "raft")
    assert run_path(str(tmp_path), "r", "raft", resume=True) == tmp_path / "r"


def test_problem_specs_name_files_sources_and_parts(tmp_path):
    from halo_ray.data import write_problems
    from halo_ray.data.demo import demo_problems, stage
    from halo_ray.data.sources import problems_from_spec

    path = tmp_path / "p.jsonl"
    write_problems(path, stage(demo_problems(), "heldout")[:3])
    assert [p.id for p in problems_from_spec(str(path))] == [p.id for p in problems_from_spec(f"jsonl:{path}")]
    assert len(problems_from_spec("demo#raft")) == 232
    assert len(problems_from_spec("humaneval#test")) == 49
