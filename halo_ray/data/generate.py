"""LLM-written data (seed 001 step 1, seed 002 stage 1): prompts in, completions out, resumable.

Backends come from one registry: ``vllm`` (our rollout actors through ``halo_ray.driver``),
``openai`` (any OpenAI-compatible server), ``ollama`` and ``anthropic``, the last three over their
HTTP APIs. Requests run a few at a time, retry with exponential back-off on 429, 5xx and connection
errors, and each finished prompt is appended to the output as one whole line, so rerunning skips the
ids already written. API keys are read from the environment and are redacted from every error.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import random
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from halo_ray.errors import ConfigError, DataError, HaloError
from halo_ray.io import append_jsonl, check_table_suffix, read_jsonl, read_records
from halo_ray.registry import Registry

log = logging.getLogger(__name__)


class BackendError(HaloError):
    """A generation backend refused a request for a reason retrying cannot fix (bad key, bad model)."""


class RetryableError(Exception):
    """A request failed in a way worth retrying (429, 5xx, connection errors)."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(frozen=True)
class BackendOptions:
    """Settings every backend receives.

    Attributes:
        model: model name (or a model directory for ``vllm``).
        base_url: server address; None uses the backend's default.
        max_tokens: longest completion in tokens.
        temperature: sampling temperature (seed 002: 0.8).
        top_p: nucleus sampling threshold (seed 002: 0.95; not sent to ``anthropic``).
        timeout_s: per-request timeout.
        retries: retries after the first attempt of a request.
        backoff_s: first back-off delay; it doubles on each retry (capped at 60 s).
        endpoint: ``openai`` only: ``completions`` (``/v1/completions``) or ``chat`` (``/v1/chat/completions``).
        generate_fn: ``vllm`` only: the driver's ``generate(GenerateConfig, prompts) -> Arrow table``
            (injected by the caller, so this component never imports Ray).
    """

    model: str
    base_url: str | None = None
    max_tokens: int = 512
    temperature: float = 0.8
    top_p: float = 0.95
    timeout_s: float = 120.0
    retries: int = 5
    backoff_s: float = 1.0
    endpoint: str = "completions"
    generate_fn: Callable | None = None


BACKENDS: Registry[type] = Registry("generation backend")


def make_backend(name: str, opts: BackendOptions):
    """Build the registered backend ``name``; raises ConfigError listing the known ones."""
    return BACKENDS.get(name, "--backend")(opts)


def redact(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[REDACTED]")
    return text


def post_json(url: str, body: dict, headers: dict[str, str], timeout: float, secrets: list[str]) -> dict:
    """POST JSON and return the decoded JSON answer.

    Raises:
        RetryableError: on 408/409/425/429, 5xx, connection errors, timeouts, unreadable bodies.
        BackendError: on other HTTP errors (with the server's message, secrets redacted).
    """
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"content-type": "application/json", **headers})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            raw = response.read()
    except urllib.error.HTTPError as exc:
        detail = redact(exc.read()[:500].decode("utf-8", errors="replace").strip(), secrets)
        message = f"HTTP {exc.code} from {url}: {detail}"
        if exc.code in (408, 409, 425, 429) or exc.code >= 500:
            retry_after = exc.headers.get("retry-after")
            try:
                delay = float(retry_after) if retry_after else None
            except ValueError:
                delay = None
            raise RetryableError(message, delay) from None
        raise BackendError(message) from None
    except (urllib.error.URLError, http.client.HTTPException, ConnectionError, socket.timeout, TimeoutError) as exc:
        reason = getattr(exc, "reason", exc)
        raise RetryableError(f"cannot reach {url}: {redact(str(reason), secrets)}") from None
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        raise RetryableError(f"answer from {url} is not JSON: {redact(raw[:200].decode('utf-8', 'replace'), secrets)}") from None


def with_retries(call: Callable[[], list[str]], retries: int, backoff_s: float, what: str) -> list[str]:
    """Run ``call``, retrying RetryableError with exponential back-off (and the server's Retry-After)."""
    for attempt in range(retries + 1):
        try:
            return call()
        except RetryableError as exc:
            if attempt == retries:
                raise
            delay = min(60.0, backoff_s * 2 ** attempt) * (1 + 0.25 * random.random())
            if exc.retry_after is not None:
                delay = max(delay, min(exc.retry_after, 60.0))
            log.warning("%s: %s; retry %d/%d in %.1f s", what, exc, attempt + 1, retries, delay)
            time.sleep(delay)
    raise AssertionError("unreachable")


class HTTPBackend:
    """Shared request plumbing; subclasses build one request and parse its answer."""

    default_url = ""
    key_env = ""
    key_required = False
    batch_size = 0  # per-prompt requests, run concurrently by the runner

    name = ""

    def __init__(self, opts: BackendOptions):
        self.opts = opts
        self.base_url = (opts.base_url or self.default_url).rstrip("/")
        self.api_key = os.environ.get(self.key_env, "") if self.key_env else ""
        if self.key_required and not self.api_key:
            raise ConfigError(f"--backend {self.name}: set the API key in the environment variable {self.key_env}")

    def post(self, path: str, body: dict, headers: dict[str, str] | None = None) -> dict:
        return post_json(self.base_url + path, body, headers or {}, self.opts.timeout_s, [self.api_key])

    def complete(self, prompt: str, n: int) -> list[str]:
        """Return ``n`` completions of ``prompt``, retrying transient failures."""
        return with_retries(lambda: self.request(prompt, n), self.opts.retries, self.opts.backoff_s,
                            f"{self.name} {self.base_url}")

    def request(self, prompt: str, n: int) -> list[str]:
        raise NotImplementedError


def _field(answer: dict, path: str, where: str):
    value = answer
    for key in path.split("."):
        if not isinstance(value, dict) or key not in value:
            raise RetryableError(f"{where}: answer lacks {path!r}: {json.dumps(answer)[:200]}")
        value = value[key]
    return value


@BACKENDS.register("openai")
class OpenAIBackend(HTTPBackend):
    """Any OpenAI-compatible server (OpenAI, vLLM, llama.cpp...): /v1/completions or /v1/chat/completions."""

    name = "openai"
    default_url = "https://api.openai.com/v1"
    key_env = "OPENAI_API_KEY"

    def __init__(self, opts: BackendOptions):
        super().__init__(opts)
        if opts.endpoint not in ("completions", "chat"):
            raise ConfigError(f"--endpoint: expected completions or chat, got {opts.endpoint!r}")
        if not self.api_key and urllib.parse.urlparse(self.base_url).hostname == "api.openai.com":
            raise ConfigError("--backend openai: set the API key in the environment variable OPENAI_API_KEY "
                              "(or give --base-url of a server that needs none)")

    def request(self, prompt: str, n: int) -> list[str]:
        headers = {"authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        body = {"model": self.opts.model, "n": n, "temperature": self.opts.temperature, "top_p": self.opts.top_p}
        if self.opts.endpoint == "chat":
            body.update(messages=[{"role": "user", "content": prompt}], max_completion_tokens=self.opts.max_tokens)
            answer = self.post("/chat/completions", body, headers)
            choices = _field(answer, "choices", self.name)
            return [_field(c, "message.content", self.name) or "" for c in sorted(choices, key=lambda c: c.get("index", 0))]
        body.update(prompt=prompt, max_tokens=self.opts.max_tokens)
        answer = self.post("/completions", body, headers)
        choices = _field(answer, "choices", self.name)
        return [_field(c, "text", self.name) for c in sorted(choices, key=lambda c: c.get("index", 0))]


@BACKENDS.register("ollama")
class OllamaBackend(HTTPBackend):
    """A local Ollama server: /api/generate, one request per sample."""

    name = "ollama"
    default_url = "http://localhost:11434"

    def request(self, prompt: str, n: int) -> list[str]:
        body = {"model": self.opts.model, "prompt": prompt, "stream": False,
                "options": {"temperature": self.opts.temperature, "top_p": self.opts.top_p,
                            "num_predict": self.opts.max_tokens}}
        return [_field(self.post("/api/generate", body), "response", self.name) for _ in range(n)]


@BACKENDS.register("anthropic")
class AnthropicBackend(HTTPBackend):
    """Anthropic's Messages API (/v1/messages), one request per sample; key from ANTHROPIC_API_KEY."""

    name = "anthropic"
    default_url = "https://api.anthropic.com"
    key_env = "ANTHROPIC_API_KEY"
    key_required = True
    version = "2023-06-01"

    def request(self, prompt: str, n: int) -> list[str]:
        headers = {"x-api-key": self.api_key, "anthropic-version": self.version}
        body = {"model": self.opts.model, "max_tokens": self.opts.max_tokens, "temperature": self.opts.temperature,
                "messages": [{"role": "user", "content": prompt}]}
        texts = []
        for _ in range(n):
            blocks = _field(self.post("/v1/messages", body, headers), "content", self.name)
            texts.append("".join(b.get("text", "") for b in blocks if b.get("type") == "text"))
        return texts


@BACKENDS.register("vllm")
class VLLMBackend:
    """Our rollout actors (vLLM engines on Ray) through halo_ray.driver.generate; --model is a model directory."""

    name = "vllm"
    batch_size = 256  # prompts per driver call: each call's results are written before the next starts

    def __init__(self, opts: BackendOptions):
        if opts.base_url:
            raise ConfigError("--backend vllm runs our own engines; --base-url is for the HTTP backends "
                              "(use --backend openai for a running vLLM server)")
        self.opts = opts

    def complete_batch(self, items: list[dict], n: int) -> dict[str, list[str]]:
        """Return ``{id: [n completions]}`` for ``items`` (``{"id", "prompt"}``)."""
        from halo_ray.sections import GenerateConfig, ModelConfig, RolloutConfig

        if self.opts.generate_fn is None:
            raise ConfigError("the vllm backend needs the driver's generate function (BackendOptions.generate_fn)")
        generate = self.opts.generate_fn

        config = GenerateConfig(
            model=ModelConfig(path=self.opts.model),
            rollout=RolloutConfig(samples_per_prompt=n, temperature=self.opts.temperature, top_p=self.opts.top_p,
                                  max_new_tokens=self.opts.max_tokens))
        table = generate(config, [{"prompt_id": item["id"], "prompt": item["prompt"]} for item in items])
        grouped: dict[str, list[tuple[int, str]]] = {}
        for row in table.select(["prompt_id", "sample_index", "completion"]).to_pylist():
            grouped.setdefault(row["prompt_id"], []).append((row["sample_index"], row["completion"]))
        return {pid: [text for _, text in sorted(rows)] for pid, rows in grouped.items()}


def read_prompts(path: str | os.PathLike, keep: tuple[str, ...] = ()) -> list[dict]:
    """Read prompts as ``{"id", "prompt"}`` (plus the ``keep`` fields a record has).

    ``.txt``: one prompt per non-blank line, id ``line<N>``. A problems SPEC (``demo#heldout``,
    ``humaneval#all``, ``FILE.jsonl#test``): its problems. ``.jsonl``/``.parquet``: records with
    ``prompt`` and ``id`` (or ``prompt_id``; ``line<N>`` when neither), e.g. a problems file.
    Every bad record is reported as ``FILE:LINE``.
    """
    from halo_ray.data.sources import is_spec, problems_from_spec

    p = Path(path)
    if p.suffix.lower() == ".txt":
        if not p.is_file():
            raise DataError(f"{p}: file not found")
        lines = p.read_text(encoding="utf-8").splitlines()
        return [{"id": f"line{n}", "prompt": text} for n, text in enumerate(lines, start=1) if text.strip()]
    if is_spec(str(path)):
        return [{"id": q.id, "prompt": q.prompt, **{k: getattr(q, k) for k in keep if getattr(q, k, None) is not None}}
                for q in problems_from_spec(str(path))]
    if p.suffix.lower() not in (".jsonl", ".parquet"):
        raise DataError(f"{p}: unsupported prompts extension {p.suffix!r}; use .txt, .jsonl, .parquet or a "
                        "problems SPEC (demo#heldout, humaneval#all)")
    numbered = read_jsonl(p) if p.suffix.lower() == ".jsonl" else enumerate(read_records(p), start=1)
    prompts, seen, errors = [], set(), []
    for line, record in numbered:
        pid = record.get("id", record.get("prompt_id", f"line{line}"))
        if isinstance(pid, int) and not isinstance(pid, bool):
            pid = str(pid)
        if not isinstance(pid, str) or not pid:
            errors.append(f"{p}:{line}: needs a string 'id' (or 'prompt_id')")
        elif not isinstance(record.get("prompt"), str):
            errors.append(f"{p}:{line}: needs a string 'prompt'")
        elif pid in seen:
            errors.append(f"{p}:{line}: duplicate id {pid!r}")
        else:
            seen.add(pid)
            prompts.append({"id": pid, "prompt": record["prompt"],
                            **{k: record[k] for k in keep if record.get(k) is not None}})
    if errors:
        raise DataError("\n".join(errors[:20]))
    return prompts


def finished_ids(output: str | os.PathLike) -> set[str]:
    """Ids already in an output file; a torn last line (a killed run) is cut off first."""
    p = Path(output)
    if not p.exists():
        return set()
    data = p.read_bytes()
    if data and not data.endswith(b"\n"):
        tail = data[data.rfind(b"\n") + 1:]
        try:
            json.loads(tail)
            complete = True
        except json.JSONDecodeError:
            complete = False
        with p.open("ab" if complete else "r+b") as fh:
            if complete:
                fh.write(b"\n")
            else:
                log.warning("%s: dropping a torn last line (%d bytes) from an interrupted run", p, len(tail))
                fh.truncate(len(data) - len(tail))
    return {str(record.get("id")) for _, record in read_jsonl(p)}


@dataclass
class GenerateSummary:
    total: int
    skipped: int
    written: int = 0
    failed: list[str] = field(default_factory=list)
    seconds: float = 0.0


def run_generation(prompts: list[dict], backend, output: str | os.PathLike, n: int = 1, concurrency: int = 4,
                   on_result: Callable[[GenerateSummary], None] | None = None) -> GenerateSummary:
    """Generate ``n`` completions per prompt into a JSONL output, skipping ids already there.

    Each line: ``{"id", "prompt", "completions", "backend", "model", "seconds"}``. A prompt whose
    retries run out is logged and left out (a rerun tries it again); a non-retryable error stops
    the run (what was written stays).

    Args:
        prompts: ``{"id", "prompt"}`` records.
        backend: a registered backend instance.
        output: ``.jsonl`` file, appended to.
        n: completions per prompt.
        concurrency: requests in flight at once (HTTP backends).
        on_result: called with the running summary after each prompt is written or fails (progress).
    """
    if check_table_suffix(output, "output") != ".jsonl":
        raise DataError(f"{output}: generate writes JSONL (appended line by line, so a rerun resumes); use .jsonl")
    if n < 1 or concurrency < 1:
        raise ConfigError(f"--n and --concurrency must be at least 1, got {n} and {concurrency}")
    done = finished_ids(output)
    pending = [item for item in prompts if item["id"] not in done]
    summary = GenerateSummary(total=len(prompts), skipped=len(prompts) - len(pending))
    start = time.perf_counter()
    Path(output).parent.mkdir(parents=True, exist_ok=True)

    def write(fh, item, completions, seconds):
        append_jsonl(fh, {"id": item["id"], "prompt": item["prompt"], "completions": completions,
                          "backend": backend.name, "model": backend.opts.model, "seconds": round(seconds, 3)})
        summary.written += 1

    with open(output, "a", encoding="utf-8") as fh:
        if backend.batch_size:
            for i in range(0, len(pending), backend.batch_size):
                chunk = pending[i:i + backend.batch_size]
                t0 = time.perf_counter()
                results = backend.complete_batch(chunk, n)
                for item in chunk:
                    if item["id"] in results:
                        write(fh, item, results[item["id"]], time.perf_counter() - t0)
                    else:
                        summary.failed.append(item["id"])
                    if on_result:
                        on_result(summary)
        else:
            def timed(item):
                t0 = time.perf_counter()
                return backend.complete(item["prompt"], n), time.perf_counter() - t0

            pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="generate")
            try:
                futures = {pool.submit(timed, item): item for item in pending}
                for future in as_completed(futures):
                    item = futures[future]
                    try:
                        completions, seconds = future.result()
                    except RetryableError as exc:
                        log.error("%s: gave up after %d retries: %s", item["id"], backend.opts.retries, exc)
                        summary.failed.append(item["id"])
                    else:
                        write(fh, item, completions, seconds)
                    if on_result:
                        on_result(summary)
            finally:
                pool.shutdown(wait=True, cancel_futures=True)
    summary.seconds = time.perf_counter() - start
    return summary
