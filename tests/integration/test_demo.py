"""``halo-ray demo`` (behind ``make demo``) end to end on a short schedule: stages, report, pictures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HALO_RAY = str(Path(sys.executable).with_name("halo-ray"))


@pytest.mark.slow
def test_demo_writes_its_report_and_pictures(ray_session, tmp_path):
    out = tmp_path / "demo"
    cmd = [HALO_RAY, "demo", "--config", str(Path(__file__).resolve().parents[2] / "configs" / "tiny.yaml"),
           "--output", str(out), "--set", "sft.learner.epochs=2", "--set", "raft.stream.num_steps=1",
           "--set", "raft.eval.samples=2", "--set", "raft.rollout.samples_per_prompt=2"]
    env = dict(os.environ, RAY_ADDRESS=ray_session.get_runtime_context().gcs_address)
    for attempt in range(2):  # a second run into the same directory starts its stages afresh
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-4000:]
    report = json.loads((out / "report.json").read_text())
    assert [s["name"] for s in report["stages"]] == ["sft", "raft_step_1"]
    for stage in report["stages"]:
        assert 0 <= stage["pass_at_1"] <= 1 and sum(stage["verdicts"].values()) == 232 * 2
    comparison = report["comparison"]
    assert comparison["baseline"] == report["stages"][0]["pass_at_1"]
    assert comparison["final"] == report["stages"][-1]["pass_at_1"]
    assert "ttest_rel" in comparison["test"] and "p_value" in comparison
    assert report["accounting"]["generated"] == 232 * 2
    for picture in ("stages.png", "verdicts.png"):
        assert (out / picture).read_bytes()[:4] == b"\x89PNG"
    metrics = (out / "raft" / "metrics.jsonl").read_text().splitlines()
    assert len([m for m in metrics if '"rollout/samples"' in m]) == 1, "the rerun did not append to the old run"
    assert "[demo] RAFT step 1/1" in done.stdout and "RAFT vs SFT" in done.stdout


@pytest.mark.slow
def test_srl_demo_evaluates_held_out_tasks_after_sft_and_after_srl(ray_session, tmp_path):
    # a tiny schedule: the mechanics (stages, paired tests, report), not learning (the 15-minute demo shows that)
    out = tmp_path / "demo-srl"
    cmd = [HALO_RAY, "demo", "--algorithm", "srl", "--output", str(out), "--set", "srl_sft.learner.epochs=1",
           "--set", "srl_sft.data.train=srl:synthetic:64#train",
           "--set", "srl.stream.num_steps=1", "--set", "srl.stream.prompts_per_step=4", "--set", "srl.stream.chunk_prompts=4",
           "--set", "srl.rollout.samples_per_prompt=2", "--set", "srl.rollout.max_new_tokens=48",
           "--set", "srl.eval.samples=1", "--set", "srl.objective.grpo.filter_zero_variance=false"]
    env = dict(os.environ, RAY_ADDRESS=ray_session.get_runtime_context().gcs_address)
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    report = json.loads((out / "report.json").read_text())
    assert [s["name"] for s in report["stages"]] == ["base", "sft", "srl_step_1"]
    for stage in report["stages"]:
        assert stage["problems"] == 40
        assert 0 <= stage["action_fidelity"] <= 1 and 0 <= stage["execution_success"] <= 1
        assert stage["pass_at_1"] == stage["execution_success"]
        assert json.loads(Path(stage["eval"]).read_text())["tasks"] == "srl:synthetic#heldout"
    comparison = report["comparison"]
    assert comparison["baseline_stage"] == "sft" and comparison["metric"] == "action_fidelity"
    assert comparison["baseline"] == report["stages"][1]["action_fidelity"]
    assert comparison["final"] == report["stages"][-1]["action_fidelity"]
    over_base = comparison["over_base"]["execution_success"]
    assert over_base["baseline"] == report["stages"][0]["execution_success"] == 0.0, "the untrained model passes nothing"
    assert over_base["final"] == report["stages"][-1]["execution_success"]
    assert "ttest_rel" in comparison["test"] and "40 held-out tasks" in comparison["test"]
    assert set(comparison["execution_success"]) >= {"baseline", "final", "p_value", "test"}
    assert report["accounting"]["generated"] == 4 * 2
    assert (out / "stages.png").read_bytes()[:4] == b"\x89PNG"
    init = json.loads((out / "model-init" / "tokenizer_config.json").read_text())
    assert init["srl_schema_version"], "the tags are tokens of their own from the start"
    assert "SRL vs SFT" in done.stdout and "SFT then SRL vs the base" in done.stdout
