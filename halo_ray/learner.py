"""Learner: one DeepSpeed data-parallel rank training a Hugging Face causal LM on an objective.

Plain Python, no Ray: ``actors/learner.py`` runs one per Ray actor and sets ``MASTER_ADDR``,
``MASTER_PORT``, ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` first; alone (world size 1) it sets
them itself. CPU ranks use gloo (``DS_ACCELERATOR=cpu``), GPU ranks NCCL.

Every rank receives the same examples and the same seed, and computes the same plan
(``halo_ray.learner_plan``): units shuffled whole, packed into micro-batches, padded to a whole number
of optimizer steps, micro-batch k dealt to rank k mod N. So N ranks with ``grad_accum`` g make the
same updates as one rank with N*g, and every rank runs the same number of collective steps.

Checkpoints (``save_checkpoint``) are Hugging Face directories (full model or PEFT adapter, plus the
tokenizer) with ``trainer_state.json`` (step, ``extra``: the caller's data position), one
``rng_state_rank{r}.pt`` per rank, and ``deepspeed/`` (DeepSpeed's engine checkpoint: the ZeRO-
partitioned optimizer state and the learning-rate scheduler). They are written to a temporary
sibling directory and renamed into place, so a killed run leaves the previous checkpoint intact.
"""

from __future__ import annotations

import copy
import inspect
import json
import logging
import os
import random
import shutil
import socket
import time
from pathlib import Path
from typing import Any, Sequence

from halo_ray.errors import ConfigError, ModelError
from halo_ray.learner_plan import mean_finite, plan_micro_batches, step_norms
from halo_ray.objectives import IGNORE_INDEX, build_objective
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
        import trl.trainer.utils  # noqa: F401  the step's log-prob and entropy kernels; imported here, not in
        # the first step (trl scans the installed packages' metadata on import: 1-2 s of the first step's clock)
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
        # transformers' causal LMs take ``logits_to_keep`` (the LM head on the last columns only)
        self._logits_to_keep = "logits_to_keep" in inspect.signature(net.forward).parameters
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
        self._reference = None  # frozen initial weights, loaded when a full fine-tune's objective asks
        self._sender = None  # rank 0's end of a collective weight transfer (open_weight_transfer)

    # -- training ----------------------------------------------------------------------------------

    def _forward(self, module, batch: dict, temperature: float, grad: bool, entropy: bool = False):
        """Token log-probs (B, T-1) of the batch's labels under ``module`` at ``temperature``; optionally entropy."""
        import torch

        from halo_ray.objectives import token_logprobs

        labels, mask = batch["labels"], batch["mask"]
        # Logits only from the first column that predicts a completion token of any row on (the prompt
        # before it takes no loss): the LM head, the softmax and the entropy skip those columns (with a
        # large vocabulary the (B, T, V) logits are most of the memory). Left of them logp is 0, as masked.
        width = labels.shape[1]
        labelled = (labels != IGNORE_INDEX).any(dim=0).nonzero()
        skip = max(int(labelled[0]) - 1, 0) if len(labelled) and self._logits_to_keep else 0
        with torch.set_grad_enabled(grad):
            kwargs = {"logits_to_keep": width - skip} if skip else {}
            logits = module(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], **kwargs).logits
            logp = token_logprobs(logits, labels[:, skip:], temperature)
            if skip:
                logp = torch.nn.functional.pad(logp, (skip, 0))
            logp = logp * mask
        ent = None
        if entropy:
            from trl.trainer.utils import entropy_from_logits

            with torch.no_grad():
                shifted = logits[:, :-1].detach().float()
                ent = entropy_from_logits(shifted / temperature if temperature not in (0.0, 1.0) else shifted)
                if skip:
                    ent = torch.nn.functional.pad(ent, (skip, 0))
        return logp, ent

    def _batch(self, examples: Sequence[dict], micro: list[int] | None) -> tuple[dict, list[int]]:
        """Collated tensors of a micro-batch on the device (a padding micro-batch is one weight-0 row)."""
        from halo_ray.objectives import collate

        rows = [examples[i] for i in micro] if micro is not None else [dict(examples[0], weight=0.0)]
        batch = collate(rows, self.pad_id, self.model_config.max_model_len)
        return {k: v.to(self.engine.device) for k, v in batch.items()}, (micro or [])

    def logprobs(self, examples: Sequence[dict], temperature: float = 1.0, reference: bool = False) -> list[list[float]]:
        """Forward only: each example's completion-token log-probs (truncated to ``max_model_len``).

        Args:
            examples: dicts with ``prompt_token_ids`` and ``token_ids``.
            temperature: divide logits by this first (the engine's sampling temperature).
            reference: under the reference policy (LoRA: the base with the adapter disabled; full
                fine-tuning: the frozen copy of the initial weights).
        """
        out = []
        for k in range(0, len(examples), self.config.micro_batch_size):
            part = [dict(ex, weight=1.0) for ex in examples[k:k + self.config.micro_batch_size]]
            out.extend(self._sequence_logprobs(part, temperature, reference))
        return out

    def _sequence_logprobs(self, part: Sequence[dict], temperature: float, reference: bool) -> list[list[float]]:
        import contextlib

        from halo_ray.objectives import collate

        batch = {k: v.to(self.engine.device) for k, v in collate(part, self.pad_id, self.model_config.max_model_len).items()}
        module = self.engine.module
        if reference and self.model_config.lora.enabled:
            ctx = module.disable_adapter()
        elif reference:
            module, ctx = self._reference_model(), contextlib.nullcontext()
        else:
            ctx = contextlib.nullcontext()
        was_training = module.training
        module.eval()
        try:
            with ctx:
                logp, _ = self._forward(module, batch, temperature, grad=False)
        finally:
            module.train(was_training)
        out = []
        for row, ex in enumerate(part):
            start = len(ex["prompt_token_ids"]) - 1
            keep = int(batch["mask"][row].sum())
            out.append(logp[row, start:start + keep].tolist())
        return out

    def _reference_model(self):
        """The frozen initial weights for full fine-tuning (loaded once, on first use)."""
        if self._reference is None:
            import torch
            from transformers import AutoModelForCausalLM

            self._reference = AutoModelForCausalLM.from_pretrained(self.model_config.path, dtype=torch.float32)
            self._reference.to(self.engine.device).eval().requires_grad_(False)
        return self._reference

    def _with_logprobs(self, examples: Sequence[dict], temperature: float, one_step: bool = False) -> list[dict]:
        """Examples with ``old_logp`` / ``ref_logp`` lists when the objective or the correction needs them,
        taken once before the first update of this call.

        ``one_step``: this call makes a single optimizer step, so the weights before it are the ones
        every micro-batch's forward sees: ``old_logp`` is ``logp.detach()`` there (the objectives'
        default), and the extra forward pass over the batch is skipped (as TRL does at one iteration).
        """
        obj = self.objective
        needs_old = not one_step and (getattr(obj, "needs_old_logp", False) or (
            getattr(obj, "off_policy", False) and self.objective_config.correction.mode == "decoupled"))
        needs_ref = getattr(obj, "needs_reference", False)
        if not (needs_old or needs_ref):
            return list(examples)
        out = [dict(ex) for ex in examples]
        if needs_old:
            for ex, lp in zip(out, self.logprobs(examples, temperature)):
                ex["old_logp"] = lp
        if needs_ref:
            for ex, lp in zip(out, self.logprobs(examples, temperature, reference=True)):
                ex["ref_logp"] = lp
        return out

    def _per_token(self, batch: dict, rows: list[dict], key: str):
        """A (B, L) tensor of the rows' per-completion-token list ``key``, aligned like ``behaviour_logp``."""
        import torch

        out = torch.zeros_like(batch["mask"])
        for r, ex in enumerate(rows):
            values = ex.get(key)
            if values:
                start = len(ex["prompt_token_ids"]) - 1
                out[r, start:start + len(values)] = torch.tensor(values, dtype=out.dtype, device=out.device)
        return out * batch["mask"]

    def train(self, examples: Sequence[dict], epochs: int | None = None, steps: int | None = None,
              temperature: float = 1.0) -> dict:
        """Train on ``examples``; every rank must call this with the same arguments (see the module doc).

        Args:
            examples: dicts with ``prompt_token_ids``, ``token_ids`` and optional ``weight``,
                ``advantage``, ``logprobs`` (the engine's, per completion token), ``group``, ``pair_id``,
                ``pair_role`` and ``unit`` (examples sharing a unit stay in one micro-batch). An empty
                list trains nothing.
            epochs: passes over the examples; default ``learner.epochs``. Each epoch reshuffles.
            steps: if given, take exactly this many optimizer steps instead, reshuffling after each pass.
            temperature: the sampling temperature of the examples (logits are divided by it, as vLLM's
                processed log-probs are).
        Returns:
            This rank's metrics (the caller namespaces them under ``train/``): ``loss`` (this rank's
            shares of the steps' losses, averaged over steps; ``merge_metrics`` sums the ranks), ``lr``,
            ``steps``, ``global_step``, ``grad_norm``, ``samples``, ``tokens``, ``padded_samples``,
            ``seconds``, ``samples_per_s``, ``tokens_per_s``, every metric the objective and the
            correction return (averaged over micro-batches), and ``steps_log``: one such record per
            optimizer step.
        """
        import torch

        from halo_ray.objectives import correction as corr

        cfg, engine = self.config, self.engine
        epochs = cfg.epochs if epochs is None else epochs
        started = time.perf_counter()
        one_step = bool(examples) and (steps == 1 or (steps is None and epochs == 1 and len(plan_micro_batches(
            examples, self.world_size, cfg.micro_batch_size, cfg.grad_accum, copy.deepcopy(self.shuffle_rng))) == 1))
        examples = self._with_logprobs(examples, temperature, one_step) if examples else []
        off_policy = getattr(self.objective, "off_policy", False)
        steps_log, samples, tokens, padded, taken, epoch = [], 0, 0.0, 0, 0, 0
        scale = cfg.grad_accum * self.world_size  # undo DeepSpeed's averaging over micro-batches and ranks
        engine.train()
        while examples and (taken < steps if steps is not None else epoch < epochs):
            epoch += 1
            for step in plan_micro_batches(examples, self.world_size, cfg.micro_batch_size, cfg.grad_accum,
                                           self.shuffle_rng):
                if steps is not None and taken >= steps:
                    break
                norms = step_norms(examples, step, self.model_config.max_model_len)
                step_loss, step_metrics, last_norm = 0.0, {}, None
                for micro in step[self.rank]:
                    batch, idx = self._batch(examples, micro)
                    rows = [examples[i] for i in idx] or [examples[0]]
                    padded += micro is None
                    logp, ent = self._forward(engine, batch, temperature, grad=True, entropy=True)
                    batch.update(logp=logp, entropy=ent,
                                 **{k: torch.tensor(v, device=logp.device) for k, v in norms.items()})
                    if "old_logp" in rows[0]:
                        batch["old_logp"] = self._per_token(batch, rows, "old_logp")
                    if "ref_logp" in rows[0]:
                        batch["ref_logp"] = self._per_token(batch, rows, "ref_logp")
                    metrics = {}
                    if off_policy:
                        c = corr.correct(batch["behaviour_logp"], logp, batch["mask"], self.objective_config.correction,
                                         proximal_logp=batch.get("old_logp"))
                        batch.update(is_weight=c.weight, mask=c.mask)
                        metrics.update(c.metrics)
                    loss, obj_metrics = self.objective(batch)
                    metrics.update(obj_metrics)
                    if ent is not None and "entropy" not in metrics and batch["mask"].sum() > 0:
                        metrics["entropy"] = float((ent * batch["mask"]).sum() / batch["mask"].sum())
                    engine.backward(loss * scale)
                    if engine.is_gradient_accumulation_boundary() and cfg.zero_stage == 0:
                        # DeepSpeed computes the norm only for its ZeRO optimizers
                        grads = [p.grad for p in engine.module.parameters() if p.grad is not None]
                        last_norm = float(torch.nn.utils.get_total_norm(grads)) if grads else None
                    engine.step()
                    step_loss += float(loss.detach())
                    for key, value in metrics.items():
                        step_metrics.setdefault(key, []).append(value)
                    real = len(idx)
                    samples += real
                    tokens += float(batch["mask"].sum()) if real else 0.0
                taken += 1
                self.global_step += 1
                norm = engine.get_global_grad_norm() if cfg.zero_stage else last_norm
                record = {key: mean_finite(values) for key, values in step_metrics.items()}
                record.update(loss=step_loss, lr=float(engine.get_lr()[0]), global_step=self.global_step,
                              grad_norm=float(norm) if norm is not None else float("nan"),
                              tokens=sum(step_metrics.get("tokens", [0.0])))
                steps_log.append(record)
        seconds = time.perf_counter() - started
        out = {key: mean_finite([r[key] for r in steps_log]) for key in (steps_log[0] if steps_log else {})}
        out.update(
            loss=mean_finite([r["loss"] for r in steps_log]) if steps_log else float("nan"),
            lr=float(engine.get_lr()[0]), steps=taken, global_step=self.global_step,
            grad_norm=steps_log[-1]["grad_norm"] if steps_log else float("nan"),
            samples=samples, tokens=tokens, padded_samples=padded, seconds=seconds,
            samples_per_s=samples / seconds if seconds > 0 else 0.0,
            tokens_per_s=tokens / seconds if seconds > 0 else 0.0, steps_log=steps_log)
        return out

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

    def weights_metadata(self) -> list:
        """Names, dtypes and shapes (``TensorMeta``) of the full weights, in the order ``send_weights``
        sends them. With ZeRO-3 every rank must call this (parameters are gathered)."""
        from halo_ray.weight_transfer import tensor_metadata

        with self._gathered():
            return tensor_metadata(self.engine.module.state_dict().items())

    def open_weight_transfer(self, backend: str, master_address: str, master_port: int, num_engine_ranks: int,
                             bucket_bytes: int) -> None:
        """Open a collective weight transfer as its sender, rank 0 of the group (this rank hosts the
        rendezvous at ``master_address:master_port``); blocks until every engine rank has joined.
        A group opened before is closed first."""
        from halo_ray.weight_transfer import WeightSender

        self.close_weight_transfer()
        self._sender = WeightSender(backend, master_address, master_port, num_engine_ranks, bucket_bytes)

    def send_weights(self, meta: list) -> None:
        """Broadcast the full weights (HF names, as ``rollout_weights``) to the engines of the open group,
        bucketed; ``meta`` is ``weights_metadata()``, which the engines were given. With ZeRO-3 every
        rank calls this (parameters are gathered); only the rank with the open group sends."""
        if self.rank == 0 and self._sender is None:
            raise RuntimeError("send_weights: no weight-transfer group is open on rank 0 (open_weight_transfer)")
        with self._gathered():
            if self._sender is not None:
                self._sender.send(iter(self.engine.module.state_dict().items()), meta)

    def close_weight_transfer(self) -> None:
        if self._sender is not None:
            self._sender.close()
            self._sender = None

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
