"""Faults a long run meets, injected into a real GRPO run on the stream (real Ray, vLLM, sandbox,
DeepSpeed) at seeded points, through the Python driver a user calls: a verifier pool and a rollout
engine killed and restarted by Ray, a learner rank killed for good. Each run must finish with the
accounting balanced and every prompt trained on once. Offline DPO's preference generation survives a
killed engine the same way. (The driver killed: test_grpo_stream.py's
``--resume`` test.)"""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

STEPS, PER_STEP, N = 3, 4, 4


def grpo_config(model: str, out, name: str, *sets: str):
    from halo_ray.config import load_config
    from halo_ray.sections import GRPOJobConfig

    return load_config(GRPOJobConfig, None, [
        f"model.path={model}", "data.train=demo#raft", f"stream.num_steps={STEPS}",
        f"stream.prompts_per_step={PER_STEP}", "stream.chunk_prompts=2", f"rollout.samples_per_prompt={N}",
        "rollout.max_new_tokens=12", "rollout.temperature=1.0", "verifier.name=python",
        "learner.micro_batch_size=8", "learner.zero_stage=0", "objective.grpo.reward=graduated",
        "checkpoint.keep=5", "logging.report_to=[]", f"logging.run_dir={out}", f"logging.name={name}", *sets])


def check_run(run_dir, summary: dict) -> None:
    """The run's accounting balances, every step trained on a full batch, no prompt twice, and
    metrics.jsonl holds steps 1..STEPS once each (a restart's redone steps replace what they logged)."""
    assert json.loads((run_dir / "summary.json").read_text()) == summary
    steps = [json.loads(x)["step"] for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, STEPS + 1)), steps
    assert sorted(p.name for p in (run_dir / "samples").iterdir()) == [f"step_{c:04d}.parquet" for c in range(1, STEPS + 1)]
    acc = summary["accounting"]
    assert acc["generated"] == acc["used"] + acc["stale"] + acc["filtered"] + acc["failed"], acc
    assert acc["used"] == STEPS * PER_STEP * N, acc
    trained = [set(pq.read_table(run_dir / "samples" / f"step_{c:04d}.parquet").column("prompt_id").to_pylist())
               for c in range(1, STEPS + 1)]
    assert all(len(t) == PER_STEP for t in trained), trained
    # 232 prompts, 12 taken in the first epoch: a prompt trained on twice would be a skipped or repeated position.
    assert len(set().union(*trained)) == PER_STEP * STEPS, trained


@pytest.mark.slow
def test_killed_verifier_and_rollout_engine_are_restarted_and_healed(ray_session, sft_model, tmp_path, monkeypatch):
    """At staleness 0 each step's prompts go out right after the previous step's weights: the verifier pool
    is killed as step 2's chunks are verified (Ray restarts it and retries them), and the engine right
    after step 3's first chunk is sent to it (the chunk fails, Ray restarts the engine with the initial
    weights, the driver ships the latest ones and issues the chunk again)."""
    import ray

    from halo_ray import driver
    from halo_ray.driver.grpo import grpo

    name, lines, killed = "faults-rollout", [], []
    submit = driver.RolloutGroup.submit

    def submit_then_kill(self, prompts, **kw):
        refs = submit(self, prompts, **kw)
        if "armed" in killed and "rollout" not in killed and kw.get("index") is not None:
            killed.append("rollout")
            ray.kill(ray.get_actor(f"{name}/rollout-0"), no_restart=False)
        return refs

    def progress(line: str) -> None:
        lines.append(line)
        if line.startswith("step 1/"):
            ray.kill(ray.get_actor(f"{name}/verifier-0"), no_restart=False)
            killed.append("armed")  # the next chunk sent is at policy version 1 or later

    monkeypatch.setattr(driver.RolloutGroup, "submit", submit_then_kill)
    summary = grpo(grpo_config(sft_model, tmp_path, name, "stream.max_staleness=0"), progress=progress)
    assert killed == ["armed", "rollout"], lines
    check_run(tmp_path / name, summary)
    assert summary["faults"]["restarts"] == [], "restarted actors are handled inside the run"
    assert summary["faults"]["engines_healed"] == 1, summary["faults"]
    assert summary["accounting"]["stale"] == 0, "at staleness 0 a sample of the restarted engine's initial weights would be stale"


@pytest.mark.slow
def test_killed_learner_rank_restarts_the_run_from_its_last_checkpoint(ray_session, sft_model, tmp_path):
    """learner-0 killed for good after step 2 is logged: saving step 2's checkpoint fails, the run shuts its
    parts down and starts again from step_0001 by itself, training steps 2 and 3 on the prompts it would have."""
    import ray

    from halo_ray.driver.grpo import grpo

    name, lines = "faults-learner", []

    def progress(line: str) -> None:
        lines.append(line)
        if line.startswith("step 2/") and not any("restarting" in x for x in lines):
            ray.kill(ray.get_actor(f"{name}/learner-0"), no_restart=True)

    summary = grpo(grpo_config(sft_model, tmp_path, name, "stream.max_staleness=1"), progress=progress)
    check_run(tmp_path / name, summary)
    (restart,) = summary["faults"]["restarts"]
    assert restart["step"] == 2 and restart["resumed_from"] == "step_0001", restart
    assert "faults-learner/learner-0 died" in restart["error"], restart
    assert any(x.startswith("resumed ") and "at step 2" in x for x in lines), lines
    # step 2 was logged before the kill and again after the restart; metrics.jsonl has it once (check_run).
    assert [x.split(":")[0] for x in lines if x.startswith("step ")] == ["step 1/3", "step 2/3", "step 2/3", "step 3/3"]


@pytest.mark.slow
def test_a_learner_killed_more_often_than_allowed_stops_with_how_to_resume(ray_session, sft_model, tmp_path):
    """checkpoint.max_restarts=0: the first death stops the run with a message that names --resume."""
    import ray

    from halo_ray.driver.grpo import grpo
    from halo_ray.errors import ActorLostError

    name = "faults-stop"

    def progress(line: str) -> None:
        if line.startswith("step 2/"):
            ray.kill(ray.get_actor(f"{name}/learner-0"), no_restart=True)

    config = grpo_config(sft_model, tmp_path, name, "stream.max_staleness=1", "checkpoint.max_restarts=0")
    with pytest.raises(ActorLostError, match="--resume") as err:
        grpo(config, progress=progress)
    assert "checkpoint step_0001" in str(err.value) and str(tmp_path / name) in str(err.value)
    assert (tmp_path / name / "checkpoints" / "step_0001").is_dir()


@pytest.mark.slow
def test_killed_rollout_engine_during_dpo_prefs_is_restarted_and_its_chunks_sent_again(ray_session, sft_model,
                                                                                        tmp_path, caplog, monkeypatch):
    """Offline DPO's preference generation (``dpo prefs``): the engine is killed right after the four chunks
    are sent to it; they fail, Ray restarts the engine, the driver heals it and sends each chunk again (same
    seed), and every problem ends with all its responses, each once."""
    import logging
    from pathlib import Path

    import ray

    from halo_ray import driver
    from halo_ray.config import load_config
    from halo_ray.driver.dpo import preferences
    from halo_ray.sections import DPOJobConfig

    name, problems, n, sent = "faults-prefs", 8, 4, []
    config = load_config(DPOJobConfig, Path(__file__).resolve().parents[2] / "configs" / "tiny" / "dpo.yaml", [
        f"model.path={sft_model}", f"dpo.max_problems={problems}", "dpo.chunk_prompts=2",
        f"rollout.samples_per_prompt={n}", "rollout.max_new_tokens=12", f"logging.run_dir={tmp_path}",
        f"logging.name={name}"])
    submit = driver.RolloutGroup.submit

    def submit_then_kill(self, prompts, **kw):
        refs = submit(self, prompts, **kw)
        sent.append(len(refs))
        if len(sent) == 1:
            ray.kill(ray.get_actor(f"{name}/rollout-0"), no_restart=False)
        return refs

    monkeypatch.setattr(driver.RolloutGroup, "submit", submit_then_kill)
    with caplog.at_level(logging.ERROR, logger="halo_ray.driver.dpo"):
        summary = preferences(config)
    assert sent[0] == problems // 2 and len(sent) > 1, sent  # the chunks sent again, one by one
    assert any("sending it again" in r.getMessage() for r in caplog.records), caplog.text
    assert summary["samples"] == problems * n and summary["problems"] == problems
    scored = [json.loads(line) for line in (tmp_path / name / "scored.jsonl").read_text().splitlines()]
    by_problem: dict[str, list[int]] = {}
    for rec in scored:
        by_problem.setdefault(rec["problem_id"], []).append(rec["sample_index"])
    assert len(by_problem) == problems and all(sorted(v) == list(range(n)) for v in by_problem.values()), by_problem
