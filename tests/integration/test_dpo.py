"""``halo-ray dpo run`` (prefs, train, eval), ``dpo online`` and ``halo-ray sweep`` end to end: the tiny model
on a real Ray cluster.

Preferences need responses that pass some tests and fail others, so the tiny model gets a short SFT
warm start on ``demo#sft`` first (an untrained model fails every test: no two responses differ). The
commands are subprocesses that join the session's cluster (RAY_ADDRESS), as a user's command would.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from halo_ray.verifiers.verdicts import JUDGED, VERDICTS

REPO = Path(__file__).resolve().parents[2]
HALO_RAY = str(Path(sys.executable).with_name("halo-ray"))
# The tiny preset trains on shipped pairs (the untrained embedded model forms none); these tests form
# pairs from tests on a warm-started model, so they empty dpo.preferences, as the preset says to.
TINY_DPO = str(REPO / "configs" / "tiny" / "dpo.yaml")
FROM_TESTS = ["--set", "dpo.preferences="]
PROBLEMS = 24  # training problems of the preference run (dpo.max_problems)


def run(cmd: list[str], env: dict, timeout: float = 600, ok: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, cwd=REPO)
    if ok:
        assert done.returncode == 0, f"{cmd[:3]} exited {done.returncode}:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return done


def sets(values: list[str]) -> list[str]:
    return [arg for value in values for arg in ("--set", value)]


@pytest.fixture(scope="module")
def env(ray_session):
    return dict(os.environ, RAY_ADDRESS=ray_session.get_runtime_context().gcs_address)


@pytest.fixture(scope="module")
def warm_model(sft_model):
    """The package's SFT warm start of the tiny model: it passes some demo problems' tests and fails others."""
    return sft_model


@pytest.fixture(scope="module")
def heldout(tmp_path_factory):
    from halo_ray.data import write_problems
    from halo_ray.data.sources import problems_from_spec

    problems = problems_from_spec("demo#heldout")[::20]  # 12 held-out problems across operations
    path = tmp_path_factory.mktemp("dpo") / "heldout.jsonl"
    write_problems(path, problems)
    return {"path": path, "n": len(problems)}


@pytest.fixture(scope="module")
def prefs(env, warm_model, heldout, tmp_path_factory):
    """``dpo run``: the whole experiment (preferences, DPO, evaluation) in one run directory."""
    out = tmp_path_factory.mktemp("dpo") / "run"
    done = run([HALO_RAY, "dpo", "run", "--config", TINY_DPO, *FROM_TESTS, "--model", warm_model, "--output", str(out),
                "--set", f"dpo.max_problems={PROBLEMS}", "--set", "learner.micro_batch_size=16",
                "--set", f"data.eval={heldout['path']}"], env, timeout=900)
    return {"out": out, "stdout": done.stdout, "model": warm_model}


def test_prefs_scores_ten_responses_per_problem(prefs):
    scored = [json.loads(line) for line in (prefs["out"] / "scored.jsonl").read_text().splitlines()]
    assert len(scored) == PROBLEMS * 10
    by_problem: dict[str, list[dict]] = {}
    for rec in scored:
        by_problem.setdefault(rec["problem_id"], []).append(rec)
        assert rec["verdict"] in JUDGED and 0.0 <= rec["pass_rate"] <= 1.0  # every problem has tests
        assert (rec["verdict"] == "SUCCESS") == (rec["pass_rate"] == 1.0)
    assert len(by_problem) == PROBLEMS
    assert all(sorted(r["sample_index"] for r in recs) == list(range(10)) for recs in by_problem.values())
    stream = pq.read_table(prefs["out"] / "samples" / "prefs.parquet")
    assert stream.num_rows == PROBLEMS * 10 and {"token_ids", "logprobs", "pass_rate"} <= set(stream.column_names)
    summary = json.loads((prefs["out"] / "prefs.json").read_text())
    assert summary["samples"] == PROBLEMS * 10 and summary["problems"] == PROBLEMS
    assert sum(summary["verdicts"].values()) == PROBLEMS * 10
    assert summary["settings"]["samples_per_prompt"] == 10 and summary["settings"]["temperature"] == 0.8
    assert summary["timing"]["per_problem_s"] > 0


def test_prefs_pairs_follow_the_rule_and_the_sandbox(prefs):
    from halo_ray.bench.score import verify_record
    from halo_ray.data.sources import problems_from_spec
    from halo_ray.pairs import form_pairs, read_scored
    from halo_ray.sections import VerifierConfig
    from halo_ray.verifiers import verify_batch

    pairs = [json.loads(line) for line in (prefs["out"] / "dpo_preferences.jsonl").read_text().splitlines()]
    assert pairs, "the warm-started model should pass some tests and fail others"
    assert pairs == pq.read_table(prefs["out"] / "dpo_preferences.parquet").to_pylist()
    assert pairs == form_pairs(read_scored(prefs["out"] / "scored.jsonl"), 0.1)  # the file is the rule's output
    assert all(p["chosen_score"] - p["rejected_score"] >= 0.1 - 1e-9 for p in pairs)
    summary = json.loads((prefs["out"] / "prefs.json").read_text())
    assert summary["pairs"] == len(pairs) and summary["problems_with_pairs"] == len({p["problem_id"] for p in pairs})
    # Re-run one pair's responses in a fresh sandbox: the scores in the file are what the tests say.
    problems = {p.id: p.to_dict() for p in problems_from_spec("demo#raft")}
    pair = next(p for p in pairs if p["chosen_verdict"] == "SUCCESS")
    results = verify_batch([verify_record(problems[pair["problem_id"]], pair[side], side) for side in ("chosen", "rejected")],
                           VerifierConfig(name="python", workers=1))
    assert [r["verdict"] for r in results] == [pair["chosen_verdict"], pair["rejected_verdict"]]
    assert [r["pass_rate"] for r in results] == pytest.approx([pair["chosen_score"], pair["rejected_score"]])


def test_prefs_refuses_to_overwrite_a_run(prefs, env):
    done = run([HALO_RAY, "dpo", "prefs", "--config", TINY_DPO, *FROM_TESTS, "--model", prefs["model"], "--output", str(prefs["out"]),
                "--set", "dpo.max_problems=2"], env, ok=False)
    assert done.returncode == 2 and "already holds preferences" in done.stderr


def test_train_runs_dpo_on_the_pairs_against_the_reference(prefs, env):
    """``dpo run``'s training: one metrics record per optimizer step with DPO's figures, the reference is
    the untouched base (rewards start at 0: policy = reference before the first update)."""
    out = prefs["out"]
    assert (out / "final" / "model.safetensors").is_file()
    pairs = sum(1 for _ in (out / "dpo_preferences.jsonl").open())
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if r.get("stage") == "dpo"]
    assert len(steps) == -(-2 * pairs // 16), "one record per optimizer step (8 pairs of 16 sequences each)"
    for key in ("train/loss", "train/rewards/margins", "train/rewards/accuracies", "train/lr", "train/grad_norm"):
        assert key in steps[0], key
    assert abs(steps[0]["train/rewards/margins"]) < 1e-4, "before any update the policy equals the reference"
    assert steps[0]["train/loss"] == pytest.approx(0.6931, abs=1e-3), "log 2: no margin yet"
    assert any(abs(s["train/rewards/margins"]) > 1e-3 for s in steps[1:]), "the policy moves off the frozen reference"
    train = json.loads((out / "train.json").read_text())
    assert train["pairs"] == pairs and train["train"]["steps"] == len(steps)
    again = run([HALO_RAY, "dpo", "train", "--config", TINY_DPO, *FROM_TESTS, "--model", prefs["model"], "--output", str(out)],
                env, ok=False)
    assert again.returncode == 2 and "already holds a trained model" in again.stderr


def test_eval_compares_baseline_and_finetuned_through_the_benchmark(prefs, env, heldout):
    out = prefs["out"] / "eval"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["finetuned"] == str(prefs["out"] / "final") and summary["problems"] == heldout["n"]
    for name, model in (("baseline", prefs["model"]), ("dpo", str(prefs["out"] / "final"))):
        result = json.loads((out / f"{name}.json").read_text())
        assert result["model"] == model and result["problems"] == heldout["n"]
        assert result["samples"] == 10 * heldout["n"] and set(result["pass_at_k"]) == {"1", "10"}
        assert result["settings"]["top_p"] == 0.95 and result["settings"]["seed"] == 42
        assert result["timing"]["per_problem_s"] > 0 and 0 <= result["compile_rate"] <= 1
        assert set(result["verdicts"]) == set(VERDICTS) and result["verdicts"]["UNTESTED"] == 0
        stage = next(s for s in summary["stages"] if s["name"] == name)
        assert stage["pass_at_k"] == result["pass_at_k"] and stage["verdicts"] == result["verdicts"]
        assert summary["time_per_problem_s"][name] == result["timing"]["per_problem_s"]
    tests = {t["k"]: t for t in summary["tests"]}
    assert set(tests) == {"1", "10"} and all(t["n"] == heldout["n"] for t in tests.values())
    base = json.loads((out / "baseline.json").read_text())
    tuned = json.loads((out / "dpo.json").read_text())
    assert tests["1"]["mean_diff"] == pytest.approx(tuned["pass_at_k"]["1"] - base["pass_at_k"]["1"])
    report = (out / "compare" / "report.md").read_text()
    assert f"{base['pass_at_k']['1']:.3f}" in report and f"{tuned['pass_at_k']['1']:.3f}" in report, \
        "the report's numbers come from the run"
    assert (out / "compare" / "pass_at_k.png").is_file()
    assert "pass@1" in prefs["stdout"]
    again = run([HALO_RAY, "dpo", "eval", "--config", TINY_DPO, *FROM_TESTS, "--model", prefs["model"],
                 "--data", str(heldout["path"]), "--output", str(prefs["out"])], env, ok=False)
    assert again.returncode == 2 and "already holds an evaluation" in again.stderr


def test_online_dpo_trains_pairs_from_the_stream_against_the_frozen_reference(env, warm_model, tmp_path):
    """``dpo online``: pairs formed within each scored group, trained asynchronously (k = 1); before the
    first update policy = reference (margin 0, loss log 2), after it the reference stays where it was."""
    out = tmp_path / "online"
    done = run([HALO_RAY, "dpo", "online", "--model", warm_model, "--prompts", "demo#raft", "--steps", "2",
                "--output", str(out), *sets(["stream.prompts_per_step=6", "stream.chunk_prompts=3",
                                             "stream.max_staleness=1", "rollout.samples_per_prompt=6",
                                             "rollout.max_new_tokens=24", "verifier.name=python",
                                             "pairs.max_pairs_per_problem=2", "learner.micro_batch_size=64",
                                             "learner.lr=0.0005", "learner.zero_stage=0"])], env)
    summary = json.loads((out / "summary.json").read_text())
    acc = summary["accounting"]
    assert acc["generated"] == acc["used"] + acc["stale"] + acc["filtered"] + acc["failed"]
    assert acc["used"] == 2 * 6 * 6 and summary["version"] == 2
    steps = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [m for m in steps if "rollout/samples" in m]
    assert [m["step"] for m in steps] == [1, 2]
    for m in steps:
        for key in ("train/loss", "train/rewards/margins", "train/rewards/accuracies", "stream/pairs",
                    "stream/unpaired_groups"):
            assert key in m, key
        assert 0 < m["stream/pairs"] <= 6 * 2 and m["train/examples"] == 2 * m["stream/pairs"]
    first, second = steps
    assert abs(first["train/rewards/margins"]) < 1e-4 and first["train/loss"] == pytest.approx(0.6931, abs=1e-3)
    assert abs(second["train/rewards/margins"]) > 1e-3, "the policy moved; the reference did not"
    assert summary["totals"]["pairs"] == first["stream/pairs"] + second["stream/pairs"]
    for c in (1, 2):
        table = pq.read_table(out / "samples" / f"step_{c:04d}.parquet").to_pylist()
        assert len({r["prompt_id"] for r in table}) == 6 and "paired" in table[0]
        by_prompt: dict = {}
        for r in table:
            by_prompt.setdefault(r["prompt_id"], set()).add(r["pass_rate"])
        assert all(len(rates) > 1 for rates in by_prompt.values()), "every trained group has a pair"
    assert "pairs" in done.stdout


def test_sweep_runs_two_points_and_tabulates_the_metric(env, tiny_model, tmp_path):
    config = tmp_path / "sft-tiny.yaml"
    config.write_text(f"model:\n  path: {tiny_model}\ndata:\n  train: 'demo#sft'\nlearner:\n  epochs: 1\n"
                      "  micro_batch_size: 32\n  zero_stage: 0\n")
    out = tmp_path / "sweep"
    done = run([HALO_RAY, "sweep", "--job", "sft", "--config", str(config), "--grid", "learner.lr=0.0005,0.005",
                "--metric", "train/loss", "--goal", "min", "--output", str(out)], env, timeout=900)
    record = json.loads((out / "sweep.json").read_text())
    runs = record["runs"]
    assert [r["name"] for r in runs] == ["000-lr=0.0005", "001-lr=0.005"]
    assert [r["status"] for r in runs] == ["ok", "ok"]
    for r, lr in zip(runs, (0.0005, 0.005)):
        cfg = (Path(r["dir"]) / "config.yaml").read_text()
        assert f"lr: {lr}" in cfg  # the point's value reached the run
        logged = [json.loads(line) for line in (Path(r["dir"]) / "metrics.jsonl").read_text().splitlines()]
        assert r["metric"] == logged[-1]["train/loss"]
    assert runs[0]["metric"] != runs[1]["metric"]
    assert record["best"] == min(runs, key=lambda r: r["metric"])["name"]
    assert "000-lr=0.0005" in done.stdout and "train/loss" in done.stdout
