"""Config sections, one frozen dataclass each, and the job configs composed from them.

YAML files in ``configs/`` mirror these classes one to one; every field's doc feeds ``--help``
(``halo-ray config keys JOB``). Components receive their own section, never the whole job config.
"""

from __future__ import annotations

from dataclasses import dataclass

from halo_ray.config import opt
from halo_ray.verifiers import VERIFIERS


@dataclass(frozen=True)
class LoraConfig:
    enabled: bool = opt(False, "train a PEFT LoRA adapter instead of all weights; weight sync ships only the adapter")
    r: int = opt(16, "LoRA rank")
    alpha: int = opt(32, "LoRA scaling alpha")
    dropout: float = opt(0.05, "LoRA dropout")
    target_modules: tuple[str, ...] = opt(("q_proj", "k_proj", "v_proj", "o_proj"), "module names that get adapters")

    def validate(self) -> list[str]:
        return [f"r must be positive, got {self.r}"] if self.r <= 0 else []


@dataclass(frozen=True)
class ModelConfig:
    path: str = opt("", "Hugging Face model directory (local); empty means the embedded tiny model")
    dtype: str = opt("auto", "weights dtype for rollout and learner", choices=("auto", "float32", "bfloat16", "float16"))
    max_model_len: int = opt(1024, "longest prompt + completion in tokens")
    lora: LoraConfig = opt(LoraConfig(), "PEFT LoRA settings")


@dataclass(frozen=True)
class RolloutConfig:
    num_engines: int = opt(1, "rollout actors, one vLLM engine each; all samples of a prompt go to one engine")
    samples_per_prompt: int = opt(8, "completions sampled per prompt (n)")
    temperature: float = opt(0.7, "sampling temperature; 0 is greedy")
    top_p: float = opt(1.0, "nucleus sampling threshold")
    max_new_tokens: int = opt(256, "longest completion in tokens")
    seed: int = opt(0, "sampling seed; a prompt's samples are reproducible given seed and prompt id")
    stop: tuple[str, ...] = opt((), "strings that end a completion (besides the EOS token)")
    num_gpus: float = opt(0.0, "GPUs per engine; 0 runs vLLM on CPU")
    num_cpus: float = opt(1.0, "CPUs Ray reserves per engine")
    kv_cache_gib: float = opt(1.0, "CPU KV cache per engine in GiB (VLLM_CPU_KVCACHE_SPACE); too large and Ray's memory monitor kills the actor")
    gpu_memory_utilization: float = opt(0.5, "fraction of GPU memory vLLM may take (GPU engines only)")
    max_num_seqs: int = opt(256, "sequences an engine decodes at once")
    enable_prefix_caching: bool = opt(True, "share KV cache across the n samples of a prompt")

    def validate(self) -> list[str]:
        errs = []
        if self.num_engines < 1:
            errs.append(f"num_engines must be at least 1, got {self.num_engines}")
        if self.samples_per_prompt < 1:
            errs.append(f"samples_per_prompt must be at least 1, got {self.samples_per_prompt}")
        if self.temperature < 0:
            errs.append(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            errs.append(f"top_p must be in (0, 1], got {self.top_p}")
        if self.max_new_tokens < 1:
            errs.append(f"max_new_tokens must be at least 1, got {self.max_new_tokens}")
        return errs


@dataclass(frozen=True)
class VerifierConfig:
    name: str = opt("auto", "verifier from the registry; auto picks one by each record's language", choices=VERIFIERS)
    workers: int = opt(0, "sandbox workers in all; 0 uses one per available CPU")
    timeout_s: float = opt(5.0, "wall-clock limit per program run (seed 002: 5 s)")
    memory_mb: int = opt(1024, "address-space limit per program in MiB")
    max_processes: int = opt(32, "process/thread cap per sandbox")
    max_output_bytes: int = opt(65536, "captured stdout/stderr per run; the rest is discarded")
    cache_size: int = opt(100_000, "results kept in the cache keyed by code, tests, verifier and limits")
    max_in_flight: int = opt(0, "batches a pool accepts before callers wait (back-pressure); 0 means 2 per worker")
    compile_timeout_s: float = opt(20.0, "wall-clock limit per compilation (C, C++, Rust, Go)")
    compile_memory_mb: int = opt(4096, "address-space limit per compiler process in MiB")
    scratch_mb: int = opt(256, "size of each sandbox's private scratch tmpfs (/scratch, /tmp) and largest file a program may write")
    extract_code: bool = opt(True, "take the program from markdown fences when the code has any")

    def validate(self) -> list[str]:
        errs = [f"{key} must be positive, got {getattr(self, key)}"
                for key in ("timeout_s", "memory_mb", "max_processes", "max_output_bytes", "compile_timeout_s",
                            "compile_memory_mb", "scratch_mb") if getattr(self, key) <= 0]
        errs += [f"{key} must be >= 0, got {getattr(self, key)}"
                 for key in ("workers", "cache_size", "max_in_flight") if getattr(self, key) < 0]
        return errs


@dataclass(frozen=True)
class ClusterConfig:
    address: str = opt("", "Ray address to join; empty uses RAY_ADDRESS, else starts a local session")
    num_cpus: int = opt(0, "CPUs of a local session; 0 means all")
    namespace: str = opt("halo-ray", "Ray namespace of the run's actors")


@dataclass(frozen=True)
class LoggingConfig:
    run_dir: str = opt("runs", "parent folder of run directories")
    name: str = opt("", "run name (runs/<name>/); empty derives one from the job and time")
    tensorboard: bool = opt(True, "also write TensorBoard event files")
    level: str = opt("INFO", "library log level", choices=("DEBUG", "INFO", "WARNING", "ERROR"))


@dataclass(frozen=True)
class BenchmarkConfig:
    problems: str = opt("", "problems file (JSONL or Parquet, read by halo_ray.data.read_problems)")
    ks: tuple[int, ...] = opt((1,), "k values of pass@k (seed 002: 1, 10); each must be at most rollout.samples_per_prompt")
    output: str = opt("results.json", "results JSON to write (pass@k, verdicts, compile rate, timing, per problem)")
    samples_file: str = opt("", "score the completions in this JSONL/Parquet file (prompt_id or id, completion) instead of generating")
    save_samples: str = opt("", "also write every scored sample (completion, verdict, reward) to this JSONL/Parquet file")

    def validate(self) -> list[str]:
        errs = []
        if not self.ks:
            errs.append("ks must list at least one k")
        if any(k < 1 for k in self.ks):
            errs.append(f"ks must be positive, got {list(self.ks)}")
        if len(set(self.ks)) != len(self.ks):
            errs.append(f"ks has duplicates: {list(self.ks)}")
        return errs


@dataclass(frozen=True)
class GenerateConfig:
    """``halo-ray generate``: sample completions for prompts."""

    model: ModelConfig = opt(ModelConfig(), "model to sample from")
    rollout: RolloutConfig = opt(RolloutConfig(), "sampling settings and engines")
    cluster: ClusterConfig = opt(ClusterConfig(), "Ray session")
    logging: LoggingConfig = opt(LoggingConfig(), "logging")


@dataclass(frozen=True)
class BenchmarkJobConfig:
    """``halo-ray benchmark run``: pass@k, verdict mix, compile rate and timing of a model on problems."""

    model: ModelConfig = opt(ModelConfig(), "model to evaluate")
    rollout: RolloutConfig = opt(RolloutConfig(), "sampling settings; samples_per_prompt is n of pass@k")
    verifier: VerifierConfig = opt(VerifierConfig(), "verifier that scores each completion")
    benchmark: BenchmarkConfig = opt(BenchmarkConfig(), "problems, k values and outputs")
    cluster: ClusterConfig = opt(ClusterConfig(), "Ray session")
    logging: LoggingConfig = opt(LoggingConfig(), "logging")

    def validate(self) -> list[str]:
        n = self.rollout.samples_per_prompt
        if not self.benchmark.samples_file and any(k > n for k in self.benchmark.ks):
            return [f"benchmark.ks {list(self.benchmark.ks)} has a k above rollout.samples_per_prompt={n}; "
                    f"pass@k needs at least k samples per problem: raise samples_per_prompt or lower ks"]
        return []


JOB_CONFIGS = {"generate": GenerateConfig, "benchmark": BenchmarkJobConfig}
