"""``halo-ray data generate --backend vllm``: our rollout actors (tiny model) on the session's Ray cluster, resumable."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

HALO_RAY = str(Path(sys.executable).with_name("halo-ray"))  # the console script a user runs


def test_vllm_backend_generates_and_resumes(ray_session, tiny_model, tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("def add(a, b):\n\ndef fib(n):\nimport os\n")
    out = tmp_path / "out.jsonl"
    env = dict(os.environ, RAY_ADDRESS=ray_session.get_runtime_context().gcs_address)
    cmd = [HALO_RAY, "data", "generate", "--backend", "vllm", "--model", tiny_model, "--prompts", str(prompts),
           "--output", str(out), "--n", "2", "--max-tokens", "12"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "wrote 3, skipped 0 already done, failed 0 of 3 prompts" in done.stdout
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(r["id"] for r in rows) == ["line1", "line3", "line4"]
    texts = dict(zip(["line1", "line3", "line4"], ["def add(a, b):", "def fib(n):", "import os"]))
    for row in rows:
        assert row["prompt"] == texts[row["id"]]
        assert len(row["completions"]) == 2 and all(isinstance(c, str) for c in row["completions"])
        assert row["backend"] == "vllm" and row["model"] == tiny_model
    assert any(c for row in rows for c in row["completions"]), "the model produced only empty completions"
    # Resume: the last line is lost (and a torn half line left behind); the rerun asks only for that prompt.
    kept = out.read_text().splitlines()[:2]
    out.write_text("\n".join(kept) + '\n{"id": "line4", "prom')
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "wrote 1, skipped 2 already done, failed 0 of 3 prompts" in done.stdout
    lines = out.read_text().splitlines()
    assert lines[:2] == kept and len(lines) == 3
    assert sorted(json.loads(line)["id"] for line in lines) == ["line1", "line3", "line4"]
    # Everything done: a third run starts no engine and writes nothing.
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "wrote 0, skipped 3 already done" in done.stdout and out.read_text().splitlines() == lines
