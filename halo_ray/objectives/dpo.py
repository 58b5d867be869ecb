"""DPO: the one preference loss of the project, for offline pairs and for pairs formed on the stream.

Seed 002 (Rafailov et al., "Direct Preference Optimization", NeurIPS 2023), against a frozen reference:

    L = -log sigmoid(beta * ((log pi_theta(y_c|x) - log pi_ref(y_c|x)) - (log pi_theta(y_r|x) - log pi_ref(y_r|x))))

with beta = 0.1 and sequence log-probabilities (sums over the completion tokens). ``label_smoothing``
eps > 0 gives conservative DPO (Mitchell, 2023): ``-(1 - eps) log sigmoid(beta d) - eps log sigmoid(-beta d)``;
seed 002 uses none (0). With eps = 0 this equals TRL's ``DPOTrainer`` ``loss_type="sigmoid"``.

torch is imported inside functions so that loading a config does not import it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from halo_ray.config import opt
from halo_ray.objectives import OBJECTIVES

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class DPOConfig:
    """The ``dpo`` objective's section."""

    beta: float = opt(0.1, "DPO temperature beta: how far the policy may move from the reference (seed 002: 0.1)")
    label_smoothing: float = opt(0.0, "conservative-DPO label noise eps in [0, 0.5); seed 002 uses none (0)")

    def validate(self) -> list[str]:
        errs = []
        if not self.beta > 0:
            errs.append(f"beta must be positive, got {self.beta}")
        if not 0.0 <= self.label_smoothing < 0.5:
            errs.append(f"label_smoothing must be in [0, 0.5), got {self.label_smoothing}")
        return errs


def dpo_loss(chosen_logps: "torch.Tensor", rejected_logps: "torch.Tensor", ref_chosen_logps: "torch.Tensor",
             ref_rejected_logps: "torch.Tensor", beta: float = 0.1, label_smoothing: float = 0.0,
             ) -> tuple["torch.Tensor", "torch.Tensor", "torch.Tensor"]:
    """Per-pair DPO loss on sequence log-probabilities (seed 002's sigmoid loss).

    Args:
        chosen_logps, rejected_logps: (P,) sum of token log-probs of each pair's chosen / rejected
            completion under the policy (with grad).
        ref_chosen_logps, ref_rejected_logps: (P,) the same under the frozen reference.
        beta: DPO's beta.
        label_smoothing: conservative-DPO eps (0: plain DPO).
    Returns:
        ``(losses, chosen_rewards, rejected_rewards)``, each (P,); the implicit rewards are
        ``beta * (logp - ref_logp)``, detached.
    """
    import torch.nn.functional as F

    chosen_logratios = chosen_logps - ref_chosen_logps
    rejected_logratios = rejected_logps - ref_rejected_logps
    logits = beta * (chosen_logratios - rejected_logratios)
    losses = -F.logsigmoid(logits)
    if label_smoothing:
        losses = (1 - label_smoothing) * losses - label_smoothing * F.logsigmoid(-logits)
    return losses, beta * chosen_logratios.detach(), beta * rejected_logratios.detach()


@OBJECTIVES.register("dpo")
class DPOObjective:
    """DPO on pairs that sit in one micro-batch (the learner contract: ``pair_id``, ``pair_role``).

    A row's sequence log-prob is ``sum_t logp * mask``; the learner fills ``ref_logp`` with the frozen
    reference (under LoRA: the base with the adapter disabled). The returned loss is the micro-batch's
    share of the optimizer step's mean over pairs: ``sum over its pairs / norm_pairs``.
    Metrics (TRL's names): ``rewards/chosen``, ``rewards/rejected``, ``rewards/margins``,
    ``rewards/accuracies`` (chosen reward above rejected), ``logps/chosen``, ``logps/rejected``, ``pairs``.
    """

    needs_reference = True
    needs_old_logp = False

    def __init__(self, config: DPOConfig | None = None):
        self.config = config or DPOConfig()

    def __call__(self, batch: dict) -> tuple["torch.Tensor", dict[str, float]]:
        """Returns this micro-batch's loss share (scalar with grad) and its metrics (plain floats)."""
        import torch

        mask = batch["mask"]
        logps = (batch["logp"] * mask).sum(-1)
        ref_logps = (batch["ref_logp"] * mask).sum(-1)
        chosen, rejected = pair_rows(batch["pair_id"], batch["pair_role"])
        if chosen.numel() == 0:  # no pair here: a zero that still reaches every parameter's graph
            return (batch["logp"] * 0.0).sum(), {"pairs": 0.0}
        losses, chosen_rewards, rejected_rewards = dpo_loss(
            logps[chosen], logps[rejected], ref_logps[chosen], ref_logps[rejected],
            self.config.beta, self.config.label_smoothing)
        loss = losses.sum() / torch.as_tensor(batch["norm_pairs"], dtype=losses.dtype).clamp(min=1.0)
        margins = chosen_rewards - rejected_rewards
        return loss, {
            "rewards/chosen": float(chosen_rewards.mean()), "rewards/rejected": float(rejected_rewards.mean()),
            "rewards/margins": float(margins.mean()), "rewards/accuracies": float((margins > 0).float().mean()),
            "logps/chosen": float(logps[chosen].detach().mean()), "logps/rejected": float(logps[rejected].detach().mean()),
            "pairs": float(chosen.numel()),
        }


def pair_rows(pair_id: "torch.Tensor", pair_role: "torch.Tensor") -> tuple["torch.Tensor", "torch.Tensor"]:
    """Row indices of each pair's chosen and rejected sequence, pair by pair (sorted by ``pair_id``).

    Rows with ``pair_id`` -1 (padding, unpaired) are ignored. Raises ValueError when a pair does not
    have exactly one chosen (role 0) and one rejected (role 1) row: the learner must keep pairs whole.
    """
    import torch

    paired = pair_id >= 0
    chosen = torch.nonzero(paired & (pair_role == 0)).flatten()
    rejected = torch.nonzero(paired & (pair_role == 1)).flatten()
    chosen = chosen[torch.argsort(pair_id[chosen], stable=True)]
    rejected = rejected[torch.argsort(pair_id[rejected], stable=True)]
    if (chosen.numel() != rejected.numel() or int(paired.sum()) != chosen.numel() + rejected.numel()
            or not torch.equal(pair_id[chosen], pair_id[rejected]) or pair_id[chosen].unique().numel() != chosen.numel()):
        raise ValueError(f"DPO micro-batch with broken pairs: pair_id {pair_id.tolist()}, pair_role "
                         f"{pair_role.tolist()}; every pair needs one chosen (0) and one rejected (1) row")
    return chosen, rejected
