"""GRPO on the asynchronous stream end to end (real Ray, vLLM, sandbox, DeepSpeed), and the learner's
temperature-scaled log-probs of engine samples against the engine's own."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

HALO_RAY = str(Path(sys.executable).with_name("halo-ray"))
STEPS, PER_STEP, N = 3, 4, 4


@pytest.mark.slow
def test_grpo_end_to_end_with_dynamic_sampling_and_accounting(ray_session, sft_model, tmp_path):
    out = tmp_path / "run"
    cmd = [HALO_RAY, "grpo", "train", "--model", sft_model, "--prompts", "demo#raft", "--steps", str(STEPS),
           "--output", str(out), "--set", f"stream.prompts_per_step={PER_STEP}", "--set", "stream.chunk_prompts=2",
           "--set", "stream.max_staleness=1", "--set", f"rollout.samples_per_prompt={N}",
           "--set", "rollout.max_new_tokens=12", "--set", "rollout.temperature=1.0", "--set", "verifier.name=python",
           "--set", "learner.micro_batch_size=8", "--set", "learner.lr=0.0002", "--set", "learner.zero_stage=0",
           "--set", "objective.grpo.reward=graduated", "--set", "objective.grpo.updates_per_batch=2"]
    env = dict(os.environ, RAY_ADDRESS=ray_session.get_runtime_context().gcs_address)
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    summary = json.loads((out / "summary.json").read_text())
    acc = summary["accounting"]
    assert acc["generated"] == acc["used"] + acc["stale"] + acc["filtered"] + acc["failed"]
    assert acc["used"] == STEPS * PER_STEP * N, "every step trains on a full batch of groups"
    assert set(summary["staleness"]) <= {"0", "1"}
    steps = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [m for m in steps if "rollout/samples" in m]
    assert [m["step"] for m in steps] == [1, 2, 3]
    for m in steps:
        for key in ("train/clip_frac_low", "train/clip_frac_high", "train/ratio_mean", "train/advantage_std",
                    "train/entropy", "train/behaviour_kl", "train/is_ratio_mean", "train/is_truncated_frac",
                    "stream/dynamic_filtered_groups", "verify/train_reward_mean", "time/train_s"):
            assert key in m, key
        assert m["train/steps"] >= 2, "updates_per_batch 2: two passes over the batch"
        # Dynamic sampling: every group trained on has rewards that differ.
    for c in range(1, STEPS + 1):
        table = pq.read_table(out / "samples" / f"step_{c:04d}.parquet").to_pylist()
        by_group: dict = {}
        for row in table:
            by_group.setdefault(row["prompt_id"], set()).add(row["train_reward"])
        assert all(len(rewards) > 1 for rewards in by_group.values()), by_group
        assert abs(sum(r["advantage"] for r in table)) < 1e-3 * len(table), "advantages are centred per group"
    assert (out / "timeline.json").exists()


@pytest.mark.slow
def test_learner_logprobs_of_engine_samples_match_the_engine_at_temperature(ray_session, sft_model):
    """vLLM reports processed log-probs (after temperature): the learner divides its logits by the same
    temperature, so its log-probs of the engine's samples agree with the engine's; without the
    scaling they would differ by far more than the tolerance."""
    from halo_ray import driver
    from halo_ray.actors.learner import LearnerGroup
    from halo_ray.data.demo import demo_problems, stage
    from halo_ray.sections import LearnerConfig, ModelConfig, ObjectiveConfig, RolloutConfig

    model = ModelConfig(path=sft_model, max_model_len=256)
    g = driver.RolloutGroup(model, RolloutConfig(num_engines=1, num_cpus=1, max_new_tokens=16))
    learner = LearnerGroup(model, LearnerConfig(zero_stage=0), ObjectiveConfig(name="sft"))
    try:
        prompts = [{"prompt_id": p.id, "prompt": p.prompt} for p in stage(demo_problems(), "raft")[:8]]
        rows = g.generate(prompts, n=2, temperature=0.7, seed=3).to_pylist()
        scaled = learner.logprobs(rows, temperature=0.7)
        plain = learner.logprobs(rows, temperature=1.0)
        worst = max(abs(a - b) for r, lp in zip(rows, scaled) for a, b in zip(r["logprobs"], lp))
        unscaled = max(abs(a - b) for r, lp in zip(rows, plain) for a, b in zip(r["logprobs"], lp))
        assert all(len(lp) == len(r["token_ids"]) for r, lp in zip(rows, scaled))
        assert worst < 2e-3, f"learner and engine log-probs differ by {worst}"
        assert unscaled > 20 * worst, "the temperature matters at this tolerance"
    finally:
        learner.shutdown()
        g.shutdown()


@pytest.mark.slow
def test_killed_grpo_run_resumes_without_training_a_prompt_twice(ray_session, sft_model, tmp_path):
    import signal
    import time

    out = tmp_path / "run"
    cmd = [HALO_RAY, "grpo", "train", "--model", sft_model, "--prompts", "demo#raft", "--steps", str(STEPS),
           "--output", str(out), "--set", f"stream.prompts_per_step={PER_STEP}", "--set", "stream.chunk_prompts=2",
           "--set", "stream.max_staleness=1", "--set", f"rollout.samples_per_prompt={N}",
           "--set", "rollout.max_new_tokens=12", "--set", "verifier.name=python", "--set", "learner.micro_batch_size=8",
           "--set", "learner.zero_stage=0", "--set", "objective.grpo.reward=graduated", "--set", "checkpoint.keep=5"]
    env = dict(os.environ, RAY_ADDRESS=ray_session.get_runtime_context().gcs_address)
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    first = out / "checkpoints" / "step_0001"
    deadline = time.monotonic() + 400
    while not first.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert first.exists(), proc.stderr.read()[-4000:] if proc.poll() is not None else "no checkpoint in time"
    os.killpg(proc.pid, signal.SIGKILL)  # killed mid-run, after step 1's checkpoint, with step 2 in flight
    proc.wait()
    done = subprocess.run(cmd + ["--resume"], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    summary = json.loads((out / "summary.json").read_text())
    acc = summary["accounting"]
    assert acc["generated"] == acc["used"] + acc["stale"] + acc["filtered"] + acc["failed"]
    trained = [set(pq.read_table(out / "samples" / f"step_{c:04d}.parquet").column("prompt_id").to_pylist())
               for c in range(1, STEPS + 1)]
    assert all(len(t) == PER_STEP for t in trained)
    # 232 prompts, 12 taken in the first epoch: a prompt trained on twice would be a skipped or repeated position.
    assert len(set().union(*trained)) == PER_STEP * STEPS, trained
    # Steps after step_0001 redone by the resume replace what the killed run logged of them.
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, STEPS + 1)), steps
