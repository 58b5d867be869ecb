"""RAFT on the asynchronous stream end to end on a real local Ray cluster: vLLM rollouts, sandboxed
verification, DeepSpeed learner, weight sync, staleness, checkpoints, kill and resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from halo_ray.stream import prompt_at

HALO_RAY = str(Path(sys.executable).with_name("halo-ray"))
PER_STEP, N, STEPS = 4, 2, 3


def raft_cmd(model: str, out: Path, *extra: str) -> list[str]:
    return [HALO_RAY, "raft", "train", "--model", model, "--prompts", "demo#raft", "--eval", "demo#heldout",
            "--steps", str(STEPS), "--output", str(out),
            "--set", f"stream.prompts_per_step={PER_STEP}", "--set", "stream.chunk_prompts=2",
            "--set", f"rollout.samples_per_prompt={N}", "--set", "rollout.max_new_tokens=12",
            "--set", "rollout.temperature=1.0", "--set", "raft.reward_threshold=1.0", "--set", "raft.min_kept=2",
            "--set", "verifier.name=python", "--set", "eval.samples=2", "--set", "learner.micro_batch_size=4",
            "--set", "learner.lr=0.001", "--set", "learner.zero_stage=0", *extra]


def env_for(ray_session) -> dict:
    return dict(os.environ, RAY_ADDRESS=ray_session.get_runtime_context().gcs_address)


def heldout_subset(tmp_path: Path) -> str:
    from halo_ray.data import write_problems
    from halo_ray.data.demo import demo_problems, stage

    path = tmp_path / "heldout.jsonl"
    write_problems(path, stage(demo_problems(), "heldout")[:4])
    return str(path)


def step_records(out: Path) -> list[dict]:
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [m for m in metrics if "rollout/samples" in m]


@pytest.mark.slow
def test_raft_end_to_end_accounts_for_every_sample(ray_session, sft_model, tmp_path):
    out = tmp_path / "run"
    cmd = raft_cmd(sft_model, out, "--set", "stream.max_staleness=1")
    cmd[cmd.index("demo#heldout")] = heldout_subset(tmp_path)
    done = subprocess.run(cmd, env=env_for(ray_session), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    summary = json.loads((out / "summary.json").read_text())
    acc = summary["accounting"]
    assert acc["generated"] >= STEPS * PER_STEP * N
    assert acc["generated"] == acc["kept"] + acc["filtered"] + acc["stale"] + acc["failed"]
    assert [s["name"] for s in summary["stages"]] == [f"step_{c:04d}" for c in range(0, STEPS + 1)]
    steps = step_records(out)
    assert [m["step"] for m in steps] == [1, 2, 3]
    for m in steps:
        for key in ("verify/reward_mean", "stream/kept_fraction", "stream/samples_per_s", "stream/idle/rollout-0",
                    "stream/idle/verifier", "stream/idle/learner", "eval/pass_at_1", "time/train_s", "time/sync_s",
                    "stream/generated", "stream/stale", "train/loss", "train/entropy", "rollout/completion_len"):
            assert key in m, key
    # max_staleness 1: the next step is sampled while the learner trains, so it holds samples one
    # version old, and none older.
    assert "1" in summary["staleness"] and set(summary["staleness"]) <= {"0", "1"}, summary["staleness"]
    for c in range(1, STEPS + 1):
        table = pq.read_table(out / "samples" / f"step_{c:04d}.parquet")
        assert "kept" in table.column_names and table.num_rows == PER_STEP * N
    assert (out / "config.yaml").exists() and any((out / "tensorboard").iterdir())
    trace = json.loads((out / "timeline.json").read_text())
    tracks = {e["args"]["name"] for e in trace["traceEvents"] if e["ph"] == "M"}
    assert {"rollout", "verifier", "learner", "sync"} <= tracks
    assert (out / "timeline.png").read_bytes()[:4] == b"\x89PNG"
    ckpt = out / "checkpoints" / f"step_{STEPS:04d}"
    assert (ckpt / "model.safetensors").exists() and (ckpt / "trainer_state.json").exists()


@pytest.mark.slow
def test_colocated_engine_sleeps_through_every_learner_step(ray_session, sft_model, tmp_path):
    """``cluster.colocate``: the engine joins the learner rank's bundle and sleeps from before each learner
    step until the new weights are in (on CPU only its scheduler pauses); chunks in flight wait and go on."""
    out = tmp_path / "run"
    cmd = raft_cmd(sft_model, out, "--set", "stream.max_staleness=1", "--set", "cluster.colocate=true")
    del cmd[cmd.index("--eval"):cmd.index("--eval") + 2]
    done = subprocess.run(cmd, env=env_for(ray_session), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    summary = json.loads((out / "summary.json").read_text())
    acc = summary["accounting"]
    assert acc["generated"] == acc["kept"] + acc["filtered"] + acc["stale"] + acc["failed"]
    trained = [m for m in step_records(out) if m["train/examples"] > 0]
    assert trained and all(m["time/sleep_wake_s"] >= 0 for m in trained)
    (engine,) = summary["engines"]
    assert engine["sleeps"] == len(trained) and engine["steps_while_asleep"] == 0 and not engine["asleep"]
    assert engine["asleep_s"] >= sum(m["time/train_s"] for m in trained)


@pytest.mark.slow
def test_killed_run_resumes_without_skipping_or_repeating_prompts(ray_session, sft_model, tmp_path):
    out = tmp_path / "run"
    cmd = raft_cmd(sft_model, out, "--set", "checkpoint.keep=5")  # max_staleness 0: step windows are exact
    cmd[cmd.index("demo#heldout")] = heldout_subset(tmp_path)
    proc = subprocess.Popen(cmd, env=env_for(ray_session), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    first = out / "checkpoints" / "step_0001"
    deadline = time.monotonic() + 400
    while not first.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert first.exists(), proc.stderr.read()[-4000:] if proc.poll() is not None else "no checkpoint in time"
    os.killpg(proc.pid, signal.SIGKILL)  # killed mid-run, after step 1's checkpoint
    proc.wait()
    assert not (out / "summary.json").exists()

    done = subprocess.run(cmd + ["--resume"], env=env_for(ray_session), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["version"] == STEPS
    from halo_ray.data.demo import demo_problems, stage

    ids = [p.id for p in stage(demo_problems(), "raft")]
    for c in range(STEPS):  # each step's samples are exactly that step's window of the stream's order
        table = pq.read_table(out / "samples" / f"step_{c + 1:04d}.parquet")
        window = [prompt_at(ids, pos, 0) for pos in range(c * PER_STEP, (c + 1) * PER_STEP)]
        assert sorted(set(table.column("prompt_id").to_pylist())) == sorted(window)
        assert table.num_rows == PER_STEP * N
    state = json.loads((out / "checkpoints" / f"step_{STEPS:04d}" / "trainer_state.json").read_text())
    assert state["extra"]["next_step"] == STEPS
    # step 2 may have been logged before the kill (killed before its checkpoint): the resume redoes it,
    # and its record replaces the earlier one. The step-0 evaluation is kept from the first start.
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(STEPS + 1)), steps
    acc = summary["accounting"]
    assert acc["generated"] == acc["kept"] + acc["filtered"] + acc["stale"] + acc["failed"]


@pytest.mark.slow
def test_stream_at_k0_makes_exactly_the_updates_of_the_synchronous_loop(ray_session, sft_model, tmp_path):
    """``max_staleness: 0`` is the synchronous algorithm: a plain loop (sample the step's prompts with the
    current weights, verify, keep the best, train, ship weights, repeat) over the same seeded prompt
    order gives the same samples at every step and the same losses. Step 2's and 3's samples are drawn
    with the weights of steps 1 and 2, so equal samples there mean equal updates."""
    import dataclasses

    import ray

    from halo_ray import driver
    from halo_ray.actors.learner import LearnerGroup
    from halo_ray.data.sources import problems_from_spec
    from halo_ray.driver.raft import raft
    from halo_ray.driver.stream import VerifierGroup
    from halo_ray.sections import (
        DataConfig, LearnerConfig, LoggingConfig, ModelConfig, RaftConfig, RaftJobConfig, RolloutConfig,
        StreamConfig, VerifierConfig,
    )
    from halo_ray.selection import select
    from halo_ray.stream import group_rows

    per_step, n, steps = 4, 4, 3
    config = RaftJobConfig(
        model=ModelConfig(path=sft_model, max_model_len=256), data=DataConfig(train="demo#raft"),
        rollout=RolloutConfig(samples_per_prompt=n, temperature=1.0, max_new_tokens=12),
        verifier=VerifierConfig(name="python", workers=1),
        learner=LearnerConfig(lr=1e-3, micro_batch_size=4, zero_stage=0),
        stream=StreamConfig(num_steps=steps, prompts_per_step=per_step, chunk_prompts=per_step, max_staleness=0,
                            timeline=False),
        raft=RaftConfig(reward_threshold=1.0, min_kept=2),
        logging=LoggingConfig(run_dir=str(tmp_path), name="stream", report_to=()))
    summary = raft(config)
    streamed = [pq.read_table(tmp_path / "stream" / "samples" / f"step_{s:04d}.parquet").to_pylist()
                for s in range(1, steps + 1)]
    losses = [m["train/loss"] for m in step_records(tmp_path / "stream")]
    assert summary["accounting"]["stale"] == 0

    # The same algorithm written as the synchronous loop, on fresh actors from the same model.
    problems = {p.id: p.to_dict() for p in problems_from_spec("demo#raft")}
    ids, r = sorted(problems), config.rollout
    rollout = driver.RolloutGroup(config.model, r)
    verifiers = VerifierGroup(config.verifier)
    learner = LearnerGroup(config.model, config.learner, config.objective)
    try:
        version, plain, plain_losses = 0, [], []
        for step in range(steps):
            positions = range(step * per_step, (step + 1) * per_step)
            by_pid = {prompt_at(ids, pos, config.data.shuffle_seed): pos for pos in positions}
            prompts = [{"prompt_id": pid, "prompt": problems[pid]["prompt"], "seed_key": f"{pid}@{pos}"}
                       for pid, pos in by_pid.items()]
            (ref,) = rollout.submit(prompts, chunk_size=len(prompts), n=n, temperature=r.temperature, top_p=r.top_p,
                                    max_tokens=r.max_new_tokens, seed=r.seed, stop=None)
            table = ray.get(verifiers.score(ref, {pid: problems[pid] for pid in by_pid}))
            groups, _ = group_rows(table.to_pylist(), by_pid)
            rows = [row for g in sorted(groups, key=lambda g: g.position) for row in g.rows]
            kept, _ = select(rows, config.raft)
            train = learner.train([{"prompt_token_ids": k["prompt_token_ids"], "token_ids": k["token_ids"]} for k in kept],
                                  temperature=r.temperature)
            version += 1
            rollout.update_weights(learner.rollout_weights_ref(), version)
            plain.append(rows)
            plain_losses.append(train["loss"])
    finally:
        learner.shutdown()
        verifiers.shutdown()
        rollout.shutdown()
    key = lambda row: (row["prompt_id"], row["sample_index"], row["completion"], row["verdict"])  # noqa: E731
    for s in range(steps):
        assert [key(x) for x in streamed[s]] == [key(x) for x in plain[s]], f"step {s + 1}: different samples"
    assert losses == pytest.approx(plain_losses, rel=1e-5, abs=1e-7)
    assert len({x["completion"] for x in streamed[-1]}) > 1, "sampling at temperature 1 varies: the check has teeth"
