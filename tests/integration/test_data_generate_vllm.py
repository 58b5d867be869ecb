"""``halo-ray data generate --backend openai`` against a real vLLM OpenAI server of the tiny model."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

import halo_ray.cli as cli
from halo_ray.tiny import init_tiny


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_ready(url: str, server: subprocess.Popen, log_path, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"vLLM server exited with {server.returncode}:\n{log_path.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url + "/v1/models", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(1)
    raise AssertionError(f"vLLM server not ready after {timeout} s:\n{log_path.read_text()[-3000:]}")


@pytest.mark.slow
def test_generate_openai_backend_against_vllm_server(tmp_path, monkeypatch, capsys):
    model_dir = init_tiny(tmp_path / "m")
    port = free_port()
    log_path = tmp_path / "server.log"
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    with open(log_path, "w") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model_dir),
             "--served-model-name", "tiny", "--host", "127.0.0.1", "--port", str(port), "--max-model-len", "512"],
            stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        url = f"http://127.0.0.1:{port}"
        started = time.monotonic()
        wait_ready(url, server, log_path)
        print(f"vLLM server ready in {time.monotonic() - started:.1f} s")
        prompts = tmp_path / "prompts.txt"
        prompts.write_text("def add(a, b):\n\ndef fib(n):\nimport os\n")
        out = tmp_path / "out.jsonl"
        args = ["data", "generate", "--prompts", str(prompts), "--backend", "openai", "--model", "tiny",
                "--base-url", url + "/v1", "--output", str(out), "--n", "2", "--max-tokens", "16",
                "--concurrency", "2"]
        monkeypatch.setattr(cli, "COMMAND_MODULES", ["data"])
        assert cli.main(args) == 0
        rows = [json.loads(line) for line in out.read_text().splitlines()]
        assert sorted(r["id"] for r in rows) == ["line1", "line3", "line4"]
        for row in rows:
            assert len(row["completions"]) == 2 and all(isinstance(c, str) for c in row["completions"])
            assert row["backend"] == "openai" and row["model"] == "tiny"
        assert any(c for row in rows for c in row["completions"]), "the model produced only empty completions"
        # Resume: one line lost, the rerun asks only for it.
        out.write_text("\n".join(out.read_text().splitlines()[:2]) + "\n")
        assert cli.main(args) == 0
        assert "wrote 1, skipped 2 already done" in capsys.readouterr().out
        assert len(out.read_text().splitlines()) == 3
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
