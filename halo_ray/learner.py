"""Learner: one DeepSpeed data-parallel rank training a Hugging Face causal LM on an objective.

Plain Python, no Ray: ``actors/learner.py`` runs one per Ray actor and sets ``MASTER_ADDR``,
``MASTER_PORT``, ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` first; alone (world size 1) it sets
them itself. CPU ranks use gloo (``DS_ACCELERATOR=cpu``), GPU ranks NCCL.

Every rank receives the same examples and the same seed, and computes the same plan: shuffle, pad
cyclically to a whole number of optimizer steps (as ``DistributedSampler`` pads), cut into
micro-batches and deal micro-batch k to rank k mod N. So N ranks with ``grad_accum`` g make the same
updates as one rank with N*g, and every rank runs the same number of collective steps.

Checkpoints (``save_checkpoint``) are Hugging Face directories (full model or PEFT adapter, plus the
tokenizer) with ``trainer_state.json`` (step, ``extra``: the caller's data position), one
``rng_state_rank{r}.pt`` per rank, and ``deepspeed/`` (DeepSpeed's engine checkpoint: the ZeRO-
partitioned optimizer state and the learning-rate scheduler). They are written to a temporary
sibling directory and renamed into place, so a killed run leaves the previous checkpoint intact.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import shutil
import socket
import time
from pathlib import Path
from typing import Any, Sequence

from halo_ray.errors import ConfigError, ModelError
from halo_ray.objectives import build_objective, collate
from halo_ray.sections import LearnerConfig, ModelConfig, ObjectiveConfig

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = 1
STATE_FILE = "trainer_state.json"
DS_DIR, DS_TAG = "deepspeed", "state"


def free_port() -> int:
    """A TCP port free on this host now (for ``MASTER_PORT``)."""
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def learner_env(learner: LearnerConfig) -> dict[str, str]:
    """Environment a rank needs before DeepSpeed is imported (DeepSpeed picks its accelerator at import)."""
    env = {"TOKENIZERS_PARALLELISM": "false"}
    if learner.num_gpus_per_rank == 0:
        env["DS_ACCELERATOR"] = "cpu"
    return env


def plan_micro_batches(examples: Sequence[dict], num_ranks: int, micro_batch_size: int, grad_accum: int,
                       rng: random.Random) -> tuple[list[list[list[dict]]], int]:
    """Shuffle, pad and deal examples into each rank's micro-batches for one epoch.

    Args:
        examples: the training examples (every rank passes the same list).
        num_ranks, micro_batch_size, grad_accum: the data-parallel layout.
        rng: shuffling RNG; all ranks hold the same state, so all compute the same plan.
    Returns:
        ``(plan, padded)``: ``plan[rank]`` is that rank's list of micro-batches (the same number on
        every rank, a multiple of ``grad_accum``); ``padded`` counts examples repeated from the start
        of the shuffled order to fill the last optimizer step.
    """
    order = list(range(len(examples)))
    rng.shuffle(order)
    per_step = micro_batch_size * grad_accum * num_ranks
    total = max(1, math.ceil(len(order) / per_step)) * per_step
    padded = total - len(order)
    order = [order[i % len(order)] for i in range(total)]
    micro = [[examples[j] for j in order[k : k + micro_batch_size]] for k in range(0, total, micro_batch_size)]
    return [micro[r::num_ranks] for r in range(num_ranks)], padded


def merge_metrics(per_rank: list[dict[str, float]]) -> dict[str, float]:
    """Combine the ``Learner.train`` metrics of all ranks: mean loss, summed counts, throughput over the slowest rank."""
    first = per_rank[0]
    seconds = max(m["seconds"] for m in per_rank)
    samples = sum(m["samples"] for m in per_rank)
    tokens = sum(m["tokens"] for m in per_rank)
    return {
        "loss": sum(m["loss"] for m in per_rank) / len(per_rank),
        "lr": first["lr"],
        "steps": first["steps"],
        "global_step": first["global_step"],
        "grad_norm": first["grad_norm"],
        "samples": samples,
        "tokens": tokens,
        "padded_samples": first["padded_samples"],
        "seconds": seconds,
        "samples_per_s": samples / seconds if seconds > 0 else 0.0,
        "tokens_per_s": tokens / seconds if seconds > 0 else 0.0,
    }


def ds_config(learner: LearnerConfig) -> dict[str, Any]:
    """The DeepSpeed config dict for ``learner`` (the client AdamW and scheduler are passed separately)."""
    zero: dict[str, Any] = {"stage": learner.zero_stage}
    if learner.offload_optimizer:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": learner.num_gpus_per_rank > 0}
    return {
        "train_micro_batch_size_per_gpu": learner.micro_batch_size,
        "gradient_accumulation_steps": learner.grad_accum,
        "gradient_clipping": learner.max_grad_norm,
        "zero_optimization": zero,
        "bf16": {"enabled": learner.bf16},
        # torch's AdamW is the client optimizer: no DeepSpeed op compiles, and offload may use it.
        "zero_allow_untested_optimizer": True,
        "zero_force_ds_cpu_optimizer": False,
        "steps_per_print": 1 << 30,
        "wall_clock_breakdown": False,
    }


class Learner:
    """One data-parallel rank: a HF causal LM (optionally PEFT LoRA) inside a DeepSpeed engine.

    Args:
        model: the model section (``path``: a local HF directory; ``lora``: adapter settings).
        learner: optimisation and parallelism settings.
        objective: the objective section (registry name and its parameters).
        total_steps: optimizer steps a cosine schedule decays over (required for ``lr_schedule: cosine``).
    """

    def __init__(self, model: ModelConfig, learner: LearnerConfig, objective: ObjectiveConfig,
                 total_steps: int | None = None):
        for key, value in learner_env(learner).items():
            os.environ.setdefault(key, value)
        if "RANK" not in os.environ:  # alone: a world of one
            os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1",
                              MASTER_PORT=str(free_port()))
        if learner.lr_schedule == "cosine" and not total_steps:
            raise ConfigError("learner.lr_schedule=cosine needs the run's total optimizer steps "
                              f"(Learner(total_steps=...)), got {total_steps!r}; or use lr_schedule=constant")
        import deepspeed
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer, get_scheduler

        self.model_config, self.config, self.objective_config = model, learner, objective
        self.objective = build_objective(objective)
        if not deepspeed.comm.is_initialized():
            deepspeed.init_distributed(dist_backend="nccl" if learner.num_gpus_per_rank > 0 else "gloo")
        self.rank, self.world_size = deepspeed.comm.get_rank(), deepspeed.comm.get_world_size()
        if self.world_size != learner.num_ranks:
            log.warning("learner.num_ranks=%d but WORLD_SIZE=%d", learner.num_ranks, self.world_size)

        path = Path(model.path)
        if not (path / "config.json").is_file():
            raise ModelError(f"{model.path}: not a Hugging Face model directory (no config.json); "
                             "build one with `halo-ray model init-tiny --output DIR`")
        self.seed_everything(learner.seed)
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        try:
            net = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
        except (OSError, ValueError) as exc:
            raise ModelError(f"{model.path}: transformers could not load the model: {exc}") from exc
        net.config.use_cache = False
        if learner.gradient_checkpointing:
            net.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if model.lora.enabled:
            from peft import LoraConfig as PeftLoraConfig
            from peft import get_peft_model

            lora = model.lora
            net = get_peft_model(net, PeftLoraConfig(
                r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                target_modules=list(lora.target_modules), task_type="CAUSAL_LM"))
            if learner.gradient_checkpointing:
                net.enable_input_require_grads()
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id

        decay, no_decay = [], []
        for name, p in net.named_parameters():
            if p.requires_grad:
                (no_decay if p.ndim < 2 or "norm" in name or name.endswith(".bias") else decay).append(p)
        groups = [{"params": decay, "weight_decay": learner.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
        # ZeRO drops empty groups (LoRA has only matrices); the scheduler must see the same groups.
        optimizer = torch.optim.AdamW([g for g in groups if g["params"]], lr=learner.lr)
        name = "cosine" if learner.lr_schedule == "cosine" else "constant_with_warmup"
        scheduler = get_scheduler(name, optimizer, num_warmup_steps=learner.warmup_steps,
                                  num_training_steps=total_steps)
        self.engine, _, _, _ = deepspeed.initialize(model=net, optimizer=optimizer, lr_scheduler=scheduler,
                                                    config=ds_config(learner))
        self.shuffle_rng = random.Random(learner.seed)
        self.global_step = 0

    # -- training ----------------------------------------------------------------------------------

    def train(self, examples: Sequence[dict], epochs: int | None = None, steps: int | None = None) -> dict[str, float]:
        """Train on ``examples`` (``prompt_token_ids``, ``token_ids``, optional ``weight``).

        Every rank must call this with the same arguments (see the module doc). Each epoch reshuffles.

        Args:
            examples: training examples; an empty list trains nothing.
            epochs: passes over the examples; default ``learner.epochs``.
            steps: if given, take exactly this many optimizer steps instead, reshuffling after each pass.
        Returns:
            This rank's metrics (the caller namespaces them under ``train/``): ``loss`` (mean over
            micro-batches), ``lr``, ``steps`` (optimizer steps taken), ``global_step``, ``grad_norm``,
            ``samples``, ``tokens`` (completion tokens), ``padded_samples``, ``seconds``,
            ``samples_per_s``, ``tokens_per_s``. ``merge_metrics`` combines the ranks'.
        """
        cfg, engine = self.config, self.engine
        epochs = cfg.epochs if epochs is None else epochs
        started = time.perf_counter()
        import torch

        losses, samples, tokens, padded, taken, last_norm = [], 0, 0.0, 0, 0, None
        engine.train()
        epoch = 0
        while examples and (taken < steps if steps is not None else epoch < epochs):
            epoch += 1
            plan, pad = plan_micro_batches(examples, self.world_size, cfg.micro_batch_size, cfg.grad_accum,
                                           self.shuffle_rng)
            padded += pad
            for micro in plan[self.rank]:
                if steps is not None and taken >= steps:
                    break
                batch = {k: v.to(engine.device) for k, v in
                         collate(micro, self.pad_id, self.model_config.max_model_len).items()}
                logits = engine(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
                loss, stats = self.objective(batch, logits)
                engine.backward(loss)
                if engine.is_gradient_accumulation_boundary():
                    taken += 1
                    if cfg.zero_stage == 0:  # DeepSpeed computes the norm only for its ZeRO optimizers
                        grads = [p.grad for p in engine.module.parameters() if p.grad is not None]
                        last_norm = float(torch.nn.utils.get_total_norm(grads)) if grads else None
                engine.step()
                losses.append(float(loss.detach()))
                samples += len(micro)
                tokens += stats["tokens"]
        self.global_step += taken
        seconds = time.perf_counter() - started
        grad_norm = (engine.get_global_grad_norm() if cfg.zero_stage else last_norm) if taken else None
        return {
            "loss": sum(losses) / len(losses) if losses else float("nan"),
            "lr": float(engine.get_lr()[0]),
            "steps": taken,
            "global_step": self.global_step,
            "grad_norm": float(grad_norm) if grad_norm is not None else float("nan"),
            "samples": samples,
            "tokens": tokens,
            "padded_samples": padded,
            "seconds": seconds,
            "samples_per_s": samples / seconds if seconds > 0 else 0.0,
            "tokens_per_s": tokens / seconds if seconds > 0 else 0.0,
        }

    # -- weights -------------------------------------------------------------------------------------

    def _gathered(self):
        """Context in which every parameter is whole (ZeRO-3 gathers; a collective on all ranks)."""
        import contextlib

        if self.config.zero_stage == 3:
            import deepspeed

            return deepspeed.zero.GatheredParameters(list(self.engine.module.parameters()), modifier_rank=None)
        return contextlib.nullcontext()

    def rollout_weights(self):
        """The weights a rollout engine loads: a ``LoraAdapter`` (LoRA runs) or a full HF state dict.

        The state dict has the parameter names of the HF model (``model.layers.0.self_attn.q_proj.weight``,
        what vLLM's ``reload_weights`` expects), as CPU tensors in the model's dtype. The adapter has
        PEFT's ``adapter_config.json`` dict and tensors named as ``save_pretrained`` writes them. With
        ZeRO-3 every rank must call this (parameters are gathered); other stages need only rank 0.
        """
        from halo_ray.rollout import LoraAdapter

        module = self.engine.module
        with self._gathered():
            if self.model_config.lora.enabled:
                return LoraAdapter.from_peft(module, self.model_config.path)
            return {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}

    # -- checkpoints ---------------------------------------------------------------------------------

    def save_checkpoint(self, directory: str | os.PathLike, extra: dict | None = None) -> Path:
        """Write a resumable checkpoint to ``directory``, atomically; every rank must call this.

        Args:
            directory: the checkpoint folder (replaced if it exists). On several nodes it must lie on a
                filesystem all ranks share.
            extra: JSON-serialisable caller state (the data position) returned by ``load_checkpoint``.
        Returns:
            The checkpoint path.
        """
        import deepspeed
        import torch

        out = Path(directory)
        tmp = out.parent / f".{out.name}.partial"
        if self.rank == 0:
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir()
        deepspeed.comm.barrier()
        self.engine.save_checkpoint(str(tmp / DS_DIR), tag=DS_TAG, save_latest=False,
                                    exclude_frozen_parameters=self.model_config.lora.enabled)
        torch.save(self._rng_state(), tmp / f"rng_state_rank{self.rank}.pt")
        with self._gathered():
            if self.rank == 0:
                self.engine.module.save_pretrained(tmp, safe_serialization=True)
                self.tokenizer.save_pretrained(tmp)
                state = {"format": CHECKPOINT_FORMAT, "global_step": self.global_step,
                         "world_size": self.world_size, "zero_stage": self.config.zero_stage,
                         "lora": self.model_config.lora.enabled, "extra": extra or {}}
                (tmp / STATE_FILE).write_text(json.dumps(state, indent=1) + "\n")
        deepspeed.comm.barrier()
        if self.rank == 0:
            old = out.parent / f".{out.name}.old"
            shutil.rmtree(old, ignore_errors=True)
            if out.exists():
                os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        deepspeed.comm.barrier()
        return out

    def load_checkpoint(self, directory: str | os.PathLike) -> dict:
        """Restore weights, optimizer, scheduler, step and RNG states from ``save_checkpoint``; all ranks call it.

        Returns:
            The ``extra`` dict given to ``save_checkpoint``.
        """
        import torch

        src = Path(directory)
        if not (src / STATE_FILE).is_file():
            raise ModelError(f"{src}: not a halo-ray checkpoint (no {STATE_FILE})")
        state = json.loads((src / STATE_FILE).read_text())
        if state["world_size"] != self.world_size or state["zero_stage"] != self.config.zero_stage:
            raise ConfigError(f"{src}: written by {state['world_size']} ranks at ZeRO stage {state['zero_stage']}; "
                              f"resume with learner.num_ranks={state['world_size']} and "
                              f"learner.zero_stage={state['zero_stage']} (now {self.world_size}, {self.config.zero_stage})")
        if state["lora"] != self.model_config.lora.enabled:
            raise ConfigError(f"{src}: model.lora.enabled={state['lora']} in the checkpoint, "
                              f"{self.model_config.lora.enabled} now; they must match to resume")
        path, _ = self.engine.load_checkpoint(str(src / DS_DIR), tag=DS_TAG, load_optimizer_states=True,
                                              load_lr_scheduler_states=True,
                                              load_module_strict=not self.model_config.lora.enabled)
        if path is None:
            raise ModelError(f"{src / DS_DIR}: DeepSpeed found no checkpoint (tag {DS_TAG!r})")
        self.global_step = state["global_step"]
        self._set_rng_state(torch.load(src / f"rng_state_rank{self.rank}.pt", weights_only=False))
        return state["extra"]

    # -- RNG -----------------------------------------------------------------------------------------

    @staticmethod
    def seed_everything(seed: int) -> None:
        import numpy as np
        import torch

        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)

    def _rng_state(self) -> dict:
        import numpy as np
        import torch

        state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
                 "shuffle": self.shuffle_rng.getstate()}
        if torch.cuda.is_available():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def _set_rng_state(self, state: dict) -> None:
        import numpy as np
        import torch

        random.setstate(state["python"])
        np.random.set_state(state["numpy"])
        torch.set_rng_state(state["torch"])
        self.shuffle_rng.setstate(state["shuffle"])
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])
