"""RolloutEngine: a vLLM engine that samples completions into Arrow batches and swaps weights in place.

Plain Python, no Ray: ``actors/rollout.py`` wraps it. Generation drives vLLM's engine one step at a
time under a lock, so a weight update from another thread waits for the current step, swaps the
weights (full state dict or LoRA adapter), and the requests in flight continue: paused, not lost.
Full weights arrive either as a state dict (by Ray object ref) or over a collective through vLLM's
weight-transfer API (``init_weight_transfer`` once, then ``receive_weights``; ``halo_ray.weight_transfer``).
Each sample records the policy version under which its request was admitted.
Colocated with a learner rank (``cluster.colocate``), the engine sleeps while the learner steps
(``sleep``/``wake_up``: vLLM's sleep level 1 frees its GPU memory; requests in flight are kept and go on
after the wake, recomputed).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from halo_ray.errors import ModelError
from halo_ray.placement import engine_backend
from halo_ray.samples import ROLLOUT_SCHEMA
from halo_ray.sections import ModelConfig, RolloutConfig
from halo_ray.timing import BusyClock, StepLock

log = logging.getLogger(__name__)


def engine_env(rollout: RolloutConfig) -> dict[str, str]:
    """Environment a vLLM engine needs on this platform (DESIGN.md, platform facts)."""
    env = {"VLLM_ENABLE_V1_MULTIPROCESSING": "0", "TOKENIZERS_PARALLELISM": "false"}
    if rollout.num_gpus == 0:
        env["VLLM_CPU_KVCACHE_SPACE"] = str(rollout.kv_cache_gib)
    return env


def engine_kwargs(model: ModelConfig, rollout: RolloutConfig, sleep_mode: bool = False) -> dict[str, Any]:
    """Keyword arguments of ``vllm.LLM`` for an engine (also what ``benchmarks/rollout.py`` gives bare vLLM);
    ``sleep_mode``: the engine will sleep beside a learner rank (vLLM frees GPU memory only when built
    for it; on CPU it has no such mode and a sleep only pauses the scheduler)."""
    kwargs: dict[str, Any] = dict(
        model=model.path,
        dtype="float32" if model.dtype == "auto" and rollout.num_gpus == 0 else model.dtype,
        max_model_len=model.max_model_len,
        seed=rollout.seed,
        enforce_eager=rollout.num_gpus == 0,
        max_num_seqs=rollout.max_num_seqs,
        enable_prefix_caching=rollout.enable_prefix_caching,
        logprobs_mode="processed_logprobs",
    )
    if rollout.num_gpus > 0:
        kwargs["gpu_memory_utilization"] = rollout.gpu_memory_utilization
        if sleep_mode:
            kwargs["enable_sleep_mode"] = True
    else:
        # A prefill split across steps rewinds the per-request (seeded) generator, which CPU
        # generators cannot do ("CPU Generator does not use offset"): keep prefills whole.
        kwargs["enable_chunked_prefill"] = False
    if model.lora.enabled:
        kwargs.update(enable_lora=True, max_lora_rank=model.lora.r, max_loras=2)
    if rollout.tensor_parallel_size > 1:
        # The actor holds all the GPUs of its bundle; its shards run as its own subprocesses (vLLM's "mp"
        # executor), which see those GPUs. vLLM's Ray executor would ask the placement group for more.
        kwargs.update(tensor_parallel_size=rollout.tensor_parallel_size, distributed_executor_backend="mp")
    backend = engine_backend(rollout.weight_transfer, rollout.num_gpus, model.lora.enabled, colocated=sleep_mode)
    if backend is not None:
        kwargs["weight_transfer_config"] = {"backend": backend}
    return kwargs


def prompt_seed(seed: int, prompt_id: str) -> int:
    """A per-prompt sampling seed: a prompt's samples do not depend on what else is in the batch."""
    digest = hashlib.blake2b(f"{seed}:{prompt_id}".encode(), digest_size=4).digest()
    return int.from_bytes(digest, "little") & 0x7FFFFFFF


def check_model_dir(path: str) -> Path:
    p = Path(path)
    if not (p / "config.json").is_file():
        raise ModelError(f"{path}: not a Hugging Face model directory (no config.json); "
                         "build one with `halo-ray model init-tiny --output DIR`")
    return p


class EngineRestartedError(RuntimeError):
    """A rollout engine that Ray restarted refuses work until the driver has brought it to the run's
    latest weights (it came back with the initial ones); the request is sent again after that."""


@dataclass
class LoraAdapter:
    """A PEFT LoRA adapter in memory: its ``adapter_config.json`` dict and tensors by name."""

    config: dict
    tensors: dict[str, Any]

    @classmethod
    def from_peft(cls, module, base_model_path: str) -> "LoraAdapter":
        """The adapter of a PEFT model (its ``default`` adapter), as CPU tensor copies."""
        import json

        from peft import get_peft_model_state_dict

        cfg = module.peft_config["default"].to_dict()
        cfg = {k: sorted(v) if isinstance(v, set) else v for k, v in cfg.items()}
        cfg["base_model_name_or_path"] = base_model_path
        tensors = {k: v.detach().to("cpu", copy=True) for k, v in get_peft_model_state_dict(module).items()}
        return cls(config=json.loads(json.dumps(cfg, default=str)), tensors=tensors)

    def save(self, folder: Path) -> Path:
        import json

        from safetensors.torch import save_file

        folder.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in self.tensors.items()}, str(folder / "adapter_model.safetensors"))
        (folder / "adapter_config.json").write_text(json.dumps(self.config))
        return folder


class RolloutEngine:
    """One vLLM engine.

    Args:
        model: the model section (``path`` must be a local HF directory).
        rollout: sampling defaults and engine sizing.
        index: this engine's number within the run (recorded in each sample).
        sleep_mode: the engine shares its GPU with a learner rank and sleeps while it steps (``sleep``).
    """

    def __init__(self, model: ModelConfig, rollout: RolloutConfig, index: int = 0, sleep_mode: bool = False):
        check_model_dir(model.path)
        for key, value in engine_env(rollout).items():
            os.environ.setdefault(key, value)
        from vllm import LLM

        self.model, self.rollout, self.index = model, rollout, index
        self.version = 0
        self._in_group = False  # joined a weight-transfer group (init_weight_transfer)
        self._lock = StepLock()  # steps of every generate call, and weight updates ahead of them
        self._asleep: set[str] = set()  # what sleeps ("weights", "kv_cache"): no step runs while any does
        self._slept_at = (0.0, 0)  # (perf_counter, steps) when the engine fell asleep
        self.steps = 0  # engine steps run (counted under the lock)
        self.sleeps, self.asleep_s, self.steps_while_asleep = 0, 0.0, 0
        self._finished: dict[str, Any] = {}
        self._lora_request = None
        # Adapter folders stay until no unfinished request was admitted under them (vLLM reads a
        # folder when it first schedules, or reloads after eviction, a request that names it).
        self._request_version: dict[str, int] = {}  # unfinished request -> adapter version it names
        self._adapter_users: dict[int, int] = {}  # adapter version -> unfinished requests
        self._lora_dir = Path(tempfile.mkdtemp(prefix="halo-ray-lora-")) if model.lora.enabled else None
        kwargs = engine_kwargs(model, rollout, sleep_mode)
        if kwargs.get("weight_transfer_config", {}).get("backend") == "gloo":
            from halo_ray.weight_transfer import register_gloo_engine

            register_gloo_engine()  # the engine's worker runs in this process (no multiprocessing)
        started = time.perf_counter()
        try:
            self.llm = LLM(**kwargs)
        except (OSError, ValueError) as exc:
            raise ModelError(f"{model.path}: vLLM could not load the model: {exc}") from exc
        # the Rust tokenizer, for completion_text; None (a slow tokenizer): vLLM detokenises every request
        self.tokenizer = getattr(self.llm.get_tokenizer(), "_tokenizer", None)
        self.busy = BusyClock()
        self.tokens_generated = 0
        self._warm_up()
        self.load_s = time.perf_counter() - started

    def _warm_up(self) -> None:
        """A small request through the sampling path every call takes (seeded, log-probs, several sequences,
        a few decode steps, the Arrow table): the first request pays lazy set-up (1.7-1.8 s on CPU whatever its
        size; later calls of 32 samples on the tiny model take 0.08 s), which belongs to the engine's start,
        not to the first rollout step. A warm-up through ``LLM.generate`` alone left 0.3 s of it."""
        self._generate([{"prompt_id": "warm-up", "prompt": "warm-up"}], {"n": 8, "max_tokens": 4})
        self.llm.reset_prefix_cache()
        self.steps = self.tokens_generated = 0

    def sampling_params(self, prompt_id: str, **overrides):
        """SamplingParams for one prompt: config defaults, then overrides, seeded per prompt."""
        from vllm import SamplingParams

        r = self.rollout
        opts = dict(n=r.samples_per_prompt, temperature=r.temperature, top_p=r.top_p,
                    max_tokens=r.max_new_tokens, stop=list(r.stop) or None, seed=r.seed)
        opts.update({k: v for k, v in overrides.items() if v is not None})
        seed = opts.pop("seed")
        # vLLM detokenises every request at every step (and the sampled token of every log-prob entry),
        # which only its stop-string matching needs: without stop strings the text is decoded once, at
        # the end (``completion_text``): 15% less engine CPU per call on the tiny model (198 -> 167 ms).
        return SamplingParams(seed=prompt_seed(seed, prompt_id), logprobs=0,
                              detokenize=bool(opts.get("stop")) or self.tokenizer is None, **opts)

    def completion_text(self, params, output, completion) -> str:
        """The completion's text: vLLM's where it detokenised, else the same text decoded at the end.

        As vLLM's fast incremental detokeniser: a ``tokenizers`` decode stream primed with the prompt's
        tokens, special tokens skipped, bytes of an unfinished UTF-8 character at the end left out (a
        plain ``decode`` would give U+FFFD there), and a stream that meets an invalid prefix restarted.
        """
        if params.detokenize:
            return completion.text
        from tokenizers.decoders import DecodeStream

        stream = DecodeStream(ids=list(output.prompt_token_ids or []), skip_special_tokens=True)
        pieces = []
        for token in completion.token_ids:
            try:
                piece = stream.step(self.tokenizer, token)
            except Exception:  # tokenizers' "Invalid prefix": start a stream without the context
                stream = DecodeStream(skip_special_tokens=True)
                piece = stream.step(self.tokenizer, token)
            pieces.append(piece or "")
        return "".join(pieces)

    def generate(self, prompts: list[dict], **overrides) -> pa.Table:
        """Sample completions for ``prompts`` (dicts with ``prompt_id`` and ``prompt``).

        Args:
            prompts: the batch; all samples of a prompt come from this engine.
            overrides: sampling settings for this call (``n``, ``temperature``, ``top_p``,
                ``max_tokens``, ``seed``, ``stop``); None keeps the config's value.
        Returns:
            An Arrow table with ``ROLLOUT_SCHEMA``, one row per sample.
        """
        with self.busy.active():
            return self._generate(prompts, overrides)

    def _generate(self, prompts: list[dict], overrides: dict) -> pa.Table:
        started = time.perf_counter()
        by_request: dict[str, tuple[dict, int, Any]] = {}
        with self._lock.step():
            for p in prompts:
                # ``seed_key`` lets the stream give a prompt visited again (a later epoch) new samples.
                params = self.sampling_params(str(p.get("seed_key", p["prompt_id"])), **overrides)
                (rid,) = self.llm.enqueue([p["prompt"]], params, lora_request=self._lora_request, use_tqdm=False)
                # enqueue returns "<external id>-<suffix>"; outputs carry the external id.
                rid = rid.split("-", 1)[0]
                by_request[rid] = (p, self.version, params)
                if self._lora_request is not None:
                    version = self._lora_request.lora_int_id
                    self._request_version[rid] = version
                    self._adapter_users[version] = self._adapter_users.get(version, 0) + 1
        engine = self.llm.llm_engine
        while not all(rid in self._finished for rid in by_request):
            with self._lock.step():  # a weight update waits for this step, then the loop resumes
                # Outputs of other threads' requests are filed for them: calls may overlap.
                self.steps += 1
                for out in engine.step():
                    if out.finished:
                        self._finished[out.request_id] = (out, self.version)
                        self._release_adapter(self._request_version.pop(out.request_id, None))
        finished = [self._finished.pop(rid) for rid in by_request]
        elapsed = time.perf_counter() - started
        rows = []
        for out, last_version in sorted(finished, key=lambda f: int(f[0].request_id)):
            prompt, version, params = by_request[out.request_id]
            for completion in out.outputs:
                ids = list(completion.token_ids)
                lps = [float(step[tok].logprob) for step, tok in zip(completion.logprobs or [], ids)]
                self.tokens_generated += len(ids)
                rows.append(dict(
                    prompt_id=str(prompt["prompt_id"]), sample_index=completion.index, prompt=prompt["prompt"],
                    completion=self.completion_text(params, out, completion), prompt_token_ids=list(out.prompt_token_ids or []),
                    token_ids=ids, logprobs=lps, policy_version=version, policy_version_last=last_version,
                    finish_reason="length" if completion.finish_reason == "length" else "stop",
                    engine=self.index, generate_s=elapsed,
                ))
        return pa.Table.from_pylist(rows, schema=ROLLOUT_SCHEMA)

    def update_weights(self, weights: dict[str, Any] | LoraAdapter, version: int) -> int:
        """Swap in new weights between engine steps; requests in flight continue.

        Args:
            weights: a full state dict (HF parameter names to tensors) or a ``LoraAdapter``.
            version: the policy version these weights are; must increase.
        Returns:
            The new version.
        """
        self._check_newer(version)
        with self._lock.update():
            self._wake_weights()
            if isinstance(weights, LoraAdapter):
                from vllm.lora.request import LoRARequest

                if self._lora_dir is None:
                    raise ValueError("a LoRA adapter was sent to an engine started without model.lora.enabled")
                folder = weights.save(self._lora_dir / f"v{version}")
                old = self._lora_request
                self._lora_request = LoRARequest(f"v{version}", version, str(folder))
                if old is not None and not self._adapter_users.get(old.lora_int_id):
                    shutil.rmtree(old.lora_path, ignore_errors=True)
            else:
                self.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": iter(weights.items())})
            self._swapped(version)
        return version

    def init_weight_transfer(self, init_info: dict) -> None:
        """Join the weight-transfer group of a collective (``halo_ray.weight_transfer.init_info``); blocks
        until the sender and every other engine have joined. A group joined before is left first."""
        with self._lock.update():
            if self._in_group:
                self.llm.shutdown_weight_transfer_engine()
            self.llm.init_weight_transfer_engine({"init_info": init_info})
            self._in_group = True

    def receive_weights(self, update_info: dict, version: int) -> int:
        """Receive full weights from the group's sender, between engine steps; requests in flight continue.

        Args:
            update_info: the parameters' names, dtype names and shapes, in the order they are sent
                (``halo_ray.weight_transfer.update_info``).
            version: the policy version these weights are; must increase.
        Returns:
            The new version.
        """
        self._check_newer(version)
        with self._lock.update():
            self._wake_weights()
            self.llm.start_weight_update()
            self.llm.update_weights({"update_info": update_info})
            self.llm.finish_weight_update()
            self._swapped(version)
        return version

    def close_weight_transfer(self) -> None:
        """Leave the weight-transfer group (it is formed again, with every engine, before the next collective)."""
        with self._lock.update():
            if self._in_group:
                self.llm.shutdown_weight_transfer_engine()
                self._in_group = False

    def sleep(self) -> None:
        """Stop sampling and give the GPU to the learner: vLLM's sleep level 1 (weights copied to host
        memory, KV cache dropped) once the current step ends. Requests in flight are kept (vLLM's ``keep``
        pause) and go on after ``wake_up``, their KV recomputed; new ones queue. On CPU vLLM has no sleep
        mode: only the scheduler pauses, and the engine keeps its memory."""
        with self._lock.update():
            if self._asleep:
                return
            self.llm.sleep(level=1, mode="keep")
            self._asleep = {"weights", "kv_cache"}
            self._lock.pause()  # set while holding the lock: no step starts between the sleep and the pause
            self._slept_at = (time.perf_counter(), self.steps)
            self.sleeps += 1

    def wake_up(self) -> None:
        """Take the GPU back and sample again (weights first, if an update has not brought them already)."""
        with self._lock.update():
            if not self._asleep:
                return
            self._wake_weights()
            self.llm.wake_up(["kv_cache"])
            self._asleep.clear()
            since, steps = self._slept_at
            self.asleep_s += time.perf_counter() - since
            self.steps_while_asleep += self.steps - steps
            self._lock.resume()

    def _wake_weights(self) -> None:
        """Weights back on the GPU (before an update writes them, or the wake); the scheduler stays paused."""
        if "weights" in self._asleep:
            self.llm.wake_up(["weights"])
            self._asleep.discard("weights")

    def _check_newer(self, version: int) -> None:
        if version <= self.version:
            raise ValueError(f"weights version {version} is not newer than the engine's {self.version}")

    def _swapped(self, version: int) -> None:
        """New weights are in: cached prefixes were computed with the old ones."""
        self.llm.reset_prefix_cache()
        self.version = version

    def _release_adapter(self, version: int | None) -> None:
        """A request admitted under adapter ``version`` finished: remove the folder once nothing needs it."""
        if version is None:
            return
        left = self._adapter_users[version] - 1
        if left:
            self._adapter_users[version] = left
            return
        del self._adapter_users[version]
        current = self._lora_request.lora_int_id if self._lora_request is not None else None
        if version != current:
            shutil.rmtree(self._lora_dir / f"v{version}", ignore_errors=True)

    def stats(self) -> dict:
        folders = sorted(p.name for p in self._lora_dir.iterdir()) if self._lora_dir is not None else []
        return dict(engine=self.index, version=self.version, tokens=self.tokens_generated,
                    busy_s=self.busy.busy_s(), load_s=self.load_s, adapter_folders=folders, asleep=bool(self._asleep),
                    steps=self.steps,
                    sleeps=self.sleeps, asleep_s=self.asleep_s, steps_while_asleep=self.steps_while_asleep)

    def close(self) -> None:
        if self._lora_dir is not None:
            shutil.rmtree(self._lora_dir, ignore_errors=True)
