"""Training objectives: pure functions of a collated batch and the model's logits.

Every objective is registered in ``OBJECTIVES`` under its short name and built from the
``objective`` config section; the learner calls ``objective(batch, logits) -> (loss, metrics)``.
Batches come from ``collate``: ``input_ids``, ``attention_mask``, ``labels`` (-100 where no loss
is taken: prompt and padding) and a per-sample ``weight``. Later issues add GRPO, DPO and SRL here.

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
    """Right-padded training batch of prompt + completion sequences.

    Args:
        examples: dicts with ``prompt_token_ids`` and ``token_ids`` (the completion), and an optional
            ``weight`` (default 1.0).
        pad_id: token id of padding (masked out of attention and loss).
        max_len: longest sequence; longer ones lose their completion's tail.
    Returns:
        ``input_ids`` and ``attention_mask`` (B, T) long tensors, ``labels`` (B, T) with the input
        ids on completion positions and -100 on prompt and padding (unshifted, as in HF), and
        ``weight`` (B,) float.
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
    for row, (seq, start) in enumerate(zip(seqs, starts)):
        ids = torch.tensor(seq, dtype=torch.long)
        input_ids[row, : len(seq)] = ids
        attention_mask[row, : len(seq)] = 1
        labels[row, start : len(seq)] = ids[start:]
    weight = torch.tensor([float(ex.get("weight", 1.0)) for ex in examples], dtype=torch.float32)
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels, "weight": weight}


def token_logprobs(logits: "torch.Tensor", labels: "torch.Tensor") -> tuple["torch.Tensor", "torch.Tensor"]:
    """Log-probability of each next token, and the mask of positions that take loss.

    Position t of the logits predicts token t+1, so both are shifted by one.

    Args:
        logits: (B, T, V) model outputs.
        labels: (B, T) from ``collate`` (-100 where no loss is taken).
    Returns:
        ``logp`` (B, T-1), ``log p(labels[:, t+1] | prefix)``, zero where masked, and ``mask`` (B, T-1) float.
    """
    from trl.trainer.utils import selective_log_softmax

    targets = labels[:, 1:]
    mask = targets != IGNORE_INDEX
    logp = selective_log_softmax(logits[:, :-1].float(), targets.clamp(min=0))
    return logp * mask, mask.float()


@OBJECTIVES.register("sft")
class SFTObjective:
    """Cross-entropy on completion tokens only, averaged over the batch's completion tokens.

    ``L = -(1 / sum_i |c_i|) * sum_i sum_{t in c_i} log p(y_t | y_<t)``, where ``c_i`` are the completion
    positions of sample i (prompt and padding masked). Supervised fine-tuning of seed 001's step 2.
    """

    def __init__(self, config: "ObjectiveConfig | None" = None):
        self.config = config

    def __call__(self, batch: dict, logits: "torch.Tensor") -> tuple["torch.Tensor", dict[str, float]]:
        """Returns the loss (a scalar tensor with grad) and metrics (``tokens``: completion tokens)."""
        return weighted_token_nll(batch, logits, use_weights=False)


@OBJECTIVES.register("raft")
class RAFTObjective:
    """RAFT: cross-entropy on the kept (verified) samples, optionally weighted per sample.

    ``L = -(sum_i w_i sum_{t in c_i} log p(y_t | y_<t)) / (sum_i w_i |c_i|)`` over the samples the
    reward filter kept (seed 000: Dong et al., "RAFT: Reward rAnked FineTuning", TMLR 2023; seed 001:
    reward_threshold 0.5, keep_top_percent 0.5). With all ``w_i = 1`` this is exactly ``sft``:
    the filter chooses the data, the loss is supervised. Weights let a caller up-weight better samples.
    """

    def __init__(self, config: "ObjectiveConfig | None" = None):
        self.config = config

    def __call__(self, batch: dict, logits: "torch.Tensor") -> tuple["torch.Tensor", dict[str, float]]:
        """Returns the loss (a scalar tensor with grad) and metrics (``tokens``: completion tokens)."""
        return weighted_token_nll(batch, logits, use_weights=True)


def weighted_token_nll(batch: dict, logits: "torch.Tensor", use_weights: bool) -> tuple["torch.Tensor", dict[str, float]]:
    """Mean negative log-likelihood of the completion tokens, each sample's tokens weighted by ``weight``.

    A batch without completion tokens gives a zero loss that still has a gradient (ranks must all
    run backward for their collectives).
    """
    logp, mask = token_logprobs(logits, batch["labels"])
    if use_weights and "weight" in batch:
        mask = mask * batch["weight"].to(mask.dtype)[:, None]
    loss = -(logp * mask).sum() / mask.sum().clamp(min=1e-8)
    return loss, {"tokens": float((batch["labels"][:, 1:] != IGNORE_INDEX).sum())}


def build_objective(config: "ObjectiveConfig"):
    """The objective named by ``config.name``, built from its section."""
    return OBJECTIVES.get(config.name, "objective.name")(config)


from halo_ray.objectives import dpo as _dpo  # noqa: E402,F401  (registers "dpo"; needs OBJECTIVES above)
