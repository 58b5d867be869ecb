"""``halo-ray sft train`` end to end: DeepSpeed learner on Ray, HF-format result, clear errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

HALO_RAY = str(Path(sys.executable).with_name("halo-ray"))


def test_sft_train_writes_a_loadable_model(ray_session, tiny_model, tmp_path):
    from halo_ray.data import write_problems
    from halo_ray.data.demo import demo_problems, stage

    data = tmp_path / "sft.jsonl"
    write_problems(data, stage(demo_problems(), "sft")[:40])
    out = tmp_path / "sft"
    env = dict(os.environ, RAY_ADDRESS=ray_session.get_runtime_context().gcs_address)
    cmd = [HALO_RAY, "sft", "train", "--model", tiny_model, "--data", str(data), "--epochs", "3", "--output", str(out),
           "--set", "learner.lr=0.002", "--set", "learner.micro_batch_size=8", "--set", "learner.zero_stage=0"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["examples"] == 40 and summary["train"]["steps"] == 15
    import torch
    from transformers import AutoModelForCausalLM

    trained = AutoModelForCausalLM.from_pretrained(out / "final")
    base = AutoModelForCausalLM.from_pretrained(tiny_model)
    assert not torch.equal(trained.model.embed_tokens.weight, base.model.embed_tokens.weight)
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert records and "train/loss" in records[-1]

    bad = subprocess.run(cmd[:6] + [str(tmp_path / "missing.jsonl")] + cmd[7:], env=env, capture_output=True,
                         text=True, timeout=300)
    assert bad.returncode == 2 and "missing.jsonl: file not found" in bad.stderr
    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 2 and "already holds a run" in again.stderr, "a finished run is never overwritten"
