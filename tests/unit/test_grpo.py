"""GRPO on hand-worked tensors: clipping, aggregations, KL estimators, advantages, group handling; TRL parity."""

from __future__ import annotations

import math
from collections import defaultdict
from types import SimpleNamespace

import pyarrow as pa
import pytest
import torch

from halo_ray.config import from_dict
from halo_ray.errors import ConfigError, DataError
from halo_ray.groups import overlong_penalties, prepare_groups, shape_rewards, zero_variance_filter
from halo_ray.objectives import OBJECTIVES
from halo_ray.objectives.grpo import (GRPOConfig, GRPOObjective, aggregate, group_advantages, grpo_token_loss,
                                      kl_estimate)


def _t(rows):
    return torch.tensor(rows, dtype=torch.float32)


# ---------------------------------------------------------------- the clipped surrogate

# One token per row; ratio r = exp(logp - old_logp). eps_low 0.2 (floor 0.8), eps_high 0.28 (ceiling 1.28).
CASES = [  # (advantage, ratio, loss, d loss / d logp, clipped_low, clipped_high)
    (+1.0, 1.5, -1.28, 0.0, False, True),    # A > 0, r above the ceiling: clipped (min picks 1.28 A), no gradient
    (+1.0, 0.5, -0.5, -0.5, False, False),   # A > 0, r below the floor: clipping would raise the objective, not taken
    (+1.0, 1.2, -1.2, -1.2, False, False),   # inside the range
    (-1.0, 0.5, 0.8, 0.0, True, False),      # A < 0, r below the floor: clipped (0.8 A), no gradient
    (-1.0, 1.5, 1.5, 1.5, False, False),     # A < 0, r above the ceiling: not clipped, the full penalty stays
    (-2.0, 1.0, 2.0, 2.0, False, False),     # on-policy: -r A, gradient -r A
]


def test_clip_each_side_with_positive_and_negative_advantages():
    adv = torch.tensor([c[0] for c in CASES])
    old = torch.full((len(CASES), 1), -1.0)
    logp = (old + torch.tensor([[math.log(c[1])] for c in CASES])).requires_grad_(True)
    mask = torch.ones_like(old)
    per_token, st = grpo_token_loss(logp, old, adv, mask, eps_low=0.2, eps_high=0.28)
    torch.testing.assert_close(per_token[:, 0], torch.tensor([c[2] for c in CASES]))
    per_token.sum().backward()
    torch.testing.assert_close(logp.grad[:, 0], torch.tensor([c[3] for c in CASES]))
    assert st["clipped_low"][:, 0].tolist() == [c[4] for c in CASES]
    assert st["clipped_high"][:, 0].tolist() == [c[5] for c in CASES]
    assert st["kl"] is None


def test_is_weight_scales_the_surrogate_not_the_kl():
    logp = _t([[-1.0, -2.0]]).requires_grad_(True)
    ref = _t([[-1.5, -2.0]])
    w = _t([[0.5, 2.0]])
    per_token, st = grpo_token_loss(logp, logp.detach(), torch.tensor([1.0]), torch.ones(1, 2), 0.2, 0.28,
                                    is_weight=w, ref_logp=ref, kl_coef=0.1, kl_estimator="k1")
    # -w * r * A + 0.1 * (logp - ref), r = 1.
    torch.testing.assert_close(per_token, _t([[-0.5 + 0.1 * 0.5, -2.0 + 0.0]]))
    torch.testing.assert_close(st["kl"], _t([[0.5, 0.0]]))
    with pytest.raises(ValueError, match="ref_logp"):
        grpo_token_loss(logp, logp.detach(), torch.tensor([1.0]), torch.ones(1, 2), 0.2, 0.28, kl_coef=0.1)


# ---------------------------------------------------------------- aggregation

PER_TOKEN = _t([[1.0, 2.0, 3.0, 9.0], [4.0, 9.0, 9.0, 9.0], [5.0, 6.0, 9.0, 9.0]])
MASK = _t([[1, 1, 1, 0], [1, 0, 0, 0], [1, 1, 0, 0]])  # the 9s are masked


def test_three_aggregations_by_hand():
    assert aggregate(PER_TOKEN, MASK, "token", norm_tokens=6.0).item() == pytest.approx(21 / 6)
    # sequence means 2, 4, 5.5 over 3 sequences
    assert aggregate(PER_TOKEN, MASK, "sequence", norm_sequences=3.0).item() == pytest.approx((2 + 4 + 5.5) / 3)
    # Dr.GRPO: every sequence over the constant 4 tokens, mean over 3 sequences
    assert aggregate(PER_TOKEN, MASK, "constant", norm_sequences=3.0, constant=4).item() == pytest.approx(21 / 12)
    with pytest.raises(ValueError, match="positive constant"):
        aggregate(PER_TOKEN, MASK, "constant", norm_sequences=3.0, constant=0)


@pytest.mark.parametrize("how", ["token", "sequence", "constant"])
def test_two_micro_batches_equal_one_batch(how):
    """Micro-batch shares (sum / step normaliser) add up to the whole batch's loss and gradient."""
    x = PER_TOKEN.clone().requires_grad_(True)
    norms = dict(norm_tokens=MASK.sum(), norm_sequences=torch.tensor(3.0), constant=4)
    whole = aggregate(x * 2.0, MASK, how, **norms)
    g_whole, = torch.autograd.grad(whole, x)
    parts = aggregate(x[:2] * 2.0, MASK[:2], how, **norms) + aggregate(x[2:] * 2.0, MASK[2:], how, **norms)
    g_parts, = torch.autograd.grad(parts, x)
    assert parts.item() == pytest.approx(whole.item(), rel=1e-6)
    torch.testing.assert_close(g_parts, g_whole)
    assert g_whole[0, 3] == 0  # masked position: no gradient
    if how == "token":  # the mean of micro-batch means (10/4 and 11/2) is not the step's token mean (21/6)
        means = [aggregate(x[r], MASK[r], how, norm_tokens=MASK[r].sum()).item() for r in (slice(0, 2), slice(2, 3))]
        assert sum(means) / 2 == pytest.approx(4.0) and whole.item() / 2 == pytest.approx(3.5)


# ---------------------------------------------------------------- KL estimators

def test_kl_estimators_by_hand():
    logp, ref = _t([math.log(0.5)]), _t([math.log(0.25)])  # r = pi_ref / pi_theta = 1/2
    log_r = math.log(0.5)
    assert kl_estimate(logp, ref, "k1").item() == pytest.approx(-log_r)
    assert kl_estimate(logp, ref, "k2").item() == pytest.approx(0.5 * log_r ** 2)
    assert kl_estimate(logp, ref, "k3").item() == pytest.approx(0.5 - 1 - log_r)
    with pytest.raises(ValueError, match="k4"):
        kl_estimate(logp, ref, "k4")


def test_k1_and_k3_are_unbiased_for_kl_theta_ref():
    """Sampled from pi_theta, k1 and k3 average to KL(pi_theta || pi_ref): the convention's direction."""
    gen = torch.Generator().manual_seed(0)
    p = torch.tensor([0.9, 0.05, 0.05])
    q = torch.tensor([0.1, 0.1, 0.8])  # the reference; KL(p || q) = 1.80, KL(q || p) = 2.07
    exact = float((p * (p / q).log()).sum())
    y = torch.multinomial(p, 200_000, replacement=True, generator=gen)
    logp, ref = p.log()[y], q.log()[y]
    for est in ("k1", "k3"):
        assert kl_estimate(logp, ref, est).mean().item() == pytest.approx(exact, rel=0.02)
    reverse = float((q * (q / p).log()).sum())
    assert kl_estimate(logp, ref, "k3").mean().item() != pytest.approx(reverse, rel=0.05)  # not the other direction


# ---------------------------------------------------------------- advantages

def test_std_normalised_vs_dr_grpo_advantages():
    rewards = [1.0, 0.0, 0.5, 0.0, 0.5, 1.0, 0.7]
    groups = [7, 7, 3, 7, 3, 7, 9]  # interleaved; group 9 has one sample
    dr = group_advantages(rewards, groups, scale_std=False)
    torch.testing.assert_close(dr, torch.tensor([0.5, -0.5, 0.0, -0.5, 0.0, 0.5, 0.0]))
    std = math.sqrt(4 * 0.25 / 3)  # Bessel-corrected std of group 7 (as TRL's nanstd)
    adv = group_advantages(rewards, groups, scale_std=True, eps=1e-4)
    torch.testing.assert_close(adv, torch.tensor([0.5, -0.5, 0.0, -0.5, 0.0, 0.5, 0.0]) / (torch.tensor(
        [std, std, 0.0, std, 0.0, std, 0.0]) + 1e-4))
    with pytest.raises(ValueError, match="differ in length"):
        group_advantages([1.0], [0, 1])


def test_advantages_match_trl_group_formula():
    from trl.trainer.utils import nanstd

    gen = torch.Generator().manual_seed(1)
    rewards = torch.rand(4 * 8, generator=gen)
    grouped = rewards.view(-1, 8)
    expected = (rewards - grouped.mean(1).repeat_interleave(8)) / (nanstd(grouped, dim=1).repeat_interleave(8) + 1e-4)
    torch.testing.assert_close(group_advantages(rewards, torch.arange(4).repeat_interleave(8)), expected)


# ---------------------------------------------------------------- the objective

def _batch(**extra):
    logp = _t([[-1.0, -2.0, 0.0], [-0.5, 0.0, 0.0]]).requires_grad_(True)
    batch = dict(logp=logp, mask=_t([[1, 1, 0], [1, 0, 0]]), advantage=torch.tensor([2.0, -1.0]),
                 weight=torch.tensor([1.0, 1.0]), group=torch.tensor([0, 0]), is_weight=torch.ones(2, 3),
                 entropy=_t([[0.5, 1.0, 0.0], [1.5, 0.0, 0.0]]), norm_tokens=torch.tensor(3.0),
                 norm_sequences=torch.tensor(2.0))
    batch["old_logp"] = logp.detach()
    batch.update(extra)
    return batch


def test_registered_and_declares_its_needs():
    assert OBJECTIVES.get("grpo") is GRPOObjective
    assert GRPOObjective.needs_old_logp and not GRPOObjective().needs_reference
    assert GRPOObjective(GRPOConfig(kl_coef=0.05)).needs_reference
    with pytest.raises(TypeError, match="GRPOConfig"):
        GRPOObjective(object())


def test_on_policy_loss_is_the_policy_gradient_and_metrics():
    batch = _batch()
    loss, m = GRPOObjective()(batch)
    # ratio 1: l_t = -A; token aggregation over the step's 3 tokens: (-2 - 2 + 1) / 3.
    assert loss.item() == pytest.approx(-1.0)
    loss.backward()
    torch.testing.assert_close(batch["logp"].grad, _t([[-2 / 3, -2 / 3, 0.0], [1 / 3, 0.0, 0.0]]))
    assert m["clip_frac_low"] == 0.0 and m["clip_frac_high"] == 0.0
    assert m["ratio_mean"] == pytest.approx(1.0) and m["ratio_max"] == pytest.approx(1.0)
    assert m["entropy"] == pytest.approx(1.0)
    assert (m["advantage_mean"], m["advantage_min"], m["advantage_max"]) == pytest.approx((0.5, -1.0, 2.0))
    assert m["advantage_std"] == pytest.approx(1.5)
    assert "kl" not in m and all(isinstance(v, float) for v in m.values())


def test_objective_clip_fracs_weights_kl_and_padding():
    old = _t([[-1.0 - math.log(1.5), -2.0, 0.0], [-0.5 + math.log(2.0), 0.0, 0.0], [0.0, 0.0, 0.0]])
    logp = _t([[-1.0, -2.0, 0.0], [-0.5, 0.0, 0.0], [3.0, 3.0, 3.0]]).requires_grad_(True)
    batch = _batch(logp=logp, old_logp=old, mask=_t([[1, 1, 0], [1, 0, 0], [0, 0, 0]]),
                   advantage=torch.tensor([2.0, -1.0, 5.0]), weight=torch.tensor([1.0, 1.0, 0.0]),
                   is_weight=torch.ones(3, 3), entropy=torch.zeros(3, 3), ref_logp=logp.detach() - 0.1)
    loss, m = GRPOObjective(GRPOConfig(kl_coef=0.5, kl_estimator="k1"))(batch)
    # Row 0 token 0: r = 1.5 > 1.28 with A=2: clipped high -> -2.56; token 1: r=1 -> -2. Row 1: r = 0.5 < 0.8
    # with A=-1: clipped low -> 0.8. KL k1 = 0.1 on each of the 3 tokens, times 0.5. Row 2 is padding.
    assert loss.item() == pytest.approx((-2.56 - 2.0 + 0.8 + 3 * 0.05) / 3, rel=1e-5)
    assert m["clip_frac_high"] == pytest.approx(1 / 3) and m["clip_frac_low"] == pytest.approx(1 / 3)
    assert m["kl"] == pytest.approx(0.1, rel=1e-5)
    assert m["ratio_max"] == pytest.approx(1.5, rel=1e-5)
    assert m["advantage_max"] == 2.0  # the padding row's advantage is not counted


def test_sequence_and_constant_aggregation_in_the_objective():
    seq, _ = GRPOObjective(GRPOConfig(aggregation="sequence"))(_batch())
    assert seq.item() == pytest.approx((-2.0 + 1.0) / 2)
    const, _ = GRPOObjective(GRPOConfig(aggregation="constant", constant_normalizer=4))(_batch())
    assert const.item() == pytest.approx((-2 - 2 + 1) / (2 * 4))


def test_config_is_strict():
    with pytest.raises(ConfigError, match="constant_normalizer"):
        from_dict(GRPOConfig, {"aggregation": "constant"})
    with pytest.raises(ConfigError, match="aggregation"):
        from_dict(GRPOConfig, {"aggregation": "tokens"})
    with pytest.raises(ConfigError, match="updates_per_batch"):
        from_dict(GRPOConfig, {"updates_per_batch": 0})
    cfg = from_dict(GRPOConfig, {"overlong": "penalty", "overlong_buffer": 4})
    assert cfg.eps_low == 0.2 and cfg.eps_high == 0.28 and cfg.kl_coef == 0.0 and cfg.scale_std


# ---------------------------------------------------------------- group handling

def test_zero_variance_filter():
    keys = ["a", "a", "b", "b", "c", "a", "d"]
    rewards = [1.0, 1.0, 0.0, 0.7, 0.5, 1.0, 0.3]
    keep, dropped = zero_variance_filter(keys, rewards)
    assert keep == [False, False, True, True, False, False, False] and dropped == 3  # a (all 1), c, d (single)


def test_overlong_penalty_ramp():
    # L_max 10, buffer 4: no penalty up to 6 tokens, then (n - 6) / 4; a cut completion takes the full penalty.
    pen = overlong_penalties(["stop", "stop", "stop", "stop", "length"], [3, 6, 8, 10, 10], 10, 4, 0.5)
    assert pen == pytest.approx([0.0, 0.0, 0.25, 0.5, 0.5])
    assert overlong_penalties(["stop", "length"], [10, 7], 10, 0, 1.0) == [0.0, 1.0]


def test_reward_shaping_uses_the_verifiers_table():
    # A wrong answer (1 of 2 tests), a success (2 of 2), a compile failure; the verifier's own rewards as given.
    rewards, verdicts, passed, total = [0.25, 1.0, 0.0], ["WRONG_OUTPUT", "SUCCESS", "SYNTAX_ERROR"], [1, 2, 0], [2, 2, 2]
    cols = (verdicts, passed, total, [True, False, False])
    assert shape_rewards("verifier", rewards, *cols) == [0.25, 1.0, 0.0]
    assert shape_rewards("graduated", rewards, *cols) == [0.7, 1.0, 0.0]
    assert shape_rewards("pass_fail", rewards, *cols) == [0.0, 1.0, 0.0]
    assert shape_rewards("pass_rate", rewards, *cols) == [0.5, 1.0, 0.0]
    with pytest.raises(ValueError, match="known: verifier, graduated"):
        shape_rewards("binary", rewards, *cols)
    # A crash with warnings: graduated's lower compile tier, the same number the verifier gives under graduated.
    from halo_ray.verifiers import score

    crash = {"verdict": "RUNTIME_ERROR", "passed": 0, "total": 3, "warnings": True}
    assert shape_rewards("graduated", [0.0], ["RUNTIME_ERROR"], [0], [3], [True]) == [score(crash, "graduated")["reward"]] == [0.3]


def _scored(rows):
    cols = ("prompt_id", "reward", "verdict", "pass_rate", "finish_reason", "token_ids")
    table = pa.table({c: [r[i] for r in rows] for i, c in enumerate(cols)})
    ok = [r[2] == "SUCCESS" for r in rows]
    return (table.append_column("tests_passed", pa.array([2 if o else 1 for o in ok], pa.int32()))
            .append_column("tests_total", pa.array([2] * len(rows), pa.int32()))
            .append_column("warnings", pa.array([False] * len(rows))))


ROWS = [("p", 1.0, "SUCCESS", 1.0, "stop", [1, 2]), ("p", 0.7, "WRONG_OUTPUT", 0.5, "length", [1, 2, 3, 4]),
        ("q", 1.0, "SUCCESS", 1.0, "stop", [1]), ("q", 1.0, "SUCCESS", 1.0, "stop", [1, 2])]


def test_prepare_groups_filters_flat_groups_and_adds_columns():
    out, counts = prepare_groups(_scored(ROWS), GRPOConfig(scale_std=False, overlong="mask"), max_new_tokens=4)
    assert out.column("prompt_id").to_pylist() == ["p", "p"]
    assert out.column("advantage").to_pylist() == pytest.approx([0.15, -0.15])
    assert out.column("weight").to_pylist() == [1.0, 0.0]  # the cut completion takes no loss
    assert out.column("group").to_pylist() == [0, 0]
    assert counts == {"groups": 2, "filtered_groups": 1, "filtered_samples": 2, "overlong": 1, "overlong_masked": 1}


def test_prepare_groups_penalty_and_pass_fail_and_keep():
    cfg = GRPOConfig(scale_std=False, overlong="penalty", overlong_penalty=1.0, reward="pass_fail",
                     filter_zero_variance=False)
    out, counts = prepare_groups(_scored(ROWS), cfg, max_new_tokens=4)
    assert out.column("train_reward").to_pylist() == pytest.approx([1.0, -1.0, 1.0, 1.0])
    assert out.column("advantage").to_pylist() == pytest.approx([1.0, -1.0, 0.0, 0.0])
    assert out.column("group").to_pylist() == [0, 0, 1, 1]
    assert counts["filtered_groups"] == 0 and counts["overlong_masked"] == 0
    with pytest.raises(DataError, match="finish_reason"):
        prepare_groups(_scored(ROWS).drop(["finish_reason"]), cfg, 4)
    with pytest.raises(DataError, match="tests_passed"):  # a scheme is recomputed from the test counts
        prepare_groups(_scored(ROWS).drop(["tests_passed"]), cfg, 4)


# ---------------------------------------------------------------- TRL parity

class _Accelerator:
    num_processes = 1

    def reduce(self, x, reduction="sum"):
        return x

    def gather(self, x):
        return x


def _trl_loss(logp, old, adv, mask, is_ratio, ref, beta, num_items, grad_accum, loss_type="dapo", max_len=0):
    """TRL's own ``GRPOTrainer._compute_loss`` (unmodified), called on a stand-in trainer.

    The stand-in supplies the attributes that method reads and a model forward that returns our log-probs:
    the loss arithmetic that runs is TRL's. Token-level vLLM IS correction, one process.
    """
    from trl.trainer.grpo_trainer import GRPOTrainer

    fake = SimpleNamespace(
        top_entropy_quantile=1.0, off_policy_mask_threshold=None, importance_sampling_level="token", beta=beta,
        loss_type=loss_type, max_completion_length=max_len, epsilon_low=0.2, epsilon_high=0.28, use_vllm=True, vllm_importance_sampling_correction=True,
        model=SimpleNamespace(training=True), current_gradient_accumulation_steps=grad_accum, accelerator=_Accelerator(),
        args=SimpleNamespace(delta=None, use_bias_correction_kl=False, steps_per_generation=grad_accum),
        _entropy_bonus_enabled=False, aux_loss_enabled=False, _metrics=defaultdict(lambda: defaultdict(list)),
        _get_per_token_logps_and_entropies=lambda *a, **k: (logp, torch.zeros_like(logp), None))
    b, t = logp.shape
    inputs = {"prompt_ids": torch.zeros(b, 1, dtype=torch.long), "prompt_mask": torch.ones(b, 1, dtype=torch.long),
              "completion_ids": torch.zeros(b, t, dtype=torch.long), "completion_mask": mask.long(),
              "advantages": adv, "old_per_token_logps": old, "importance_sampling_ratio": is_ratio,
              "ref_per_token_logps": ref, "num_items_in_batch": torch.tensor(float(num_items))}
    loss = GRPOTrainer._compute_loss(fake, None, inputs)
    return loss, fake._metrics["train"]


@pytest.mark.parametrize("loss_type,aggregation,beta", [("dapo", "token", 0.0), ("dapo", "token", 0.04),
                                                        ("dr_grpo", "constant", 0.0), ("grpo", "sequence", 0.04)])
def test_loss_equals_trl(loss_type, aggregation, beta):
    """TRL's dapo = our token aggregation; dr_grpo = constant (its B x max_completion_length); grpo = sequence
    (TRL averages per micro-batch and divides by grad_accum: equal to ours for equal micro-batch sizes)."""
    gen = torch.Generator().manual_seed(3)
    b, t = 6, 5
    mask = (torch.rand(b, t, generator=gen) > 0.3).float()
    mask[:, 0] = 1.0
    old = -torch.rand(b, t, generator=gen) * 3 * mask
    logp_ = (old + (torch.rand(b, t, generator=gen) - 0.5) * mask)
    ref = (old + (torch.rand(b, t, generator=gen) - 0.5) * 0.3) * mask
    adv = torch.randn(b, generator=gen)
    is_w = torch.rand(b, t, generator=gen) * 2 * mask + (1 - mask)
    n = mask.sum()
    cfg = GRPOConfig(aggregation=aggregation, kl_coef=beta, kl_estimator="k3", constant_normalizer=t)

    ours_grads, trl_grads, ours_total, trl_total = [], [], 0.0, 0.0
    for rows in (slice(0, 3), slice(3, 6)):  # two micro-batches of one step, normalised by the step's tokens
        lp_a = logp_[rows].clone().requires_grad_(True)
        lp_b = logp_[rows].clone().requires_grad_(True)
        batch = dict(logp=lp_a, old_logp=old[rows], mask=mask[rows], advantage=adv[rows], is_weight=is_w[rows],
                     norm_tokens=n, norm_sequences=torch.tensor(float(b)))
        if beta:
            batch["ref_logp"] = ref[rows]
        ours, m = GRPOObjective(cfg)(batch)
        theirs, tm = _trl_loss(lp_b, old[rows], adv[rows], mask[rows], is_w[rows], ref[rows], beta, n, grad_accum=2,
                               loss_type=loss_type, max_len=t)
        ours.backward()
        theirs.backward()
        ours_total += ours.item()
        trl_total += theirs.item()
        ours_grads.append(lp_a.grad)
        trl_grads.append(lp_b.grad)
        assert m["clip_frac_low"] == pytest.approx(tm["clip_ratio/low_mean"][0], abs=1e-6)
        assert m["clip_frac_high"] == pytest.approx(tm["clip_ratio/high_mean"][0], abs=1e-6)
        if beta:
            assert m["kl"] == pytest.approx(tm["kl"][0], rel=1e-5)
    assert ours_total == pytest.approx(trl_total, rel=1e-6)
    torch.testing.assert_close(torch.cat(ours_grads), torch.cat(trl_grads))
    assert any(g.abs().sum() > 0 for g in ours_grads)
