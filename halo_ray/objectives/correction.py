"""Off-policy correction: the learner's tokens were sampled by the engine (the behaviour policy).

The stream trains on completions an engine sampled up to ``max_staleness`` policy versions ago, and
even a fresh sample's engine log-probs differ from the learner's (kernels, precision). Every token
carries the engine's ``behaviour_logp``; the learner recomputes the log-prob under its weights, and
this module turns the two into a per-token weight and a sequence mask the objective applies:

- ``none``: weight 1; the mismatch is ignored (still measured).
- ``truncate``: truncated importance sampling, ``w_t = min(pi(y_t) / pi_behav(y_t), C)`` (Ionides 2008;
  the "TIS" fix of Yao et al. 2025, "Your efficient RL framework secretly brings you off-policy RL").
- ``mask``: sequence rejection: a sequence whose ratio leaves ``[mask_low, mask_high]`` is masked out
  whole; kept sequences take weight 1 (bounded bias, no added variance). The sequence ratio is the
  per-token geometric mean ``exp(mean_t log r_t)`` by default (length-independent; verl's "geo"
  mode), or the product ``exp(sum_t log r_t)`` (the exact sequence likelihood ratio, which drifts
  exponentially with length).
- ``decoupled``: AReaL's decoupled PPO (Fu et al. 2025, "AReaL"): the weight is
  ``min(pi_prox / pi_behav, C)`` with ``pi_prox`` the policy recomputed just before the update, and the
  objective's clipped ratio is taken against ``pi_prox`` (the contract's ``old_logp``).

Under the learner contract GRPO's ``old_logp`` is already the proximal policy, so for GRPO ``truncate``
(weight from the current weights) and ``decoupled`` (weight from ``pi_prox``) coincide at
``updates_per_batch: 1`` and differ only on the later updates of a batch.

Pure torch; torch is imported inside functions so that loading a config does not import it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

from halo_ray.config import opt

if TYPE_CHECKING:
    import torch

MODES = ("none", "truncate", "mask", "decoupled")
SEQUENCE_RATIOS = ("geometric", "product")
MAX_LOG_RATIO = 20.0
"""Log-ratios are clamped to +-20 before ``exp`` so that one wild token cannot overflow the metrics."""


@dataclass(frozen=True)
class CorrectionConfig:
    mode: str = opt("truncate", "off-policy correction of engine-sampled tokens: none, truncate (per-token weight min(pi/pi_behav, cap)), mask (drop sequences whose ratio leaves [mask_low, mask_high]) or decoupled (AReaL: weight min(pi_prox/pi_behav, cap), clip against pi_prox)", choices=MODES)
    cap: float = opt(2.0, "C: the largest per-token importance weight in truncate and decoupled modes")
    mask_low: float = opt(0.8, "mask mode: sequences whose ratio is below this are masked out")
    mask_high: float = opt(1.25, "mask mode: sequences whose ratio is above this are masked out")
    sequence_ratio: str = opt("geometric", "mask mode: a sequence's ratio is the geometric mean of its per-token ratios (exp of the mean log-ratio) or their product (exp of the sum)", choices=SEQUENCE_RATIOS)

    def validate(self) -> list[str]:
        errs = []
        if self.cap < 1.0:
            errs.append(f"cap must be >= 1 (a cap below 1 shrinks on-policy tokens), got {self.cap}")
        if not 0.0 <= self.mask_low < 1.0 < self.mask_high:
            errs.append(f"mask bounds must satisfy 0 <= mask_low < 1 < mask_high, got mask_low={self.mask_low}, "
                        f"mask_high={self.mask_high}")
        return errs


class Correction(NamedTuple):
    """What ``correct`` returns.

    ``weight``: (B, L) per-token weight, no grad, 1.0 off the mask. ``mask``: (B, L) the input mask
    with masked-out sequences zeroed. ``keep``: (B,) bool, False for sequences the correction
    masked out. ``metrics``: plain floats (see ``correct``).
    """

    weight: "torch.Tensor"
    mask: "torch.Tensor"
    keep: "torch.Tensor"
    metrics: dict[str, float]


def correct(behaviour_logp: "torch.Tensor", logp: "torch.Tensor", mask: "torch.Tensor",
            config: CorrectionConfig, proximal_logp: "torch.Tensor | None" = None) -> Correction:
    """Importance weights and sequence mask for engine-sampled tokens.

    Args:
        behaviour_logp: (B, L) the engine's log-probs of the sampled tokens.
        logp: (B, L) log-probs of the same tokens under the current weights (detached here).
        mask: (B, L) 1.0 on completion tokens that take loss.
        config: the correction section.
        proximal_logp: (B, L) log-probs under the policy recomputed before the update; required by
            ``decoupled``, ignored otherwise.
    Returns:
        A ``Correction``. Its metrics: ``is_ratio_mean`` and ``is_ratio_max`` of the per-token ratio the
        weight is made from (``pi/pi_behav``; ``pi_prox/pi_behav`` when decoupled) over masked tokens,
        ``is_truncated_frac`` (tokens whose ratio exceeded the cap), ``is_masked_frac`` (sequences with
        tokens that the mask mode dropped), ``behaviour_kl``: KL(pi_behav || pi) by the k3 estimator
        ``r - 1 - log r``, ``r = pi / pi_behav``, averaged over the tokens (unbiased: the tokens are
        drawn from pi_behav).
    """
    import torch

    if config.mode not in MODES:
        raise ValueError(f"unknown correction mode {config.mode!r} (known: {', '.join(MODES)})")
    with torch.no_grad():
        mask = mask.float()
        behaviour_logp = behaviour_logp.float()
        log_r = ((logp.detach().float() - behaviour_logp) * mask).clamp(-MAX_LOG_RATIO, MAX_LOG_RATIO)
        if config.mode == "decoupled":
            if proximal_logp is None:
                raise ValueError("decoupled correction needs proximal_logp (the policy recomputed before the update)")
            log_w = ((proximal_logp.detach().float() - behaviour_logp) * mask).clamp(-MAX_LOG_RATIO, MAX_LOG_RATIO)
        else:
            log_w = log_r
        ratio = log_w.exp()
        tokens = mask.sum(-1)
        has_tokens = tokens > 0

        keep = torch.ones(mask.shape[0], dtype=torch.bool, device=mask.device)
        weight = torch.ones_like(mask)
        if config.mode in ("truncate", "decoupled"):
            weight = torch.where(mask > 0, ratio.clamp(max=config.cap), weight)
        elif config.mode == "mask":
            seq_log = log_r.sum(-1)
            if config.sequence_ratio == "geometric":
                seq_log = seq_log / tokens.clamp(min=1.0)
            seq_ratio = seq_log.exp()
            keep = ~has_tokens | ((seq_ratio >= config.mask_low) & (seq_ratio <= config.mask_high))
        new_mask = mask * keep[:, None].to(mask.dtype)

        n_tok = mask.sum().clamp(min=1.0)
        on = mask > 0
        k3 = (log_r.exp() - 1.0 - log_r) * mask
        metrics = {
            "is_ratio_mean": float((ratio * mask).sum() / n_tok),
            "is_ratio_max": float(ratio[on].max()) if on.any() else 1.0,
            "is_truncated_frac": float(((ratio > config.cap) & on).sum() / n_tok) if config.mode in ("truncate", "decoupled") else 0.0,
            "is_masked_frac": float((~keep & has_tokens).sum() / has_tokens.sum().clamp(min=1)),
            "behaviour_kl": float(k3.sum() / n_tok),
        }
    return Correction(weight, new_mask, keep, metrics)
