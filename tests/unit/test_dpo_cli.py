"""``halo-ray dpo pairs`` on crafted scored files, and the DPO job's configs."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from halo_ray.cli import main
from halo_ray.config import load_config
from halo_ray.sections import JOB_CONFIGS, DPOJobConfig

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def write_scored(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


ROWS = [
    {"problem_id": "p1", "prompt": "def f():\n", "completion": "a", "pass_rate": 0.2, "verdict": "WRONG_OUTPUT"},
    {"problem_id": "p1", "prompt": "def f():\n", "completion": "b", "pass_rate": 0.3, "verdict": "WRONG_OUTPUT"},
    {"problem_id": "p1", "prompt": "def f():\n", "completion": "c", "pass_rate": 0.3, "verdict": "WRONG_OUTPUT"},
    {"problem_id": "p2", "prompt": "def g():\n", "completion": "d", "pass_rate": 1.0, "verdict": "SUCCESS"},
    {"problem_id": "p2", "prompt": "def g():\n", "completion": "e", "pass_rate": 0.0, "verdict": "SYNTAX_ERROR"},
]


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_pairs_command_writes_pairs_by_extension(tmp_path, capsys, suffix):
    scored = write_scored(tmp_path / "scored.jsonl", ROWS)
    out = tmp_path / f"pairs{suffix}"
    assert main(["dpo", "pairs", "--scored", str(scored), "--min-gap", "0.1", "--output", str(out)]) == 0
    pairs = ([json.loads(line) for line in out.read_text().splitlines()] if suffix == ".jsonl"
             else pq.read_table(out).to_pylist())
    # p1: b and c (0.3) each over a (0.2): the exact-gap case; b/c tie. p2: d over e.
    assert [(p["problem_id"], p["chosen"], p["rejected"]) for p in pairs] == [("p1", "b", "a"), ("p1", "c", "a"),
                                                                              ("p2", "d", "e")]
    assert pairs[2]["chosen_verdict"] == "SUCCESS" and pairs[2]["rejected_score"] == 0.0
    assert "3 pairs from 5 responses of 2 problems" in capsys.readouterr().out
    assert not list(tmp_path.glob(".*.tmp"))  # atomic write left nothing behind


def test_pairs_command_names_the_bad_line_and_writes_nothing(tmp_path, capsys):
    rows = ROWS[:2] + [{"problem_id": "p1", "prompt": "def f():\n", "completion": "x"}]
    scored = write_scored(tmp_path / "scored.jsonl", rows)
    out = tmp_path / "pairs.jsonl"
    assert main(["dpo", "pairs", "--scored", str(scored), "--output", str(out)]) == 2
    assert f"{scored}:3: missing pass_rate" in capsys.readouterr().err
    assert not out.exists()
    assert main(["dpo", "pairs", "--scored", str(scored), "--output", str(tmp_path / "pairs.csv")]) == 2
    assert "unsupported output extension" in capsys.readouterr().err


def test_dpo_configs_load_and_follow_seed_002():
    assert JOB_CONFIGS["dpo"] is DPOJobConfig
    for path in (CONFIGS / "dpo.yaml", CONFIGS / "tiny" / "dpo.yaml"):
        cfg = load_config(DPOJobConfig, path)
        assert cfg.objective.beta == 0.1 and cfg.dpo.min_gap == 0.1, path
        assert (cfg.rollout.samples_per_prompt, cfg.rollout.temperature) == (10, 0.8), path
        assert (cfg.eval.samples, cfg.eval.temperature, cfg.eval.top_p, cfg.eval.seed) == (10, 0.8, 0.95, 42), path
        assert cfg.dpo.eval_ks == (1, 10) and cfg.verifier.timeout_s == 5.0, path
    default = DPOJobConfig()
    assert default.rollout.samples_per_prompt == 10 and default.eval.top_p == 0.95 and default.learner.seed == 42


def test_dpo_config_errors_name_the_key(tmp_path):
    from halo_ray.errors import ConfigError

    with pytest.raises(ConfigError, match=r"dpo.eval_ks \[1, 10\] has k above eval.samples=4"):
        load_config(DPOJobConfig, overrides=["eval.samples=4"])
    with pytest.raises(ConfigError, match=r"objective: beta must be positive"):
        load_config(DPOJobConfig, overrides=["objective.beta=0"])
    with pytest.raises(ConfigError, match=r"dpo.scor: unknown key; did you mean 'dpo.score'"):
        load_config(DPOJobConfig, overrides=["dpo.scor=reward"])


def test_dpo_train_on_given_preferences_names_a_bad_record_before_anything_starts(tmp_path, capsys):
    prefs = tmp_path / "pairs.jsonl"
    good = {"problem_id": "p", "prompt": "def f():\n", "chosen": "a", "rejected": "b", "chosen_score": 1.0,
            "rejected_score": 0.0}
    prefs.write_text(json.dumps(good) + "\n" + json.dumps({**good, "rejected": 7}) + "\n")
    code = main(["dpo", "train", "--output", str(tmp_path / "run"), "--set", f"dpo.preferences={prefs}"])
    assert code == 2
    err = capsys.readouterr().err
    assert f"{prefs}:2" in err and "rejected" in err
    missing = main(["dpo", "train", "--output", str(tmp_path / "run"), "--set", f"dpo.preferences={tmp_path / 'no.jsonl'}"])
    assert missing == 2 and "dpo.preferences" in capsys.readouterr().err


def test_online_dpo_config_refuses_what_the_stream_cannot_pair(tmp_path):
    from halo_ray.errors import ConfigError
    from halo_ray.sections import OnlineDPOJobConfig

    assert JOB_CONFIGS["online_dpo"] is OnlineDPOJobConfig
    for path in (CONFIGS / "online_dpo.yaml", CONFIGS / "tiny" / "online_dpo.yaml"):
        cfg = load_config(OnlineDPOJobConfig, path)
        assert cfg.objective.name == "dpo" and cfg.objective.dpo.beta == 0.1 and cfg.pairs.min_gap == 0.1, path
    for override, message in (("rollout.samples_per_prompt=1", "a pair needs two responses"),
                              ("learner.micro_batch_size=1", "needs 2 sequences per micro-batch"),
                              ("objective.name=grpo", "online DPO trains the dpo objective"),
                              ("pairs.max_pairs_per_problem=-1", "max_pairs_per_problem must be >= 0")):
        with pytest.raises(ConfigError, match=message):
            load_config(OnlineDPOJobConfig, overrides=[override])
