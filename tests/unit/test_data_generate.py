"""``halo-ray data generate`` against local servers speaking Ollama's, Anthropic's and OpenAI's wire formats."""

from __future__ import annotations

import json
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

import halo_ray.cli as cli
from halo_ray.data.generate import BACKENDS, BackendOptions, finished_ids, make_backend, read_prompts
from halo_ray.errors import ConfigError

API_KEY = "sk-ant-test-SECRET-0123456789"


class FakeAPI:
    """A local HTTP server that answers like a hosted API; records every request.

    ``fail_first``: how many requests per prompt get ``fail_status`` (with Retry-After: 0) first.
    """

    def __init__(self, kind: str, fail_first: int = 0, fail_status: int = 429, delay: float = 0.0):
        self.kind, self.fail_first, self.fail_status, self.delay = kind, fail_first, fail_status, delay
        self.requests: list[dict] = []
        self.attempts: dict[str, int] = {}
        self.in_flight = self.max_in_flight = 0
        self.lock = threading.Lock()
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                with api.lock:
                    api.requests.append({"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()},
                                         "body": body})
                    api.in_flight += 1
                    api.max_in_flight = max(api.max_in_flight, api.in_flight)
                try:
                    status, answer, extra = api.answer(self.path, self.headers, body)
                    time.sleep(api.delay)
                finally:
                    with api.lock:
                        api.in_flight -= 1
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                for key, value in extra.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def prompt_of(self, body: dict) -> str:
        return body["prompt"] if "prompt" in body else body["messages"][-1]["content"]

    def answer(self, path, headers, body):
        prompt = self.prompt_of(body)
        with self.lock:
            self.attempts[prompt] = self.attempts.get(prompt, 0) + 1
            attempt = self.attempts[prompt]
        if attempt <= self.fail_first:
            if self.kind == "anthropic":
                error = {"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}}
            else:
                error = {"error": "rate limited"}
            return self.fail_status, error, {"retry-after": "0"}
        if self.kind == "ollama":
            assert path == "/api/generate" and body["stream"] is False and "num_predict" in body["options"]
            return 200, {"model": body["model"], "created_at": "2024-01-01T00:00:00Z",
                         "response": f"ollama says {prompt}", "done": True, "done_reason": "stop",
                         "eval_count": 3}, {}
        if self.kind == "anthropic":
            if path != "/v1/messages":
                return 404, {"type": "error", "error": {"type": "not_found_error", "message": path}}, {}
            if headers.get("x-api-key") != API_KEY or headers.get("anthropic-version") != "2023-06-01":
                # Real servers do not echo keys; this one does, to prove we redact them anyway.
                return 401, {"type": "error", "error": {"type": "authentication_error",
                                                        "message": f"invalid x-api-key {headers.get('x-api-key')}"}}, {}
            return 200, {"id": "msg_01", "type": "message", "role": "assistant", "model": body["model"],
                         "content": [{"type": "text", "text": f"claude says {prompt}"}],
                         "stop_reason": "end_turn", "stop_sequence": None,
                         "usage": {"input_tokens": 5, "output_tokens": 4}}, {}
        assert path == "/v1/chat/completions"
        return 200, {"id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": body["model"],
                     "choices": [{"index": i, "message": {"role": "assistant", "content": f"gpt says {prompt} #{i}"},
                                  "finish_reason": "stop"} for i in reversed(range(body["n"]))],
                     "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}, {}

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def run_cli(monkeypatch, *argv: str) -> int:
    monkeypatch.setattr(cli, "COMMAND_MODULES", ["data"])
    return cli.main(list(argv))


def prompts_file(tmp_path: Path, count: int = 5) -> Path:
    path = tmp_path / "prompts.jsonl"
    path.write_text("".join(json.dumps({"id": f"p{i}", "prompt": f"task {i}"}) + "\n" for i in range(count)))
    return path


def read_out(path: Path) -> dict[str, dict]:
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(rows) == len({r["id"] for r in rows}), "an id was written twice"
    return {r["id"]: r for r in rows}


def test_ollama_with_retries_and_concurrency(tmp_path, monkeypatch, capsys):
    out = tmp_path / "out.jsonl"
    with FakeAPI("ollama", fail_first=1, delay=0.05) as api:
        code = run_cli(monkeypatch, "data", "generate", "--prompts", str(prompts_file(tmp_path, 6)), "--backend",
                       "ollama", "--model", "qwen2.5-coder", "--output", str(out), "--base-url", api.url,
                       "--n", "2", "--concurrency", "3", "--backoff", "0.01")
    assert code == 0
    rows = read_out(out)
    assert sorted(rows) == [f"p{i}" for i in range(6)]
    assert rows["p3"]["completions"] == ["ollama says task 3"] * 2
    assert rows["p3"]["backend"] == "ollama" and rows["p3"]["model"] == "qwen2.5-coder"
    # each prompt: one 429, then two samples
    assert len(api.requests) == 6 * 3 and set(api.attempts.values()) == {3}
    assert 1 < api.max_in_flight <= 3
    assert "wrote 6, skipped 0 already done, failed 0 of 6" in capsys.readouterr().out


def test_anthropic_headers_retry_and_resume(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ANTHROPIC_API_KEY", API_KEY)
    out = tmp_path / "out.jsonl"
    prompts = prompts_file(tmp_path, 5)
    # A run that was killed: two whole lines and a torn third.
    out.write_text(json.dumps({"id": "p0", "prompt": "task 0", "completions": ["old"]}) + "\n"
                   + json.dumps({"id": "p3", "prompt": "task 3", "completions": ["old"]}) + "\n"
                   + '{"id": "p1", "prompt": "task 1", "compl')
    with FakeAPI("anthropic", fail_first=1, fail_status=529) as api:
        code = run_cli(monkeypatch, "data", "generate", "--prompts", str(prompts), "--backend", "anthropic",
                       "--model", "claude-3-5-sonnet", "--output", str(out), "--base-url", api.url, "--backoff", "0.01")
    assert code == 0
    rows = read_out(out)
    assert sorted(rows) == ["p0", "p1", "p2", "p3", "p4"]
    assert rows["p0"]["completions"] == ["old"] and rows["p3"]["completions"] == ["old"]
    assert rows["p1"]["completions"] == ["claude says task 1"]
    assert sorted(api.attempts) == ["task 1", "task 2", "task 4"] and set(api.attempts.values()) == {2}
    request = api.requests[-1]
    assert request["headers"]["x-api-key"] == API_KEY and request["headers"]["anthropic-version"] == "2023-06-01"
    assert request["body"]["messages"] == [{"role": "user", "content": request["body"]["messages"][0]["content"]}]
    assert request["body"]["max_tokens"] == 512
    assert "wrote 3, skipped 2 already done" in capsys.readouterr().out
    # A rerun with everything done sends nothing.
    with FakeAPI("anthropic") as api:
        assert run_cli(monkeypatch, "data", "generate", "--prompts", str(prompts), "--backend", "anthropic",
                       "--model", "m", "--output", str(out), "--base-url", api.url) == 0
        assert api.requests == []


def test_api_key_never_reaches_logs_or_errors(tmp_path, monkeypatch, capsys, caplog):
    monkeypatch.setenv("ANTHROPIC_API_KEY", API_KEY + "-wrong")
    caplog.set_level(logging.DEBUG)
    out = tmp_path / "out.jsonl"
    with FakeAPI("anthropic") as api:
        code = run_cli(monkeypatch, "--log-level", "DEBUG", "data", "generate", "--prompts",
                       str(prompts_file(tmp_path, 2)), "--backend", "anthropic", "--model", "m",
                       "--output", str(out), "--base-url", api.url, "--concurrency", "1")
    captured = capsys.readouterr()
    assert code == 2
    assert "HTTP 401" in captured.err and "authentication_error" in captured.err and "[REDACTED]" in captured.err
    for text in (captured.out, captured.err, caplog.text, out.read_text()):
        assert "SECRET" not in text


def test_retries_exhausted_then_rerun_fills_gaps(tmp_path, monkeypatch, capsys, caplog):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai-SECRET")
    out = tmp_path / "out.jsonl"
    prompts = prompts_file(tmp_path, 3)
    args = ["data", "generate", "--prompts", str(prompts), "--backend", "openai", "--endpoint", "chat",
            "--model", "gpt-test", "--output", str(out), "--retries", "1", "--backoff", "0.01", "--n", "3"]
    with FakeAPI("openai", fail_first=2, fail_status=503) as api:
        assert run_cli(monkeypatch, *args, "--base-url", api.url + "/v1") == 1
        assert "failed ids (rerun to retry them)" in capsys.readouterr().err
        assert not out.exists() or out.read_text() == ""
        assert run_cli(monkeypatch, *args, "--base-url", api.url + "/v1") == 0
    rows = read_out(out)
    assert rows["p2"]["completions"] == [f"gpt says task 2 #{i}" for i in range(3)]
    assert api.requests[-1]["headers"]["authorization"] == "Bearer sk-openai-SECRET"
    assert api.requests[-1]["body"]["messages"][0]["role"] == "user"
    assert "SECRET" not in caplog.text


def test_connection_refused_is_retried_then_reported(tmp_path):
    backend = make_backend("ollama", BackendOptions(model="m", base_url="http://127.0.0.1:9", retries=2,
                                                    backoff_s=0.01, timeout_s=2))
    from halo_ray.data.generate import run_generation

    summary = run_generation(read_prompts(prompts_file(tmp_path, 2)), backend, tmp_path / "o.jsonl")
    assert sorted(summary.failed) == ["p0", "p1"] and summary.written == 0


@pytest.mark.parametrize("name", BACKENDS.names())
def test_every_registered_backend_builds(name, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "k")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "k")
    backend = make_backend(name, BackendOptions(model="m"))
    assert backend.name == name and backend.opts.model == "m"


def test_backend_config_errors(monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ConfigError, match="ANTHROPIC_API_KEY"):
        make_backend("anthropic", BackendOptions(model="m"))
    with pytest.raises(ConfigError, match="OPENAI_API_KEY"):
        make_backend("openai", BackendOptions(model="m"))
    make_backend("openai", BackendOptions(model="m", base_url="http://127.0.0.1:8000/v1"))  # local: no key needed
    with pytest.raises(ConfigError, match="--base-url"):
        make_backend("vllm", BackendOptions(model="m", base_url="http://x"))
    with pytest.raises(ConfigError, match="unknown generation backend .olama.*did you mean .ollama."):
        make_backend("olama", BackendOptions(model="m"))


def test_read_prompts_formats(tmp_path):
    txt = tmp_path / "p.txt"
    txt.write_text("first prompt\n\nsecond prompt\n")
    assert read_prompts(txt) == [{"id": "line1", "prompt": "first prompt"}, {"id": "line3", "prompt": "second prompt"}]
    problems = tmp_path / "problems.jsonl"
    problems.write_text(json.dumps({"id": "HumanEval/0", "prompt": "def f():", "tests": "x"}) + "\n"
                        + json.dumps({"prompt_id": 7, "prompt": "q"}) + "\n")
    assert read_prompts(problems) == [{"id": "HumanEval/0", "prompt": "def f():"}, {"id": "7", "prompt": "q"}]


def test_finished_ids_keeps_a_complete_unterminated_line(tmp_path):
    out = tmp_path / "o.jsonl"
    out.write_text('{"id": "a"}\n{"id": "b"}')
    assert finished_ids(out) == {"a", "b"}
    assert out.read_text() == '{"id": "a"}\n{"id": "b"}\n'
