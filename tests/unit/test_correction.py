"""Off-policy correction on hand-worked log-probs: a known ratio, the cap, the mask bounds, masked positions."""

from __future__ import annotations

import math

import pytest
import torch

from halo_ray.config import from_dict
from halo_ray.errors import ConfigError
from halo_ray.objectives.correction import CorrectionConfig, correct

LN2 = math.log(2.0)


def _t(rows):
    return torch.tensor(rows, dtype=torch.float32)


# Row 0: ratios 2, 1/2 and one masked position whose log-probs are garbage (must be ignored).
# Row 1: ratio 4 on its first token (above the cap of 2), 1 on the second.
BEHAV = _t([[-1.0, -1.0, -5.0], [-3.0, -0.5, 0.0]])
LOGP = _t([[-1.0 + LN2, -1.0 - LN2, 3.0], [-3.0 + 2 * LN2, -0.5, 0.0]])
MASK = _t([[1, 1, 0], [1, 1, 0]])


def test_truncate_weights_are_ratios_capped_and_one_off_mask():
    out = correct(BEHAV, LOGP, MASK, CorrectionConfig(mode="truncate", cap=2.0))
    torch.testing.assert_close(out.weight, _t([[2.0, 0.5, 1.0], [2.0, 1.0, 1.0]]))
    assert out.mask.tolist() == MASK.tolist() and out.keep.tolist() == [True, True]
    m = out.metrics
    assert m["is_ratio_mean"] == pytest.approx((2 + 0.5 + 4 + 1) / 4, rel=1e-6)
    assert m["is_ratio_max"] == pytest.approx(4.0, rel=1e-6)  # the masked position (ratio e^8) is ignored
    assert m["is_truncated_frac"] == pytest.approx(0.25)
    assert m["is_masked_frac"] == 0.0
    # k3 = r - 1 - log r per token: r=2: 1 - ln2; r=1/2: -1/2 + ln2; r=4: 3 - 2 ln2; r=1: 0.
    k3 = [(1 - LN2), (-0.5 + LN2), (3 - 2 * LN2), 0.0]
    assert m["behaviour_kl"] == pytest.approx(sum(k3) / 4, rel=1e-6)


def test_weight_has_no_grad_and_cap_is_configurable():
    logp = LOGP.clone().requires_grad_(True)
    out = correct(BEHAV, logp, MASK, CorrectionConfig(mode="truncate", cap=3.0))
    assert not out.weight.requires_grad
    assert out.weight[1, 0].item() == pytest.approx(3.0)
    assert out.metrics["is_truncated_frac"] == pytest.approx(0.25)


def test_none_gives_unit_weights_but_still_measures():
    out = correct(BEHAV, LOGP, MASK, CorrectionConfig(mode="none"))
    assert out.weight.tolist() == [[1.0] * 3] * 2
    assert out.metrics["is_ratio_max"] == pytest.approx(4.0, rel=1e-6)
    assert out.metrics["is_truncated_frac"] == 0.0


def test_on_policy_is_identity():
    out = correct(BEHAV, BEHAV, MASK, CorrectionConfig(mode="truncate"))
    assert out.weight.tolist() == [[1.0] * 3] * 2
    assert out.metrics["behaviour_kl"] == 0.0 and out.metrics["is_ratio_mean"] == 1.0


def test_mask_geometric_mean_bounds():
    # Geometric means: row 0 exp((ln2 - ln2)/2) = 1 (kept); row 1 exp(2 ln2 / 2) = 2 (dropped above 1.25).
    cfg = CorrectionConfig(mode="mask", mask_low=0.8, mask_high=1.25)
    out = correct(BEHAV, LOGP, MASK, cfg)
    assert out.keep.tolist() == [True, False]
    assert out.mask.tolist() == [[1, 1, 0], [0, 0, 0]]
    assert out.weight.tolist() == [[1.0] * 3] * 2
    assert out.metrics["is_masked_frac"] == 0.5
    # Bounds are inclusive: a mean ratio of exactly 2 is kept when mask_high=2.
    out = correct(BEHAV, LOGP, MASK, CorrectionConfig(mode="mask", mask_low=0.5, mask_high=2.0))
    assert out.keep.tolist() == [True, True]
    # And below mask_low: invert the ratios of row 1 (mean 1/2).
    out = correct(LOGP, BEHAV, MASK, CorrectionConfig(mode="mask", mask_low=0.6, mask_high=2.0))
    assert out.keep.tolist() == [True, False]


def test_mask_product_depends_on_length():
    # Row 0: 3 tokens each of ratio 1.2: geometric mean 1.2 (kept), product 1.728 (dropped above 1.5).
    behav = _t([[-1.0, -1.0, -1.0]])
    logp = behav + math.log(1.2)
    mask = _t([[1, 1, 1]])
    geo = correct(behav, logp, mask, CorrectionConfig(mode="mask", mask_low=0.5, mask_high=1.5))
    prod = correct(behav, logp, mask, CorrectionConfig(mode="mask", mask_low=0.5, mask_high=1.5, sequence_ratio="product"))
    assert geo.keep.tolist() == [True] and prod.keep.tolist() == [False]


def test_mask_keeps_empty_sequences_and_ignores_masked_positions():
    # Row 1 has no completion tokens (padding row): kept, not counted as masked.
    behav = _t([[-1.0, -9.0], [0.0, 0.0]])
    logp = _t([[-1.0, 9.0], [5.0, 5.0]])
    mask = _t([[1, 0], [0, 0]])
    out = correct(behav, logp, mask, CorrectionConfig(mode="mask"))
    assert out.keep.tolist() == [True, True]
    assert out.metrics["is_masked_frac"] == 0.0


def test_decoupled_weights_from_proximal_policy():
    # The weight follows pi_prox / pi_behav (2 and 1/2 and 4 capped at 2), not the current policy.
    prox = LOGP
    current = LOGP + 0.3
    out = correct(BEHAV, current, MASK, CorrectionConfig(mode="decoupled"), proximal_logp=prox)
    torch.testing.assert_close(out.weight, _t([[2.0, 0.5, 1.0], [2.0, 1.0, 1.0]]))
    assert out.metrics["is_ratio_max"] == pytest.approx(4.0, rel=1e-6)
    # KL(behaviour || current) uses the current policy: r = e^0.3 * (behaviour ratio).
    log_r = torch.tensor([LN2 + 0.3, -LN2 + 0.3, 2 * LN2 + 0.3, 0.3])
    assert out.metrics["behaviour_kl"] == pytest.approx(float((log_r.exp() - 1 - log_r).mean()), rel=1e-5)
    with pytest.raises(ValueError, match="proximal_logp"):
        correct(BEHAV, current, MASK, CorrectionConfig(mode="decoupled"))


def test_config_is_strict():
    with pytest.raises(ConfigError, match="mode"):
        from_dict(CorrectionConfig, {"mode": "clip"})
    with pytest.raises(ConfigError, match="cap must be >= 1"):
        from_dict(CorrectionConfig, {"cap": 0.5})
    with pytest.raises(ConfigError, match="mask_low"):
        from_dict(CorrectionConfig, {"mask_low": 1.5})


def test_correction_feeds_the_objective():
    """The weight scales a token's gradient; a masked-out sequence gets none (the GRPO objective, on-policy)."""
    from halo_ray.objectives.grpo import GRPOConfig, GRPOObjective

    for mode, expected in (("truncate", [[-2.0, -0.5, 0.0], [-2.0, -1.0, 0.0]]),
                           ("mask", [[-1.0, -1.0, 0.0], [0.0, 0.0, 0.0]])):
        out = correct(BEHAV, LOGP, MASK, CorrectionConfig(mode=mode))
        logp = LOGP.clone().requires_grad_(True)
        batch = dict(logp=logp, old_logp=logp.detach(), mask=out.mask, is_weight=out.weight,
                     advantage=torch.tensor([1.0, 1.0]), norm_tokens=torch.tensor(1.0))
        loss, _ = GRPOObjective(GRPOConfig())(batch)
        loss.backward()
        torch.testing.assert_close(logp.grad, _t(expected))
