"""Training objectives: pure functions of a collated batch and the model's logits.

Every objective is registered in ``OBJECTIVES`` under its short name and built from its own section
of the ``objective`` config (``objective.grpo``, ...). The learner contract: the learner calls
``objective(batch) -> (loss, metrics)`` where ``batch`` holds, per micro-batch, the token log-probs
under the current weights (``logp``, with grad, temperature-scaled), the loss ``mask``, the engine's
``behaviour_logp``, the correction's ``is_weight``, ``old_logp`` / ``ref_logp`` when the objective
declares ``needs_old_logp`` / ``needs_reference``, per-sample ``advantage``, ``weight``, ``group``,
``pair_id``, ``pair_role``, and the step-wide normalisers ``norm_tokens``, ``norm_sequences``,
``norm_pairs``. ``loss`` is the micro-batch's share of the optimizer step's loss (its sum over the
step's normaliser), so any number of micro-batches and ranks make the same update. ``collate``
builds the tensors; ``halo_ray.learner`` adds the rest.

torch and TRL are imported inside functions so that loading a config does not import them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

from halo_ray.errors import DataError
from halo_ray.registry import Registry

if TYPE_CHECKING:
    import torch

    from halo_ray.sections import ObjectiveConfig

IGNORE_INDEX = -100
"""Label of positions that take no loss (prompt, padding); the value ``torch.nn.CrossEntropyLoss`` ignores."""

OBJECTIVES: Registry = Registry("objective")


def tokenize_pair(tokenizer, prompt: str, completion: str) -> dict[str, list[int]]:
    """Token ids of one SFT example, prompt and completion tokenized separately.

    Byte-level BPE merges whitespace across the prompt/completion boundary, so tokenizing the joined
    text would train on ids that generation never produces; the prompt ids here equal those the
    rollout engine sees, and the completion ends with EOS so the model learns to stop.

    Args:
        tokenizer: a Hugging Face tokenizer with an ``eos_token_id``.
        prompt: the prompt text, exactly as the rollout engine receives it.
        completion: the target completion text.
    Returns:
        ``{"prompt_token_ids": [...], "token_ids": [... , eos]}``, the input of ``collate``.
    """
    if tokenizer.eos_token_id is None:
        raise DataError(f"tokenizer {getattr(tokenizer, 'name_or_path', '')!r} has no EOS token; set eos_token")
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    completion_ids = tokenizer(completion, add_special_tokens=False)["input_ids"]
    return {"prompt_token_ids": list(prompt_ids), "token_ids": list(completion_ids) + [tokenizer.eos_token_id]}


def collate(examples: Sequence[dict[str, Any]], pad_id: int, max_len: int) -> dict[str, "torch.Tensor"]:
    """Right-padded training batch of prompt + completion sequences (the learner contract's inputs).

    Args:
        examples: dicts with ``prompt_token_ids`` and ``token_ids`` (the completion) and optional
            per-sample fields: ``weight`` (1.0), ``advantage`` (0.0), ``group`` / ``pair_id`` /
            ``pair_role`` (-1), and ``logprobs``, the engine's log-prob of each completion token.
        pad_id: token id of padding (masked out of attention and loss).
        max_len: longest sequence; longer ones lose their completion's tail.
    Returns:
        ``input_ids`` and ``attention_mask`` (B, T) long tensors, ``labels`` (B, T) with the input
        ids on completion positions and -100 on prompt and padding (unshifted, as in HF); per token
        over next-token positions (B, T-1): ``mask`` (1.0 where ``labels[:, t+1]`` takes loss and the
        sample's weight is not 0) and ``behaviour_logp`` (0 where unknown); per sample (B,):
        ``weight``, ``advantage`` (float), ``group``, ``pair_id``, ``pair_role`` (long).
    """
    import torch

    if not examples:
        raise DataError("collate: no examples")
    seqs, starts = [], []
    for i, ex in enumerate(examples):
        try:
            prompt, completion = list(ex["prompt_token_ids"]), list(ex["token_ids"])
        except KeyError as exc:
            raise DataError(f"training example {i} has no {exc.args[0]!r} (needs prompt_token_ids and token_ids)") from None
        if len(prompt) >= max_len:
            raise DataError(f"training example {i}: prompt of {len(prompt)} tokens leaves no room for the completion "
                            f"within max_len={max_len}; raise model.max_model_len or shorten the prompt")
        seqs.append((prompt + completion)[:max_len])
        starts.append(len(prompt))
    width = max(len(s) for s in seqs)
    input_ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(seqs), width), dtype=torch.long)
    labels = torch.full((len(seqs), width), IGNORE_INDEX, dtype=torch.long)
    behaviour = torch.zeros((len(seqs), max(width - 1, 0)), dtype=torch.float32)
    for row, (seq, start, ex) in enumerate(zip(seqs, starts, examples)):
        ids = torch.tensor(seq, dtype=torch.long)
        input_ids[row, : len(seq)] = ids
        attention_mask[row, : len(seq)] = 1
        labels[row, start : len(seq)] = ids[start:]
        lps = ex.get("logprobs")
        if lps is not None and len(lps):
            kept = len(seq) - start  # completion tokens left after truncation
            behaviour[row, start - 1 : start - 1 + kept] = torch.tensor(list(lps)[:kept], dtype=torch.float32)
    weight = torch.tensor([float(ex.get("weight", 1.0)) for ex in examples], dtype=torch.float32)
    mask = (labels[:, 1:] != IGNORE_INDEX).float() * (weight[:, None] != 0).float()

    def column(key: str, default, dtype):
        return torch.tensor([ex.get(key, default) if ex.get(key) is not None else default for ex in examples], dtype=dtype)

    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels, "mask": mask,
            "behaviour_logp": behaviour * mask, "weight": weight,
            "advantage": column("advantage", 0.0, torch.float32), "group": column("group", -1, torch.long),
            "pair_id": column("pair_id", -1, torch.long), "pair_role": column("pair_role", -1, torch.long)}


def token_logprobs(logits: "torch.Tensor", labels: "torch.Tensor", temperature: float = 1.0) -> "torch.Tensor":
    """Log-probability of each next token under ``softmax(logits / temperature)``, (B, T-1).

    Position t of the logits predicts token t+1, so both are shifted by one. vLLM reports processed
    log-probs (after temperature), so the learner divides by the sampling temperature before
    comparing with them. Masked positions (label -100) hold the log-prob of token 0: multiply by
    the mask.
    """
    from trl.trainer.utils import selective_log_softmax

    shifted = logits[:, :-1].float()
    if temperature not in (0.0, 1.0):
        shifted = shifted / temperature
    return selective_log_softmax(shifted, labels[:, 1:].clamp(min=0))


def with_step_norms(batch: dict, norm_tokens: float | None = None, norm_sequences: float | None = None,
                    norm_pairs: float | None = None) -> dict:
    """``batch`` plus the step-wide normalisers of the contract; each defaults to this micro-batch's own
    count (a step of one micro-batch on one rank)."""
    import torch

    mask = batch["mask"]
    own_pairs = float(len({int(p) for p in batch["pair_id"].tolist() if p >= 0}))
    return {**batch,
            "norm_tokens": torch.tensor(float(mask.sum()) if norm_tokens is None else norm_tokens),
            "norm_sequences": torch.tensor(float((batch["weight"] > 0).sum()) if norm_sequences is None else norm_sequences),
            "norm_pairs": torch.tensor(own_pairs if norm_pairs is None else norm_pairs)}


@OBJECTIVES.register("sft")
class SFTObjective:
    """Cross-entropy on completion tokens, averaged over the optimizer step's completion tokens.

    ``L = -(1 / N_step) * sum_i sum_{t in c_i} log p(y_t | y_<t)``, where ``c_i`` are the completion
    positions of sample i (prompt and padding masked) and ``N_step`` the completion tokens of the
    whole step (all micro-batches and ranks). Supervised fine-tuning of seed 001's step 2.
    """

    needs_reference = False
    needs_old_logp = False
    off_policy = False

    def __init__(self, config=None):
        self.config = config

    def __call__(self, batch: dict) -> tuple["torch.Tensor", dict[str, float]]:
        """Returns this micro-batch's share of the step loss (with grad) and metrics."""
        return weighted_token_nll(batch, use_weights=False)


@OBJECTIVES.register("raft")
class RAFTObjective(SFTObjective):
    """RAFT: cross-entropy on the kept (verified) samples, optionally weighted per sample.

    ``L = -(1 / N_step) * sum_i w_i sum_{t in c_i} log p(y_t | y_<t)`` over the samples the reward
    filter kept (seed 000: Dong et al., "RAFT: Reward rAnked FineTuning", TMLR 2023; seed 001:
    reward_threshold 0.5, keep_top_percent 0.5). With all ``w_i = 1`` this is exactly ``sft``: the
    filter chooses the data, the loss is supervised. Weights let a caller up-weight better samples.
    """

    def __call__(self, batch: dict) -> tuple["torch.Tensor", dict[str, float]]:
        return weighted_token_nll(batch, use_weights=True)


def weighted_token_nll(batch: dict, use_weights: bool) -> tuple["torch.Tensor", dict[str, float]]:
    """This micro-batch's share of the step's mean negative log-likelihood of completion tokens.

    A batch without completion tokens gives a zero loss that still has a gradient (ranks must all
    run backward for their collectives).
    """
    logp, mask = batch["logp"], batch["mask"]
    tokens = mask
    if use_weights:
        mask = mask * batch["weight"].to(mask.dtype)[:, None]
    loss = -(logp * mask).sum() / batch["norm_tokens"].clamp(min=1e-8)
    return loss, {"tokens": float(tokens.sum())}


def build_objective(config: "ObjectiveConfig"):
    """The objective named by ``config.name``, built from its own section (``config.<name>``) if it has one."""
    cls = OBJECTIVES.get(config.name, "objective.name")
    return cls(getattr(config, config.name, None))


# At the end: these modules import OBJECTIVES to register themselves.
from halo_ray.objectives import dpo as _dpo  # noqa: E402,F401
from halo_ray.objectives import grpo as _grpo  # noqa: E402,F401
