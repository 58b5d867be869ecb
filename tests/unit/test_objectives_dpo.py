"""The DPO objective: hand-worked log-probabilities through the learner contract, and TRL's DPO loss."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

from halo_ray.objectives import OBJECTIVES  # noqa: E402
from halo_ray.objectives.dpo import DPOConfig, DPOObjective, dpo_loss  # noqa: E402


def contract_batch(logp, ref_logp, mask, pair_id, pair_role, norm_pairs):
    """A micro-batch as the learner contract defines it (per-token (B, L), per-sequence (B,), scalars)."""
    logp = torch.tensor(logp, requires_grad=True)
    mask = torch.tensor(mask)
    B = mask.shape[0]
    return {
        "logp": logp, "mask": mask, "ref_logp": torch.tensor(ref_logp), "entropy": torch.zeros_like(mask),
        "behaviour_logp": torch.zeros_like(mask), "is_weight": torch.ones_like(mask),
        "advantage": torch.zeros(B), "weight": (torch.tensor(pair_id) >= 0).float(),
        "group": torch.arange(B), "pair_id": torch.tensor(pair_id), "pair_role": torch.tensor(pair_role),
        "norm_tokens": mask.sum(), "norm_sequences": torch.tensor(float(B)), "norm_pairs": torch.tensor(float(norm_pairs)),
    }


def softplus(x):
    return math.log1p(math.exp(x))


def test_hand_worked_pairs_in_one_micro_batch():
    # rows: 0 = rejected of pair 7, 1 = chosen of pair 3, 2 = chosen of pair 7, 3 = rejected of pair 3, 4 = padding.
    # Masked positions hold junk that must not count. Sequence sums (policy / reference):
    #   pair 7: chosen -2.0 / -3.0, rejected -4.0 / -3.5  -> d = 1.0 + 0.5 = 1.5
    #   pair 3: chosen -1.0 / -0.5, rejected -1.5 / -2.5  -> d = -0.5 - 1.0 = -1.5
    logp = [[-1.0, -3.0, 9.0], [-0.25, -0.75, 9.0], [-0.5, -1.5, 9.0], [-1.5, 9.0, 9.0], [9.0, 9.0, 9.0]]
    ref = [[-1.5, -2.0, 9.0], [-0.5, 0.0, 9.0], [-1.0, -2.0, 9.0], [-2.5, 9.0, 9.0], [9.0, 9.0, 9.0]]
    mask = [[1.0, 1.0, 0.0], [1.0, 1.0, 0.0], [1.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]
    batch = contract_batch(logp, ref, mask, [7, 3, 7, 3, -1], [1, 0, 0, 1, -1], norm_pairs=4)
    loss, metrics = OBJECTIVES.get("dpo")(DPOConfig(beta=0.1))(batch)
    expected = (softplus(-0.15) + softplus(0.15)) / 4  # -log sigmoid(x) = softplus(-x); the step has 4 pairs
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert metrics["pairs"] == 2.0
    assert metrics["rewards/chosen"] == pytest.approx((0.1 * 1.0 + 0.1 * -0.5) / 2)
    assert metrics["rewards/rejected"] == pytest.approx((0.1 * -0.5 + 0.1 * 1.0) / 2)
    assert metrics["rewards/margins"] == pytest.approx(0.0, abs=1e-7)
    assert metrics["rewards/accuracies"] == 0.5
    assert metrics["logps/chosen"] == pytest.approx(-1.5) and metrics["logps/rejected"] == pytest.approx(-2.75)
    loss.backward()
    grad = batch["logp"].grad
    sig = 1 / (1 + math.exp(0.15))  # d/dx of -log sigmoid(beta x) is -beta sigmoid(-beta x)
    assert grad[2, 0].item() == pytest.approx(-0.1 * sig / 4, rel=1e-5)  # chosen of pair 7 is pushed up
    assert grad[0, 0].item() == pytest.approx(0.1 * sig / 4, rel=1e-5)  # its rejected is pushed down
    assert grad[:, 2].abs().sum() == 0 and grad[4].abs().sum() == 0 and grad[3, 1] == 0  # masked, padding


def test_label_smoothing_beta_and_no_pairs():
    c, r, rc, rr = (torch.tensor([v]) for v in (-2.0, -4.0, -3.0, -3.5))
    plain, cr, rr_ = dpo_loss(c, r, rc, rr, beta=0.5)
    assert plain.item() == pytest.approx(softplus(-0.75)) and cr.item() == pytest.approx(0.5)
    smooth, _, _ = dpo_loss(c, r, rc, rr, beta=0.5, label_smoothing=0.2)
    assert smooth.item() == pytest.approx(0.8 * softplus(-0.75) + 0.2 * softplus(0.75))
    batch = contract_batch([[-1.0, -2.0]], [[-1.0, -2.0]], [[1.0, 1.0]], [-1], [-1], norm_pairs=0)
    loss, metrics = DPOObjective()(batch)
    loss.backward()
    assert loss.item() == 0.0 and metrics == {"pairs": 0.0} and batch["logp"].grad is not None
    assert DPOConfig().beta == 0.1 and DPOConfig().label_smoothing == 0.0  # seed 002
    assert DPOConfig(beta=0.0).validate() and DPOConfig(label_smoothing=0.5).validate()
    assert DPOObjective.needs_reference and not DPOObjective.needs_old_logp


def test_broken_pairs_are_refused():
    batch = contract_batch([[-1.0], [-1.0], [-1.0]], [[-1.0], [-1.0], [-1.0]], [[1.0], [1.0], [1.0]],
                           [0, 0, 1], [0, 1, 0], norm_pairs=2)
    with pytest.raises(ValueError, match="broken pairs"):
        DPOObjective()(batch)
    batch = contract_batch([[-1.0], [-1.0]], [[-1.0], [-1.0]], [[1.0], [1.0]], [0, 0], [0, 0], norm_pairs=1)
    with pytest.raises(ValueError, match="broken pairs"):
        DPOObjective()(batch)


def test_loss_and_metrics_equal_trls_dpo_trainer(tiny_model, tmp_path):
    """TRL's DPOTrainer (loss_type sigmoid, beta 0.1) on two pairs of the tiny model, against a perturbed
    reference; our objective gets the same models' token log-probs through the learner contract."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig as TRLDPOConfig
    from trl import DPOTrainer
    from trl.trainer.utils import selective_log_softmax

    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(tiny_model)
    policy = AutoModelForCausalLM.from_pretrained(tiny_model)
    ref = AutoModelForCausalLM.from_pretrained(tiny_model)
    with torch.no_grad():
        for p in ref.parameters():
            p.add_(0.05 * torch.randn_like(p))
    data = Dataset.from_list([
        {"prompt": "def f(x):\n", "chosen": "    return x + 1\n", "rejected": "    return x\n"},
        {"prompt": "def g(xs):\n    \"\"\"Sum.\"\"\"\n", "chosen": "    return sum(xs)\n", "rejected": "    pass\n"},
    ])
    args = TRLDPOConfig(output_dir=str(tmp_path), use_cpu=True, report_to=[], beta=0.1, loss_type=["sigmoid"],
                        per_device_train_batch_size=2)
    trainer = DPOTrainer(model=policy, ref_model=ref, args=args, train_dataset=data, processing_class=tok)
    trainer.model.train()
    inputs = trainer.data_collator([trainer.train_dataset[i] for i in range(2)])  # rows: [chosen x2, rejected x2]
    trl_loss = trainer._compute_loss(trainer.model, inputs, False)
    trl_metrics = {k: v[-1] for k, v in trainer._metrics["train"].items()}

    def token_logps(model):
        logits = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]).logits
        return selective_log_softmax(logits[:, :-1].float(), inputs["input_ids"][:, 1:])

    mask = inputs["completion_mask"][:, 1:].float()
    logp = token_logps(trainer.model) * mask
    with torch.no_grad():
        ref_logp = token_logps(ref) * mask
    batch = {"logp": logp, "ref_logp": ref_logp, "mask": mask, "pair_id": torch.tensor([0, 1, 0, 1]),
             "pair_role": torch.tensor([0, 0, 1, 1]), "weight": torch.ones(4), "norm_pairs": torch.tensor(2.0)}
    loss, metrics = DPOObjective(DPOConfig(beta=0.1))(batch)
    assert loss.item() == pytest.approx(trl_loss.item(), rel=1e-5, abs=1e-6)
    for key in ("rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies", "logps/chosen",
                "logps/rejected"):
        assert metrics[key] == pytest.approx(trl_metrics[key], rel=1e-4, abs=1e-6), key
    assert abs(metrics["rewards/margins"]) > 1e-4  # the reference differs: a test that could fail
