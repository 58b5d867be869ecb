"""``halo-ray srl train`` end to end on the embedded tiny model (real Ray, vLLM, the srl_trace verifier in the
verifier actor, DeepSpeed with the KL anchor to a frozen base), then ``halo-ray srl eval`` of its checkpoint."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

ROOT = Path(__file__).resolve().parents[2]
HALO_RAY = str(Path(sys.executable).with_name("halo-ray"))
STEPS, PER_STEP, N = 2, 4, 4


@pytest.mark.slow
def test_srl_train_two_tiny_steps_writes_srl_metrics_and_balances_accounting(ray_session, tiny_model, tmp_path):
    out = tmp_path / "run"
    cmd = [HALO_RAY, "srl", "train", "--config", str(ROOT / "configs" / "tiny" / "srl.yaml"), "--model", tiny_model,
           "--steps", str(STEPS), "--output", str(out), "--set", f"stream.prompts_per_step={PER_STEP}",
           "--set", f"rollout.samples_per_prompt={N}"]
    env = dict(os.environ, RAY_ADDRESS=ray_session.get_runtime_context().gcs_address)
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]
    summary = json.loads((out / "summary.json").read_text())
    acc = summary["accounting"]
    assert acc["generated"] == acc["used"] + acc["stale"] + acc["filtered"] + acc["failed"], acc
    assert acc["used"] == STEPS * PER_STEP * N and acc["failed"] == 0
    steps = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [m for m in steps if "rollout/samples" in m]
    assert [m["step"] for m in steps] == [1, 2]
    for m in steps:
        for key in ("srl/trace_parse_rate", "srl/action_fidelity", "srl/state_faithfulness", "srl/think_similarity",
                    "srl/brevity_penalty", "srl/reward_mean", "srl/think_words", "srl/state_words",
                    "srl/malformed_zeroed", "train/kl", "train/clip_frac_low", "verify/reward_mean"):
            assert key in m, key
        assert 0.0 <= m["srl/trace_parse_rate"] <= 1.0
        assert -0.2 <= m["verify/reward_min"] <= m["verify/reward_max"] <= 1.0
        assert any(k.startswith(("srl/python/", "srl/java/", "srl/javascript/")) for k in m), "slices by language"
        assert m["train/kl"] >= 0.0
    for c in range(1, STEPS + 1):
        rows = pq.read_table(out / "samples" / f"step_{c:04d}.parquet").to_pylist()
        assert len(rows) == PER_STEP * N
        assert all(r["prompt_id"].startswith("srl/") for r in rows)
        for r in rows:
            comp = dict(r["reward_components"])
            assert set(comp) >= {"action", "state", "think", "brevity_penalty", "malformed", "total"}
            assert comp["total"] == pytest.approx(r["reward"])
            if comp["malformed"]:
                assert r["reward"] == pytest.approx(-0.2) and r["advantage"] == 0.0
    ckpt = Path(summary["final_checkpoint"])
    assert ckpt.is_dir()

    report_path = tmp_path / "srl_eval.json"
    assert (ckpt / "config.json").is_file(), "a full fine-tune's checkpoint is a Hugging Face model directory"
    cmd = [HALO_RAY, "srl", "eval", "--config", str(ROOT / "configs" / "tiny" / "srl.yaml"),
           "--model", str(ckpt), "--samples", "2", "--output", str(report_path)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    report = json.loads(report_path.read_text())
    assert report["tasks"] == "srl#heldout" and report["overall"]["samples"] == 4 * 2
    assert set(report["by_language"]) == {"python", "javascript", "java"}
    for key in ("trace_parse_rate", "action_fidelity", "state_faithfulness", "think_similarity", "brevity_penalty",
                "execution_success", "think_tokens", "state_tokens", "histograms"):
        assert key in report["overall"], key
    assert report["overall"]["execution_success"] is not None, "malformed outputs count as failed executions"
    assert "trace_parse_rate" in done.stdout


@pytest.mark.slow
def test_srl_traces_on_the_tiny_model_accounts_for_every_sampled_step(ray_session, tiny_model, tmp_path):
    out = tmp_path / "teacher"
    cmd = [HALO_RAY, "srl", "traces", "--config", str(ROOT / "configs" / "teacher.yaml"), "--model", tiny_model,
           "--output", str(out), "--set", "model.max_model_len=1024", "--set", "rollout.num_gpus=0",
           "--set", "rollout.samples_per_prompt=2", "--set", "rollout.max_new_tokens=24", "--set", "teacher.few_shot=0",
           "--set", "verifier.workers=1"]
    env = dict(os.environ, RAY_ADDRESS=ray_session.get_runtime_context().gcs_address)
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["sampled"] == 8 * 2
    assert summary["kept"] + sum(summary["dropped"].values()) == summary["sampled"]
    assert summary["settings"]["temperature"] == 0.3 and summary["settings"]["top_p"] == 0.9
    kept = pq.read_table(out / "traces.parquet")
    assert kept.num_rows == summary["kept"] and "trace_quality" in kept.column_names
