"""GRPO with the DAPO and Dr.GRPO options: group advantages, the clipped surrogate, KL, aggregation.

Per sample i of a prompt's group G (Shao et al. 2024, "DeepSeekMath", GRPO):

    A_i = (R_i - mean_G R) / (std_G R + eps)          (scale_std: false drops the division: Dr.GRPO)
    r_t = pi_theta(y_t) / pi_old(y_t)
    l_t = -w_t * min(r_t A_i, clip(r_t, 1 - eps_low, 1 + eps_high) A_i) + kl_coef * KL_t

``w_t`` is the stream's off-policy weight (``correction.py``); ``eps_high > eps_low`` is DAPO's
clip-higher (Yu et al. 2025, "DAPO", eps 0.2 / 0.28). The loss of an optimizer step aggregates l_t as

- ``token`` (DAPO): sum over every completion token of the step / number of those tokens;
- ``sequence`` (GRPO): mean over the step's sequences of each sequence's token mean;
- ``constant`` (Dr.GRPO, Liu et al. 2025, "Understanding R1-Zero-Like Training"): sum over the step /
  (sequences x ``constant_normalizer``), the fixed MAX_TOKENS in place of each sequence's length, as
  TRL's ``dr_grpo`` (batch x max_completion_length).

KL estimators (Schulman 2020, "Approximating KL Divergence"), samples y ~ pi_theta and
``r = pi_ref(y) / pi_theta(y)``: k1 = -log r, k2 = (log r)^2 / 2, k3 = (r - 1) - log r; each estimates
KL(pi_theta || pi_ref) (k1 and k3 without bias). TRL's ``beta`` term is k3.

Following the learner contract (``/work/contract.md``), ``GRPOObjective`` returns this micro-batch's
share of the step loss: its sum divided by the step-wide normaliser the learner passes in.
torch is imported inside functions so that loading a config does not import it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from halo_ray.config import opt
from halo_ray.objectives import OBJECTIVES
from halo_ray.verifiers.reward import SCHEMES

if TYPE_CHECKING:
    import torch

AGGREGATIONS = ("token", "sequence", "constant")
KL_ESTIMATORS = ("k1", "k2", "k3")
OVERLONG = ("keep", "mask", "penalty")
REWARDS = ("verifier", *SCHEMES)


@dataclass(frozen=True)
class GRPOConfig:
    eps_low: float = opt(0.2, "lower clip of the ratio: the surrogate stops pushing a token down once r < 1 - eps_low")
    eps_high: float = opt(0.28, "upper clip of the ratio: stops pushing a token up once r > 1 + eps_high (DAPO's clip-higher: above eps_low)")
    aggregation: str = opt("token", "loss over the optimizer step: token (mean over all its completion tokens, DAPO), sequence (mean of per-sequence means, GRPO) or constant (sum / (sequences x constant_normalizer), Dr.GRPO)", choices=AGGREGATIONS)
    constant_normalizer: float = opt(0.0, "constant aggregation: tokens each sequence is normalised by (Dr.GRPO: the max completion tokens, rollout.max_new_tokens); required > 0 there")
    scale_std: bool = opt(True, "divide group-centred rewards by the group's standard deviation; false is Dr.GRPO (mean-centred only)")
    std_eps: float = opt(1e-4, "added to the group std before dividing (TRL's 1e-4), so an equal-reward group gives advantage 0")
    kl_coef: float = opt(0.0, "weight of the per-token KL to the reference policy (0, as TRL and DAPO, needs no reference model)")
    kl_estimator: str = opt("k3", "KL estimator with r = pi_ref / pi_theta: k1 = -log r, k2 = (log r)^2 / 2, k3 = r - 1 - log r (Schulman)", choices=KL_ESTIMATORS)
    updates_per_batch: int = opt(1, "optimizer passes over each batch (PPO epochs); the old-policy log-probs are taken once before the first")
    filter_zero_variance: bool = opt(True, "drop groups whose rewards are all equal (no signal) and sample more until the batch is full (DAPO's dynamic sampling)")
    overlong: str = opt("keep", "completions cut at max_new_tokens: keep, mask (no loss, DAPO's overlong filtering) or penalty (DAPO's soft overlong punishment added to the reward)", choices=OVERLONG)
    overlong_buffer: int = opt(0, "penalty: the last this many tokens before max_new_tokens ramp the penalty from 0 to overlong_penalty (DAPO's L_cache); 0 penalises only cut completions")
    overlong_penalty: float = opt(1.0, "penalty: reward subtracted from a completion cut at max_new_tokens (the ramp's end)")
    reward: str = opt("verifier", "reward the advantages use: verifier (the verifier's reward, under verifier.reward) or a scheme of that table recomputed from each sample's verdict and test counts: graduated, pass_rate (fraction of tests passed) or pass_fail (1 on SUCCESS, else 0)", choices=REWARDS)

    def validate(self) -> list[str]:
        errs = []
        if not 0.0 <= self.eps_low < 1.0:
            errs.append(f"eps_low must be in [0, 1), got {self.eps_low}")
        if self.eps_high < 0.0:
            errs.append(f"eps_high must be >= 0, got {self.eps_high}")
        if self.aggregation == "constant" and self.constant_normalizer <= 0:
            errs.append(f"aggregation constant needs constant_normalizer > 0 (Dr.GRPO: rollout.max_new_tokens), "
                        f"got {self.constant_normalizer}")
        for key in ("std_eps", "kl_coef", "overlong_buffer", "overlong_penalty"):
            if getattr(self, key) < 0:
                errs.append(f"{key} must be >= 0, got {getattr(self, key)}")
        if self.updates_per_batch < 1:
            errs.append(f"updates_per_batch must be at least 1, got {self.updates_per_batch}")
        return errs


def group_advantages(rewards, group_ids, scale_std: bool = True, eps: float = 1e-4) -> "torch.Tensor":
    """Group-relative advantages: each reward minus its group's mean, optionally over the group's std.

    Args:
        rewards: (N,) rewards (tensor or sequence of floats).
        group_ids: (N,) integer group of each sample (the prompt); any values, any order.
        scale_std: divide by the group's standard deviation (Bessel-corrected, as TRL's ``nanstd``)
            plus ``eps``; false is Dr.GRPO. A one-sample group has std 0.
        eps: added to the std.
    Returns:
        (N,) float32 advantages.
    """
    import torch

    r = torch.as_tensor(rewards, dtype=torch.float32).reshape(-1)
    g = torch.as_tensor(group_ids).reshape(-1)
    if r.shape != g.shape:
        raise ValueError(f"rewards ({r.numel()}) and group_ids ({g.numel()}) differ in length")
    _, inv = torch.unique(g, return_inverse=True)
    n_groups = int(inv.max()) + 1 if inv.numel() else 0
    count = torch.zeros(n_groups).index_add_(0, inv, torch.ones_like(r))
    mean = torch.zeros(n_groups).index_add_(0, inv, r) / count
    centred = r - mean[inv]
    if not scale_std:
        return centred
    sq = torch.zeros(n_groups).index_add_(0, inv, centred ** 2)
    std = (sq / (count - 1).clamp(min=1)).sqrt()
    return centred / (std[inv] + eps)


def kl_estimate(logp: "torch.Tensor", ref_logp: "torch.Tensor", estimator: str = "k3") -> "torch.Tensor":
    """Per-token estimate of KL(pi_theta || pi_ref) on tokens sampled from pi_theta.

    With ``log r = ref_logp - logp``: k1 = -log r, k2 = (log r)^2 / 2, k3 = exp(log r) - 1 - log r.
    Gradients flow through ``logp``.
    """
    log_r = ref_logp - logp
    if estimator == "k1":
        return -log_r
    if estimator == "k2":
        return 0.5 * log_r ** 2
    if estimator == "k3":
        return log_r.exp() - 1.0 - log_r
    raise ValueError(f"unknown KL estimator {estimator!r} (known: {', '.join(KL_ESTIMATORS)})")


def grpo_token_loss(logp: "torch.Tensor", old_logp: "torch.Tensor", advantage: "torch.Tensor", mask: "torch.Tensor",
                    eps_low: float, eps_high: float, is_weight: "torch.Tensor | None" = None,
                    ref_logp: "torch.Tensor | None" = None, kl_coef: float = 0.0,
                    kl_estimator: str = "k3") -> tuple["torch.Tensor", dict[str, "torch.Tensor"]]:
    """Per-token clipped-surrogate loss (PPO-clip with separate low and high clip) plus the KL term.

    ``l_t = -w_t * min(r_t A, clip(r_t, 1 - eps_low, 1 + eps_high) A) + kl_coef * KL_t``, r_t = exp(logp - old_logp).
    The min makes clipping pessimistic: a clipped term is taken only when it lowers the objective (r
    above 1 + eps_high with A > 0, or below 1 - eps_low with A < 0), and there its gradient is 0.
    As in TRL, the off-policy weight multiplies the surrogate only, not the KL.

    Args:
        logp: (B, L) current log-probs, with grad. old_logp: (B, L) the anchor policy's, no grad.
        advantage: (B,) per sequence or (B, L) per token.
        mask: (B, L) loss positions (used only for the stats' masking; the caller aggregates).
        eps_low, eps_high: clip range. is_weight: (B, L) off-policy weights or None.
        ref_logp: (B, L) reference log-probs, needed when ``kl_coef > 0``; when given with
            ``kl_coef == 0`` the KL is still measured.
        kl_coef, kl_estimator: the KL term.
    Returns:
        ``(per_token_loss, stats)``; stats are no-grad (B, L) tensors: ``ratio``, ``clipped_low``,
        ``clipped_high`` (bool) and ``kl`` (None without ``ref_logp``).
    """
    import torch

    if kl_coef > 0 and ref_logp is None:
        raise ValueError("kl_coef > 0 needs ref_logp")
    adv = advantage[:, None] if advantage.dim() == 1 else advantage
    adv = adv.to(logp.dtype)
    ratio = (logp - old_logp).exp()
    clipped = ratio.clamp(1.0 - eps_low, 1.0 + eps_high)
    per_token = -torch.minimum(ratio * adv, clipped * adv)
    if is_weight is not None:
        per_token = per_token * is_weight
    kl = kl_estimate(logp, ref_logp, kl_estimator) if ref_logp is not None else None
    if kl is not None and kl_coef > 0:
        per_token = per_token + kl_coef * kl
    on = mask > 0
    r = ratio.detach()
    stats = {"ratio": r, "clipped_low": (r < 1.0 - eps_low) & (adv < 0) & on,
             "clipped_high": (r > 1.0 + eps_high) & (adv > 0) & on, "kl": None if kl is None else kl.detach()}
    return per_token, stats


def aggregate(per_token: "torch.Tensor", mask: "torch.Tensor", how: str, norm_tokens=None, norm_sequences=None,
              constant: float | None = None) -> "torch.Tensor":
    """This micro-batch's share of the optimizer-step loss.

    Args:
        per_token: (B, L) per-token losses. mask: (B, L) 1.0 on positions that take loss.
        how: ``token``: sum / ``norm_tokens`` (the step's completion tokens, all micro-batches and ranks);
            ``sequence``: sum of per-sequence token means / ``norm_sequences`` (the step's sequences);
            ``constant``: sum / (``norm_sequences`` x ``constant``).
    Returns:
        A scalar with grad; summing it over a step's micro-batches gives the step's loss, so a step
        split into any number of micro-batches (or ranks) has the same loss and gradient.
    """
    import torch

    mask = mask.to(per_token.dtype)
    total = per_token * mask
    if how == "token":
        return total.sum() / torch.as_tensor(norm_tokens, dtype=per_token.dtype).clamp(min=1.0)
    seqs = torch.as_tensor(norm_sequences, dtype=per_token.dtype).clamp(min=1.0)
    if how == "sequence":
        return (total.sum(-1) / mask.sum(-1).clamp(min=1.0)).sum() / seqs
    if how == "constant":
        if not constant or constant <= 0:
            raise ValueError(f"constant aggregation needs a positive constant, got {constant!r}")
        return total.sum() / (seqs * float(constant))
    raise ValueError(f"unknown aggregation {how!r} (known: {', '.join(AGGREGATIONS)})")


@OBJECTIVES.register("grpo")
class GRPOObjective:
    """GRPO's clipped surrogate on group advantages with DAPO's clip-higher and token-level loss.

    Formula in the module docstring (Shao et al. 2024; DAPO, Yu et al. 2025; Dr.GRPO, Liu et al. 2025).
    Reads from the batch (learner contract): ``logp``, ``mask``, ``advantage``, ``old_logp``, optional
    ``is_weight``, ``weight``, ``entropy``, ``ref_logp`` (when ``kl_coef > 0``), ``norm_tokens``,
    ``norm_sequences``. At ``updates_per_batch: 1`` ``old_logp`` equals ``logp.detach()``: the ratio is
    1 and the loss is the policy gradient ``-A * w * grad log pi``.
    """

    needs_reference: bool = False
    needs_old_logp: bool = True
    off_policy = True  # the learner applies the stream's off-policy correction (objective.correction)
    config_class = GRPOConfig

    def __init__(self, config: GRPOConfig | None = None):
        if config is None:
            config = GRPOConfig()
        if not isinstance(config, GRPOConfig):
            raise TypeError(f"GRPOObjective takes a GRPOConfig, got {type(config).__name__}")
        self.config = config
        self.needs_reference = config.kl_coef > 0

    def __call__(self, batch: dict) -> tuple["torch.Tensor", dict[str, float]]:
        """Returns this micro-batch's share of the step loss (with grad) and its metrics (plain floats)."""
        import torch

        cfg = self.config
        logp, mask = batch["logp"], batch["mask"].to(batch["logp"].dtype)
        old_logp = batch.get("old_logp")
        if old_logp is None:
            old_logp = logp.detach()
        advantage = batch["advantage"]
        per_token, st = grpo_token_loss(logp, old_logp, advantage, mask, cfg.eps_low, cfg.eps_high,
                                        is_weight=batch.get("is_weight"), ref_logp=batch.get("ref_logp"),
                                        kl_coef=cfg.kl_coef, kl_estimator=cfg.kl_estimator)
        if batch.get("weight") is not None:
            per_token = per_token * batch["weight"].to(per_token.dtype)[:, None]
        loss = aggregate(per_token, mask, cfg.aggregation, batch.get("norm_tokens"), batch.get("norm_sequences"),
                         cfg.constant_normalizer)

        with torch.no_grad():
            n_tok = mask.sum().clamp(min=1.0)
            on = mask > 0

            def mean(x):
                return float((x.float() * mask).sum() / n_tok)

            seqs = mask.sum(-1) > 0
            if batch.get("weight") is not None:
                seqs = seqs & (batch["weight"] > 0)
            adv = advantage if advantage.dim() == 1 else (advantage * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)
            adv = adv[seqs].float()
            metrics = {
                "clip_frac_low": mean(st["clipped_low"]),
                "clip_frac_high": mean(st["clipped_high"]),
                "ratio_mean": mean(st["ratio"]),
                "ratio_max": float(st["ratio"][on].max()) if on.any() else 1.0,
                "advantage_mean": float(adv.mean()) if adv.numel() else 0.0,
                "advantage_std": float(adv.std(unbiased=False)) if adv.numel() else 0.0,
                "advantage_min": float(adv.min()) if adv.numel() else 0.0,
                "advantage_max": float(adv.max()) if adv.numel() else 0.0,
                "tokens": float(mask.sum()),
            }
            if st["kl"] is not None:
                metrics["kl"] = mean(st["kl"])
            if batch.get("entropy") is not None:
                metrics["entropy"] = mean(batch["entropy"])
        return loss, metrics
