"""Config sections, one frozen dataclass each, and the job configs composed from them.

YAML files in ``configs/`` mirror these classes one to one; every field's doc feeds ``--help``
(``halo-ray config keys JOB``). Components receive their own section, never the whole job config.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from halo_ray.config import opt
from halo_ray.errors import ConfigError
from halo_ray.objectives.config import ObjectiveConfig
from halo_ray.placement import WEIGHT_TRANSFERS, resolve_weight_transfer
from halo_ray.reporters import REPORTERS, missing_libraries
from halo_ray.verifiers.base import VERIFIERS
from halo_ray.verifiers.config import VerifierConfig  # noqa: F401  (the verifier owns its section; re-exported)


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
    dtype: str = opt("auto", "rollout engine dtype (auto: float32 on CPU); the learner's is learner.bf16", choices=("auto", "float32", "bfloat16", "float16"))
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
    kv_cache_gib: int = opt(1, "CPU KV cache per engine in whole GiB (VLLM_CPU_KVCACHE_SPACE); too large and Ray's memory monitor kills the actor")
    gpu_memory_utilization: float = opt(0.5, "fraction of GPU memory vLLM may take (GPU engines only)")
    max_num_seqs: int = opt(256, "sequences an engine decodes at once")
    enable_prefix_caching: bool = opt(True, "share KV cache across the n samples of a prompt")
    tensor_parallel_size: int = opt(1, "GPUs an engine's model is split over (vLLM tensor parallel), each with num_gpus of a card; 1 on CPU")
    weight_transfer: str = opt("auto", "how new weights reach the engines: object_store (a Ray object ref), nccl (a collective from learner rank 0 through vLLM's weight-transfer API; GPUs), gloo (the same over CPUs); auto is nccl when engines and learner ranks are on separate GPUs (not cluster.colocate) and the full weights travel, else object_store (LoRA adapters always)", choices=WEIGHT_TRANSFERS)
    weight_bucket_mb: int = opt(256, "largest bucket of a collective weight transfer in MiB (parameters are packed into buckets of at most this)")

    def validate(self) -> list[str]:
        errs = []
        if self.tensor_parallel_size < 1:
            errs.append(f"tensor_parallel_size must be at least 1, got {self.tensor_parallel_size}")
        elif self.tensor_parallel_size > 1 and self.num_gpus <= 0:
            errs.append(f"tensor_parallel_size={self.tensor_parallel_size} needs GPUs: vLLM on CPU runs one worker per "
                        "engine here; set it to 1, or rollout.num_gpus above 0")
        if self.weight_bucket_mb < 1:
            errs.append(f"weight_bucket_mb must be at least 1, got {self.weight_bucket_mb}")
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
        if self.kv_cache_gib < 1:
            errs.append(f"kv_cache_gib must be a whole number of GiB >= 1, got {self.kv_cache_gib}")
        return errs


@dataclass(frozen=True)
class LearnerConfig:
    num_ranks: int = opt(1, "DeepSpeed data-parallel ranks, one Ray actor each")
    zero_stage: int = opt(2, "DeepSpeed ZeRO stage: 0 (plain data parallel), 2 (shard optimizer state and gradients), 3 (also parameters)", choices=(0, 2, 3))
    offload_optimizer: bool = opt(False, "keep ZeRO optimizer state in CPU memory (stage 2 or 3)")
    bf16: bool = opt(False, "train in bfloat16 with fp32 master weights; false trains in fp32")
    lr: float = opt(5e-5, "AdamW peak learning rate")
    weight_decay: float = opt(0.0, "AdamW decoupled weight decay (not applied to biases and norms)")
    warmup_steps: int = opt(0, "optimizer steps of linear warm-up from 0 to lr")
    lr_schedule: str = opt("constant", "learning-rate schedule after warm-up; cosine decays to 0 over the learner's total_steps", choices=("constant", "cosine"))
    micro_batch_size: int = opt(8, "sequences per forward/backward on each rank")
    grad_accum: int = opt(1, "micro-batches accumulated per optimizer step on each rank; effective batch = micro_batch_size x grad_accum x num_ranks")
    epochs: int = opt(1, "passes over each batch of training examples (per stream step or SFT dataset)")
    max_grad_norm: float = opt(1.0, "clip the global gradient norm to this; 0 disables clipping")
    gradient_checkpointing: bool = opt(False, "recompute activations in backward to save memory")
    seed: int = opt(0, "seed of model initialisation (LoRA), data shuffling and dropout; the same on every rank")
    num_cpus_per_rank: float = opt(1.0, "CPUs Ray reserves per rank")
    num_gpus_per_rank: float = opt(0.0, "GPUs per rank; 0 trains on CPU with gloo, otherwise NCCL")

    def validate(self) -> list[str]:
        errs = [f"{key} must be at least 1, got {getattr(self, key)}"
                for key in ("num_ranks", "micro_batch_size", "grad_accum", "epochs") if getattr(self, key) < 1]
        errs += [f"{key} must be >= 0, got {getattr(self, key)}"
                 for key in ("weight_decay", "warmup_steps", "max_grad_norm", "num_cpus_per_rank", "num_gpus_per_rank")
                 if getattr(self, key) < 0]
        if self.lr <= 0:
            errs.append(f"lr must be positive, got {self.lr}")
        if self.offload_optimizer and self.zero_stage == 0:
            errs.append("offload_optimizer needs zero_stage 2 or 3, got zero_stage=0")
        return errs


@dataclass(frozen=True)
class ClusterConfig:
    address: str = opt("", "Ray address to join; empty uses RAY_ADDRESS, else starts a local session")
    num_cpus: int = opt(0, "logical CPUs of a local session; 0 means max(4, the machine's CPUs), so rollout, verifier and learner actors fit on a small box")
    namespace: str = opt("halo-ray", "Ray namespace of the run's actors")
    dashboard: bool = opt(False, "start Ray's dashboard with a local session (http://127.0.0.1:8265; a joined cluster has its own)")
    colocate: bool = opt(False, "one GPU: rollout engine i and learner rank i share a bundle (halo_ray.placement) and "
                         "the engine sleeps (vLLM's sleep mode frees its GPU memory) while the learner steps; needs "
                         "rollout.num_engines == learner.num_ranks; on CPUs they take turns on the bundle's cores")


@dataclass(frozen=True)
class LoggingConfig:
    run_dir: str = opt("runs", "parent folder of run directories")
    name: str = opt("", "run name (runs/<name>/); empty derives one from the job and time")
    report_to: tuple[str, ...] = opt(("tensorboard",), "where a training run's metrics go besides metrics.jsonl, "
                                     "each with its step (the config as params): tensorboard (<run>/tensorboard/), "
                                     "wandb, mlflow (pip install 'halo-ray[tracking]'); [] for metrics.jsonl only",
                                     choices=REPORTERS)
    project: str = opt("halo-ray", "W&B project and MLflow experiment of the run (report_to wandb, mlflow)")
    wandb_mode: str = opt("auto", "W&B mode: auto follows WANDB_MODE, else online with an API key (WANDB_API_KEY "
                          "or `wandb login`), else offline under <run>/wandb/ (upload later with `wandb sync`)",
                          choices=("auto", "online", "offline"))
    level: str = opt("INFO", "library log level", choices=("DEBUG", "INFO", "WARNING", "ERROR"))

    moved_keys: ClassVar[dict[str, str]] = {
        "tensorboard": "replaced by report_to beside it, a list of tensorboard, wandb, mlflow (default "
                       "[tensorboard]): 'tensorboard: false' is 'report_to: []'; for 'true' delete the line"}

    def validate(self) -> list[str]:
        errs = [f"report_to lists {name!r} twice" for name in sorted(set(self.report_to))
                if self.report_to.count(name) > 1]
        return errs + missing_libraries(self.report_to)


@dataclass(frozen=True)
class BenchmarkConfig:
    problems: str = opt("", "problems to score: a JSONL/Parquet file or a SPEC (humaneval#all: 164, mbpp#official_test: 500, demo#heldout)")
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
class DataConfig:
    train: str = opt("", "training problems: a JSONL/Parquet problems file, or a source NAME[:ARG]; "
                     "'#STAGE' keeps one stage or split (demo#raft, humaneval#train)")
    eval: str = opt("", "held-out problems for pass@1 after each stage (same forms as train); empty skips evaluation")
    shuffle_seed: int = opt(0, "order in which prompts are visited across steps (the data position is resumable)")


@dataclass(frozen=True)
class StreamConfig:
    num_steps: int = opt(5, "learner steps of the run (each: take a batch of scored groups, train, sync weights)")
    prompts_per_step: int = opt(0, "prompts (groups of samples_per_prompt samples) per learner step; 0 takes every training prompt each step")
    chunk_prompts: int = opt(16, "prompts per rollout request; verification of a chunk starts as soon as it is sampled")
    max_staleness: int = opt(0, "policy versions a sample may lag the learner; 0 is the synchronous algorithm, k keeps sampling up to k steps ahead while the learner trains (older samples are dropped and counted)")
    eval_every: int = opt(1, "held-out evaluation every N learner steps (and after the last)")
    timeline: bool = opt(True, "write timeline.json (Chrome trace / Perfetto) and timeline.png of the stream's spans")

    def validate(self) -> list[str]:
        errs = [f"{key} must be at least 1, got {getattr(self, key)}"
                for key in ("num_steps", "chunk_prompts", "eval_every") if getattr(self, key) < 1]
        errs += [f"{key} must be >= 0, got {getattr(self, key)}"
                 for key in ("prompts_per_step", "max_staleness") if getattr(self, key) < 0]
        return errs


@dataclass(frozen=True)
class RaftConfig:
    reward_threshold: float = opt(0.5, "samples with reward >= this pass the filter (seed 001: 0.5)")
    keep_top_percent: float = opt(0.5, "of the passing samples keep the top fraction by reward; ties at the cutoff are kept")
    min_kept: int = opt(8, "if fewer samples pass, say so and keep this many best (reward > 0) rather than train on nothing")
    dedupe: bool = opt(True, "keep one copy of identical completions of the same prompt")

    def validate(self) -> list[str]:
        if not 0 < self.keep_top_percent <= 1:
            return [f"keep_top_percent must be in (0, 1], got {self.keep_top_percent}"]
        return []


@dataclass(frozen=True)
class EvalConfig:
    samples: int = opt(16, "samples per held-out problem for pass@1")
    temperature: float = opt(0.8, "sampling temperature of evaluation (seed 002: 0.8)")
    top_p: float = opt(1.0, "nucleus threshold of evaluation")
    seed: int = opt(42, "evaluation sampling seed (the same for every stage, so stages are paired)")

    def validate(self) -> list[str]:
        return [f"samples must be at least 1, got {self.samples}"] if self.samples < 1 else []


@dataclass(frozen=True)
class CheckpointConfig:
    every_steps: int = opt(1, "save a checkpoint every N learner steps (the last step is always saved)")
    keep: int = opt(2, "checkpoints kept; older ones are deleted after a newer one is complete")
    max_restarts: int = opt(2, "times a run restarts itself from its last checkpoint when one of its actors dies "
                               "for good (a learner rank, an engine whose Ray restarts are spent); then it stops "
                               "and --resume continues it")

    def validate(self) -> list[str]:
        errs = [f"{key} must be at least 1, got {getattr(self, key)}"
                for key in ("every_steps", "keep") if getattr(self, key) < 1]
        if self.max_restarts < 0:
            errs.append(f"max_restarts must be 0 or more, got {self.max_restarts}")
        return errs


def weight_transfer_errors(model: ModelConfig, rollout: RolloutConfig, learner: LearnerConfig,
                           cluster: ClusterConfig) -> list[str]:
    """A job that ships weights from learner to engines: ``rollout.weight_transfer`` must suit both sides
    (``halo_ray.placement.resolve_weight_transfer``)."""
    try:
        resolve_weight_transfer(rollout.weight_transfer, rollout.num_gpus, learner.num_gpus_per_rank, model.lora.enabled,
                                cluster.colocate)
    except ConfigError as exc:
        return [str(exc)]
    return []


def stream_schedule_errors(learner: LearnerConfig, why: str) -> list[str]:
    """A stream job's optimizer steps are not known in advance (``why``): refuse a cosine decay, which needs
    its end. ``config check`` refuses it too, since every job config's ``validate`` calls this."""
    if learner.lr_schedule != "cosine":
        return []
    return [f"learner.lr_schedule: 'cosine' needs a known number of optimizer steps; {why}, so use 'constant' "
            "(with learner.warmup_steps)"]


@dataclass(frozen=True)
class RaftJobConfig:
    """``halo-ray raft train``: RAFT on the asynchronous stream (generate, verify, keep the best, train, sync weights)."""

    model: ModelConfig = opt(ModelConfig(), "policy model (an SFT checkpoint, usually)")
    data: DataConfig = opt(DataConfig(), "training prompts and held-out problems")
    rollout: RolloutConfig = opt(RolloutConfig(), "sampling (seed 001: 8 samples, temperature 0.7) and engines")
    verifier: VerifierConfig = opt(VerifierConfig(), "the reward: sandboxed verification")
    objective: ObjectiveConfig = opt(ObjectiveConfig(), "training objective")
    learner: LearnerConfig = opt(LearnerConfig(), "DeepSpeed learner ranks and optimisation")
    stream: StreamConfig = opt(StreamConfig(), "steps, batch, chunking and staleness of the asynchronous stream")
    raft: RaftConfig = opt(RaftConfig(), "which samples RAFT keeps")
    eval: EvalConfig = opt(EvalConfig(), "held-out evaluation after each stage")
    checkpoint: CheckpointConfig = opt(CheckpointConfig(), "checkpoints")
    cluster: ClusterConfig = opt(ClusterConfig(), "Ray session")
    logging: LoggingConfig = opt(LoggingConfig(), "run directory and logs")

    def validate(self) -> list[str]:
        return (stream_schedule_errors(self.learner, "RAFT trains on what each step keeps")
                + weight_transfer_errors(self.model, self.rollout, self.learner, self.cluster))


@dataclass(frozen=True)
class GRPOJobConfig:
    """``halo-ray grpo train``: GRPO with the DAPO options on the asynchronous stream."""

    model: ModelConfig = opt(ModelConfig(), "policy model (an SFT checkpoint, usually)")
    data: DataConfig = opt(DataConfig(), "training prompts and held-out problems")
    rollout: RolloutConfig = opt(RolloutConfig(), "sampling (samples_per_prompt is the group size) and engines")
    verifier: VerifierConfig = opt(VerifierConfig(), "the reward: sandboxed verification")
    objective: ObjectiveConfig = opt(ObjectiveConfig(name="grpo"), "the grpo objective (objective.grpo), off-policy correction")
    learner: LearnerConfig = opt(LearnerConfig(), "DeepSpeed learner ranks and optimisation (one stream step = micro-batches of every group, grad_accum per optimizer step)")
    stream: StreamConfig = opt(StreamConfig(prompts_per_step=32, max_staleness=1), "steps, groups per step, chunking and staleness")
    eval: EvalConfig = opt(EvalConfig(), "held-out evaluation")
    checkpoint: CheckpointConfig = opt(CheckpointConfig(), "checkpoints")
    cluster: ClusterConfig = opt(ClusterConfig(), "Ray session")
    logging: LoggingConfig = opt(LoggingConfig(), "run directory and logs")

    def validate(self) -> list[str]:
        return (stream_schedule_errors(self.learner, "GRPO's depend on the groups each step keeps")
                + weight_transfer_errors(self.model, self.rollout, self.learner, self.cluster))


@dataclass(frozen=True)
class SFTJobConfig:
    """``halo-ray sft train``: supervised fine-tuning on reference solutions (completion tokens only)."""

    model: ModelConfig = opt(ModelConfig(), "base model")
    data: DataConfig = opt(DataConfig(), "train: problems with reference solutions (learner.epochs passes over them)")
    objective: ObjectiveConfig = opt(ObjectiveConfig(name="sft"), "training objective")
    learner: LearnerConfig = opt(LearnerConfig(), "DeepSpeed learner ranks and optimisation")
    cluster: ClusterConfig = opt(ClusterConfig(), "Ray session")
    logging: LoggingConfig = opt(LoggingConfig(), "run directory and logs")


def _demo_sft() -> SFTJobConfig:
    # SFT to convergence on a narrow set (notes/demo-task-family.md): ~400 steps of 32, AdamW 2e-3 cosine.
    return SFTJobConfig(
        data=DataConfig(train="demo#sft"),
        learner=LearnerConfig(lr=2e-3, lr_schedule="cosine", warmup_steps=10, epochs=28, micro_batch_size=32,
                              weight_decay=0.0, zero_stage=0),
        logging=LoggingConfig(name="sft"),
    )


def _demo_raft() -> RaftJobConfig:
    # RAFT on (operation, constant) pairs unseen in SFT; held-out pairs unseen in both.
    return RaftJobConfig(
        data=DataConfig(train="demo#raft", eval="demo#heldout"),
        rollout=RolloutConfig(samples_per_prompt=8, temperature=1.0, max_new_tokens=32),
        verifier=VerifierConfig(name="python", timeout_s=5.0),
        learner=LearnerConfig(lr=5e-4, micro_batch_size=32, epochs=1, zero_stage=0),
        stream=StreamConfig(num_steps=4, chunk_prompts=32),
        raft=RaftConfig(reward_threshold=1.0, keep_top_percent=1.0),
        eval=EvalConfig(samples=16, temperature=0.8),
        logging=LoggingConfig(name="raft"),
    )


def _demo_grpo() -> GRPOJobConfig:
    # GRPO on the RAFT prompts, pass/fail reward, asynchronous (one step ahead), groups of 8.
    from halo_ray.objectives.grpo import GRPOConfig

    return GRPOJobConfig(
        data=DataConfig(train="demo#raft", eval="demo#heldout"),
        rollout=RolloutConfig(samples_per_prompt=8, temperature=1.0, max_new_tokens=32),
        verifier=VerifierConfig(name="python", timeout_s=5.0),
        objective=ObjectiveConfig(name="grpo", grpo=GRPOConfig(reward="pass_fail")),
        learner=LearnerConfig(lr=2e-4, micro_batch_size=32, grad_accum=2, zero_stage=0),
        stream=StreamConfig(num_steps=16, prompts_per_step=64, max_staleness=1, chunk_prompts=16, eval_every=4),
        eval=EvalConfig(samples=16, temperature=0.8),
        logging=LoggingConfig(name="grpo"),
    )


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


JOB_CONFIGS = {"generate": GenerateConfig, "benchmark": BenchmarkJobConfig, "raft": RaftJobConfig, "grpo": GRPOJobConfig,
               "sft": SFTJobConfig}


# --- test-based DPO (seed 002; issue 13) ---------------------------------------------------------------
from halo_ray.objectives.dpo import DPOConfig  # noqa: E402  (the objective owns its section)


@dataclass(frozen=True)
class PairRuleConfig:
    """Seed 002's pair rule (``halo_ray.pairs``), offline and on the stream."""

    min_gap: float = opt(0.1, "smallest test pass-rate gap that makes a preference pair; a gap of exactly this counts (seed 002: 0.1)")
    score: str = opt("pass_rate", "what ranks a problem's responses: pass_rate (fraction of tests passed, seed 002) or reward (the verifier's, under verifier.reward)", choices=("pass_rate", "reward"))
    max_pairs_per_problem: int = opt(0, "at most this many pairs per problem (widest gaps first, distinct responses first); 0 keeps every pair (seed 002)")

    def validate(self) -> list[str]:
        errs = []
        if not 0 <= self.min_gap <= 1:
            errs.append(f"min_gap must be in [0, 1] (pass rates are fractions), got {self.min_gap}")
        if self.max_pairs_per_problem < 0:
            errs.append(f"max_pairs_per_problem must be >= 0, got {self.max_pairs_per_problem}")
        return errs


@dataclass(frozen=True)
class DPOPairsConfig(PairRuleConfig):
    chunk_prompts: int = opt(16, "problems per rollout request; verification of a chunk starts as soon as it is sampled")
    max_problems: int = opt(0, "use only the first N training problems for preferences (a pipeline check, seed 002's week 1); 0 uses all")
    eval_ks: tuple[int, ...] = opt((1, 10), "k values of pass@k in dpo eval (seed 002: 1, 10); each at most eval.samples")
    finetuned: str = opt("", "fine-tuned model that dpo eval compares with model.path (the baseline); empty uses <run>/final")
    preferences: str = opt("", "preference pairs that dpo train and dpo run use instead of generating them (an earlier run's dpo_preferences.jsonl: tune lr, beta and epochs with `halo-ray sweep` on one set of pairs); empty uses <run>/dpo_preferences.jsonl")

    def validate(self) -> list[str]:
        errs = super().validate()
        if self.chunk_prompts < 1:
            errs.append(f"chunk_prompts must be at least 1, got {self.chunk_prompts}")
        if self.max_problems < 0:
            errs.append(f"max_problems must be >= 0, got {self.max_problems}")
        if not self.eval_ks or any(k < 1 for k in self.eval_ks):
            errs.append(f"eval_ks must list positive k values, got {list(self.eval_ks)}")
        return errs


@dataclass(frozen=True)
class DPOJobConfig:
    """``halo-ray dpo prefs|eval``: seed 002's test-based DPO (preference pairs from pass rates, DPO, paired evaluation)."""

    model: ModelConfig = opt(ModelConfig(), "the base model: samples the preferences, is the frozen reference and the evaluation baseline")
    data: DataConfig = opt(DataConfig(), "train: problems with tests for preferences (the train split); eval: the held-out test split (val while tuning)")
    rollout: RolloutConfig = opt(RolloutConfig(samples_per_prompt=10, temperature=0.8, top_p=1.0, seed=42),
                                 "preference sampling (seed 002: n = 10 at temperature 0.8, fixed seed) and engines")
    verifier: VerifierConfig = opt(VerifierConfig(timeout_s=5.0), "sandboxed execution against the ground-truth tests (seed 002: 5 s)")
    learner: LearnerConfig = opt(LearnerConfig(seed=42, epochs=1), "DeepSpeed learner ranks and optimisation (seed 002: seed 42, 1-3 epochs)")
    objective: DPOConfig = opt(DPOConfig(), "the DPO loss (beta, label smoothing)")
    dpo: DPOPairsConfig = opt(DPOPairsConfig(), "pair rule and evaluation settings")
    eval: EvalConfig = opt(EvalConfig(samples=10, temperature=0.8, top_p=0.95, seed=42),
                           "evaluation sampling (seed 002: k = 10 at temperature 0.8, top-p 0.95, seed 42)")
    cluster: ClusterConfig = opt(ClusterConfig(), "Ray session")
    logging: LoggingConfig = opt(LoggingConfig(name=""), "run directory and logs")

    def validate(self) -> list[str]:
        too_big = [k for k in self.dpo.eval_ks if k > self.eval.samples]
        if too_big:
            return [f"dpo.eval_ks {list(self.dpo.eval_ks)} has k above eval.samples={self.eval.samples}: "
                    "pass@k needs at least k samples per problem; raise eval.samples or lower dpo.eval_ks"]
        return []


JOB_CONFIGS["dpo"] = DPOJobConfig


@dataclass(frozen=True)
class OnlineDPOJobConfig:
    """``halo-ray dpo online``: DPO on the asynchronous stream, pairs formed within each prompt's scored group."""

    model: ModelConfig = opt(ModelConfig(), "policy model (an SFT checkpoint, usually); also the frozen reference")
    data: DataConfig = opt(DataConfig(), "training prompts and held-out problems")
    rollout: RolloutConfig = opt(RolloutConfig(samples_per_prompt=8, temperature=1.0), "sampling (samples_per_prompt responses per prompt are paired among themselves) and engines")
    verifier: VerifierConfig = opt(VerifierConfig(), "the reward: sandboxed verification against each prompt's tests")
    objective: ObjectiveConfig = opt(ObjectiveConfig(name="dpo"), "the dpo objective (objective.dpo: beta, label smoothing)")
    pairs: PairRuleConfig = opt(PairRuleConfig(max_pairs_per_problem=4), "the pair rule applied to each scored group")
    learner: LearnerConfig = opt(LearnerConfig(), "DeepSpeed learner ranks and optimisation (a pair's two sequences stay in one micro-batch)")
    stream: StreamConfig = opt(StreamConfig(prompts_per_step=32, max_staleness=1), "steps, prompts per step, chunking and staleness")
    eval: EvalConfig = opt(EvalConfig(), "held-out evaluation")
    checkpoint: CheckpointConfig = opt(CheckpointConfig(), "checkpoints")
    cluster: ClusterConfig = opt(ClusterConfig(), "Ray session")
    logging: LoggingConfig = opt(LoggingConfig(), "run directory and logs")

    def validate(self) -> list[str]:
        errs = []
        if self.objective.name != "dpo":
            errs.append(f"objective.name: online DPO trains the dpo objective, got {self.objective.name!r}")
        if self.rollout.samples_per_prompt < 2:
            errs.append("rollout.samples_per_prompt: a pair needs two responses to one prompt, got "
                        f"{self.rollout.samples_per_prompt}")
        if self.learner.micro_batch_size < 2:
            errs.append("learner.micro_batch_size: a DPO pair (chosen and rejected) needs 2 sequences per micro-batch, "
                        f"got {self.learner.micro_batch_size}")
        return (errs + stream_schedule_errors(self.learner, "online DPO's depend on the pairs each step forms")
                + weight_transfer_errors(self.model, self.rollout, self.learner, self.cluster))


JOB_CONFIGS["online_dpo"] = OnlineDPOJobConfig


def _demo_dpo() -> OnlineDPOJobConfig:
    # Online DPO on the RAFT prompts: pairs within each group of 8, one step ahead.
    return OnlineDPOJobConfig(
        data=DataConfig(train="demo#raft", eval="demo#heldout"),
        rollout=RolloutConfig(samples_per_prompt=8, temperature=1.0, max_new_tokens=32),
        verifier=VerifierConfig(name="python", timeout_s=5.0),
        pairs=PairRuleConfig(max_pairs_per_problem=4),
        learner=LearnerConfig(lr=1e-4, micro_batch_size=32, grad_accum=2, zero_stage=0),
        stream=StreamConfig(num_steps=16, prompts_per_step=32, max_staleness=1, chunk_prompts=16, eval_every=4),
        eval=EvalConfig(samples=16, temperature=0.8),
        logging=LoggingConfig(name="dpo"),
    )




# --- SRL for ast-grep refactoring agents (seed 003; issue 14) ---------------------------------------
from halo_ray.objectives.grpo import GRPOConfig  # noqa: E402
from halo_ray.srl.reward import SRLRewardConfig  # noqa: E402  (the reward owns its section)


@dataclass(frozen=True)
class SRLVerifierConfig(VerifierConfig):
    """The verifier section of SRL jobs: trace matching in process (``srl_trace``), its reward settings,
    and the sandbox limits for executing actions (the JVM and node need more than the python defaults)."""

    name: str = opt("srl_trace", "verifier from the registry; SRL scores traces with srl_trace (in process, no sandbox)", choices=VERIFIERS)
    timeout_s: float = opt(60.0, "wall-clock limit of one executed action's tests (verifier.execute; javac and the JVM start slowly)")
    memory_mb: int = opt(4096, "address-space limit per program in MiB (the JVM and V8 reserve far more than they use)")
    max_processes: int = opt(64, "process/thread cap per sandbox (the JVM starts a dozen threads)")
    workers: int = opt(1, "sandbox workers for executed actions (verifier.execute); trace matching itself needs none")
    extract_code: bool = opt(False, "take the program from markdown fences; off: executed actions run as harness programs, and an action's replacement text may hold fences")
    srl: SRLRewardConfig = opt(SRLRewardConfig(), "the trace-matching reward (seed 003 §18): component weights, brevity penalty, malformed penalty, clipping, think embedder")
    execute: bool = opt(False, "also apply each parsed action with ast-grep to its task and run the task's tests in the sandbox: reward_components.executed, the execution-success metric (not part of the reward; costs a sandbox run per sample)")
    restore_stop: bool = opt(True, "put back the </state_update> that the rollout's stop string removed (vLLM leaves stop strings out of the text) before parsing")


@dataclass(frozen=True)
class SRLTrainConfig:
    trace_tokens: bool = opt(True, "train with the trace tags as tokens of their own (seed 003 §8): a base model whose tokenizer lacks them is copied into <run>/base-model with the tags added and the embeddings resized (halo_ray.srl.tokens), and that copy is the model trained, anchored to and served")
    zero_malformed_advantage: bool = opt(True, "malformed traces train with advantage 0 (seed 003 §7: no gradient through garbage); their reward still counts in their group's mean and std")


def _srl_objective() -> ObjectiveConfig:
    # Seed 003 §26: clip 0.2 both ways, KL to the base in 0.01-0.1, the verifier's reward as is.
    return ObjectiveConfig(name="grpo", grpo=GRPOConfig(eps_low=0.2, eps_high=0.2, kl_coef=0.05, reward="verifier"))


@dataclass(frozen=True)
class SRLJobConfig:
    """``halo-ray srl train|eval``: SRL (seed 003): GRPO on trace-matching rewards with a KL anchor to the base."""

    model: ModelConfig = opt(ModelConfig(lora=LoraConfig(enabled=True)), "the student's base model (LoRA by default: the base stays the KL anchor)")
    data: DataConfig = opt(DataConfig(train="srl#train", eval=""), "training tasks (srl#train: the built-in ast-grep tasks with teacher traces); eval: held-out tasks for exact-action pass@1 during training (srl#heldout)")
    rollout: RolloutConfig = opt(RolloutConfig(samples_per_prompt=8, temperature=1.0, max_new_tokens=1024, stop=("</state_update>",)),
                                 "student sampling (samples_per_prompt is the group size; stop at </state_update>, seed 003 §7) and engines")
    verifier: SRLVerifierConfig = opt(SRLVerifierConfig(), "the reward: trace matching against the teacher (verifier.srl), optionally executing actions")
    objective: ObjectiveConfig = opt(_srl_objective(), "the grpo objective (objective.grpo: kl_coef is the KL anchor lambda, eps_low/eps_high the clip)")
    srl: SRLTrainConfig = opt(SRLTrainConfig(), "SRL's changes to GRPO")
    learner: LearnerConfig = opt(LearnerConfig(lr=5e-6), "DeepSpeed learner ranks and optimisation (seed 003 §21: 5e-6 with LoRA)")
    stream: StreamConfig = opt(StreamConfig(prompts_per_step=8, max_staleness=1), "steps, groups per step, chunking and staleness")
    eval: EvalConfig = opt(EvalConfig(samples=4), "sampling of held-out evaluation (training-time pass@1 and srl eval)")
    checkpoint: CheckpointConfig = opt(CheckpointConfig(), "checkpoints")
    cluster: ClusterConfig = opt(ClusterConfig(), "Ray session")
    logging: LoggingConfig = opt(LoggingConfig(), "run directory and logs")

    def validate(self) -> list[str]:
        errs = []
        if self.objective.name != "grpo":
            errs.append(f"objective.name: SRL trains the grpo objective, got {self.objective.name!r}")
        if self.verifier.name != "srl_trace":
            errs.append(f"verifier.name: SRL's rewards are trace matching (srl_trace), got {self.verifier.name!r}")
        if self.objective.grpo.reward != "verifier":
            errs.append("objective.grpo.reward: SRL trains on the trace-matching reward as the verifier gives it "
                        f"('verifier'), got {self.objective.grpo.reward!r} (a test-table scheme has no trace tiers)")
        if self.rollout.samples_per_prompt < 2:
            errs.append("rollout.samples_per_prompt: GRPO needs at least 2 samples per prompt to form a group "
                        f"advantage, got {self.rollout.samples_per_prompt}")
        return (errs + stream_schedule_errors(self.learner, "SRL's depend on the groups each step keeps")
                + weight_transfer_errors(self.model, self.rollout, self.learner, self.cluster))


JOB_CONFIGS["srl"] = SRLJobConfig


def _demo_srl_sft() -> SFTJobConfig:
    # A warm start on the 4000 synthetic training tasks' teacher traces: 1000 steps of 8, enough that the tiny model
    # writes the three blocks and has learnt to copy names from the instruction, not to copy every one, so SRL's
    # rewards have something left to teach (fewer distinct tasks or steps and it copies none: README, SRL).
    return SFTJobConfig(
        data=DataConfig(train="srl:synthetic#train"),
        learner=LearnerConfig(lr=2e-3, lr_schedule="cosine", warmup_steps=10, epochs=2, micro_batch_size=8,
                              weight_decay=0.0, zero_stage=0, num_cpus_per_rank=2.0),  # alone on the demo's two cores
        logging=LoggingConfig(name="srl_sft"),
    )


def _demo_srl() -> SRLJobConfig:
    # SRL on the same training tasks (their teacher traces are the reward's reference), a full fine-tune of the tiny
    # model anchored to the SFT result; held-out tasks (identifiers never paired in training) only for evaluation.
    return SRLJobConfig(
        model=ModelConfig(lora=LoraConfig(enabled=False)),
        data=DataConfig(train="srl:synthetic#train", eval="srl:synthetic#heldout"),
        # T 0.7: at T 1 the warm-started tiny model writes a valid trace one time in eight, and groups of eight
        # malformed traces (all -0.2) carry no signal
        rollout=RolloutConfig(samples_per_prompt=8, temperature=0.7, max_new_tokens=256, stop=("</state_update>",)),
        verifier=SRLVerifierConfig(workers=1),
        learner=LearnerConfig(lr=5e-5, micro_batch_size=16, zero_stage=0),  # 5e-4 broke the format within two steps
        stream=StreamConfig(num_steps=8, prompts_per_step=16, chunk_prompts=16, max_staleness=1),
        eval=EvalConfig(samples=4, temperature=0.3),
        logging=LoggingConfig(name="srl"),
    )



from halo_ray.srl.prompts import TeacherConfig  # noqa: E402


@dataclass(frozen=True)
class TeacherJobConfig:
    """``halo-ray srl traces``: teacher traces for the SRL tasks (sample, parse, execute, filter, Parquet by slice)."""

    model: ModelConfig = opt(ModelConfig(max_model_len=8192), "the teacher model (seed 003 §8: >= 8k context); pin it by path")
    data: DataConfig = opt(DataConfig(train="srl#train"), "train: the tasks to write traces for (SRL problems: srl#train, srl)")
    rollout: RolloutConfig = opt(RolloutConfig(samples_per_prompt=4, temperature=0.3, top_p=0.9, max_new_tokens=1024,
                                               stop=("</state_update>",)),
                                 "teacher sampling (seed 003 §19: T 0.3, top-p 0.9, stop at </state_update>; samples_per_prompt traces per task) and engines")
    teacher: TeacherConfig = opt(TeacherConfig(), "few-shot anchors and the trace-quality filter")
    verifier: SRLVerifierConfig = opt(SRLVerifierConfig(), "the sandbox that executes every parsed teacher action (its limits)")
    output: str = opt("runs/teacher", "folder of traces.parquet, traces/<slice>.parquet and summary.json")
    cluster: ClusterConfig = opt(ClusterConfig(), "Ray session")
    logging: LoggingConfig = opt(LoggingConfig(), "logging")


JOB_CONFIGS["teacher"] = TeacherJobConfig


@dataclass(frozen=True)
class DemoConfig:
    """``halo-ray demo`` / ``make demo``: SFT warm start then RAFT (or GRPO, or online DPO) on the embedded task family
    (configs/tiny.yaml); with ``algorithm: srl``, SFT on teacher traces then SRL on the synthetic ast-grep tasks."""

    output: str = opt("runs/demo", "demo directory: model-init/, sft/ (srl: srl_sft/), raft/, grpo/, dpo/ or srl/, report.json, stages.png")
    seed: int = opt(0, "seed of the tiny model's initialisation")
    algorithm: str = opt("raft", "the stage after SFT: raft, grpo, dpo (online DPO on the stream) or srl (SRL on ast-grep tasks)",
                         choices=("raft", "grpo", "dpo", "srl"))
    sft: SFTJobConfig = opt(_demo_sft(), "the SFT stage (model.path is set to the freshly built tiny model)")
    raft: RaftJobConfig = opt(_demo_raft(), "the RAFT stage (model.path is set to the SFT result)")
    grpo: GRPOJobConfig = opt(_demo_grpo(), "the GRPO stage, with --algorithm grpo (model.path is set to the SFT result)")
    dpo: OnlineDPOJobConfig = opt(_demo_dpo(), "the online DPO stage, with --algorithm dpo (model.path is set to the SFT result)")
    srl_sft: SFTJobConfig = opt(_demo_srl_sft(), "with --algorithm srl: the SFT warm start on the training tasks' teacher traces (model.path is set to the tiny model)")
    srl: SRLJobConfig = opt(_demo_srl(), "the SRL stage, with --algorithm srl (model.path is set to the srl_sft result; data.eval: the held-out tasks that the demo evaluates after each stage, not during the stream)")


JOB_CONFIGS["demo"] = DemoConfig
