"""Learner at world size 1 on the tiny model: real DeepSpeed (ZeRO-2, gloo, CPU), no Ray."""

from __future__ import annotations

import dataclasses
import random

import numpy as np
import pytest
import torch

from halo_ray.config import from_dict
from halo_ray.errors import ConfigError
from halo_ray.learner import Learner
from halo_ray.learner_plan import merge_metrics, plan_micro_batches, step_norms
from halo_ray.objectives import tokenize_pair
from halo_ray.sections import LearnerConfig, LoraConfig, ModelConfig, ObjectiveConfig


LEARNER = LearnerConfig(lr=1e-3, micro_batch_size=2, grad_accum=2, warmup_steps=2, seed=3)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    from halo_ray.tiny import init_tiny

    return str(init_tiny(tmp_path_factory.mktemp("tiny") / "model", seed=0))


def examples(tokenizer, n=8):
    return [tokenize_pair(tokenizer, f'def f(x):\n    """Add {k} to x."""\n    ', f"return x + {k}\n")
            for k in range(n)]


def test_learner_config_validation():
    assert LearnerConfig().validate() == []
    msgs = LearnerConfig(num_ranks=0, lr=0.0, offload_optimizer=True, zero_stage=0).validate()
    assert any("num_ranks" in m for m in msgs) and any("lr" in m for m in msgs)
    assert any("offload_optimizer" in m for m in msgs)
    with pytest.raises(ConfigError, match="zero_stage"):
        from_dict(LearnerConfig, {"zero_stage": 1})


def test_plan_micro_batches_equal_partition_for_ranks_and_accumulation():
    data = [{"i": i} for i in range(10)]
    one = plan_micro_batches(data, 1, 2, 4, random.Random(0))
    two = plan_micro_batches(data, 2, 2, 2, random.Random(0))
    assert len(one) == len(two) == 2  # 10 examples fill 2 steps of 8: 3 padding micro-batches
    for s1, s2 in zip(one, two):
        assert len(s1[0]) == 4 and len(s2[0]) == len(s2[1]) == 2
        # Same micro-batches, dealt round robin: rank r gets micro-batches r, r+2, ...
        assert s1[0][0::2] == s2[0] and s1[0][1::2] == s2[1]
    micro = [m for step in one for m in step[0]]
    assert micro.count(None) == 3, "padding micro-batches train nothing; no example is repeated"
    assert sorted(i for m in micro if m for i in m) == list(range(10))


def test_plan_keeps_units_whole_through_shuffling_and_ranks():
    """A GRPO group (4 samples) or a DPO pair (2) is never split across micro-batches or ranks."""
    data = [{"unit": ("g", i // 4)} for i in range(12)] + [{"unit": ("p", i // 2)} for i in range(6)]
    for ranks, accum in ((1, 2), (2, 1)):
        plan = plan_micro_batches(data, ranks, 4, accum, random.Random(3))
        seen = []
        for step in plan:
            for rank in step:
                for micro in rank:
                    for unit in {data[i]["unit"] for i in micro or []}:
                        members = [i for i in range(len(data)) if data[i]["unit"] == unit]
                        assert set(members) <= set(micro), f"unit {unit} split"
                    seen += micro or []
        assert sorted(seen) == list(range(len(data)))


def test_step_norms_count_the_whole_step():
    data = [{"prompt_token_ids": [1], "token_ids": [2, 3, 4]}, {"prompt_token_ids": [1, 1], "token_ids": [5]},
            {"prompt_token_ids": [1], "token_ids": [6, 7], "weight": 0.0, "pair_id": 4},
            {"prompt_token_ids": [1], "token_ids": [6], "pair_id": 4}]
    norms = step_norms(data, [[[0, 1]], [[2, 3], None]], max_len=3)
    # Truncated to max_len 3: 2 + 1 tokens, the weight-0 row does not count, the last row 1.
    assert norms == {"norm_tokens": 4.0, "norm_sequences": 3.0, "norm_pairs": 1.0}


def test_train_lowers_loss_and_weights_have_hf_names(tiny_dir):
    from transformers import AutoModelForCausalLM

    learner = Learner(ModelConfig(path=tiny_dir, max_model_len=128), LEARNER, ObjectiveConfig(name="sft"))
    batch = examples(learner.tokenizer)
    before = learner.rollout_weights()
    first = learner.train(batch)
    for _ in range(3):
        last = learner.train(batch)
    assert first["steps"] == 2 and last["global_step"] == 8
    assert first["samples"] == 8 and first["tokens"] > 0 and first["samples_per_s"] > 0
    assert last["loss"] < first["loss"] - 0.5
    assert 0 < first["grad_norm"] < float("inf"), "the pre-clipping gradient norm is reported"

    after = learner.rollout_weights()
    hf = AutoModelForCausalLM.from_pretrained(tiny_dir).state_dict()
    assert set(after) == set(hf)
    assert all(after[k].shape == hf[k].shape for k in hf)
    assert not torch.equal(after["model.layers.0.self_attn.q_proj.weight"], before["model.layers.0.self_attn.q_proj.weight"])
    assert merge_metrics([first, first])["samples"] == 16
    fixed = learner.train(batch, steps=5)  # 2 steps per pass over 8 examples: 3 passes, stops at 5
    assert fixed["steps"] == 5 and fixed["global_step"] == 13 and fixed["samples"] == 5 * 4


def test_checkpoint_restores_params_optimizer_scheduler_and_rng(tiny_dir, tmp_path):
    model = ModelConfig(path=tiny_dir, max_model_len=128)
    a = Learner(model, LEARNER, ObjectiveConfig())
    batch = examples(a.tokenizer)
    a.train(batch)
    saved = a.rollout_weights()
    a.save_checkpoint(tmp_path / "ckpt", extra={"prompt_index": 17})
    draws_a = (random.random(), np.random.rand(), torch.rand(3))
    metrics_a = a.train(batch)  # depends on Adam moments, warm-up position and the shuffle RNG
    weights_a = a.rollout_weights()

    from transformers import AutoModelForCausalLM

    hf = AutoModelForCausalLM.from_pretrained(tmp_path / "ckpt").state_dict()
    assert all(torch.equal(hf[k], saved[k]) for k in hf)
    assert not (tmp_path / ".ckpt.partial").exists()

    b = Learner(model, LEARNER, ObjectiveConfig())
    random.seed(99), np.random.seed(99), torch.manual_seed(99)
    assert b.load_checkpoint(tmp_path / "ckpt") == {"prompt_index": 17}
    assert b.global_step == 2
    draws_b = (random.random(), np.random.rand(), torch.rand(3))
    assert draws_a[0] == draws_b[0] and draws_a[1] == draws_b[1] and torch.equal(draws_a[2], draws_b[2])
    assert all(torch.equal(b.rollout_weights()[k], saved[k]) for k in saved)
    metrics_b = b.train(batch)
    assert metrics_b["lr"] == metrics_a["lr"]
    assert metrics_b["loss"] == pytest.approx(metrics_a["loss"], rel=1e-6)
    weights_b = b.rollout_weights()
    assert all(torch.allclose(weights_a[k], weights_b[k], atol=1e-7) for k in weights_a)


def test_lora_rollout_weights_load_in_peft(tiny_dir, tmp_path):
    from peft import PeftModel, get_peft_model_state_dict
    from transformers import AutoModelForCausalLM

    from halo_ray.rollout import LoraAdapter

    lora = LoraConfig(enabled=True, r=4, alpha=8, dropout=0.0, target_modules=("q_proj", "v_proj"))
    model = ModelConfig(path=tiny_dir, max_model_len=128, lora=lora)
    learner = Learner(model, dataclasses.replace(LEARNER, lr=1e-2), ObjectiveConfig())
    learner.train(examples(learner.tokenizer))
    adapter = learner.rollout_weights()
    assert isinstance(adapter, LoraAdapter)
    assert adapter.config["r"] == 4 and adapter.config["peft_type"] == "LORA"
    assert sorted(adapter.config["target_modules"]) == ["q_proj", "v_proj"]

    loaded = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_dir), adapter.save(tmp_path / "adapter"))
    state = get_peft_model_state_dict(loaded)
    assert set(state) == set(adapter.tensors) and len(state) == 2 * 2 * 2  # 2 layers x 2 modules x (A, B)
    assert all(torch.equal(state[k], adapter.tensors[k]) for k in state)
    assert any(k.endswith("lora_B.weight") and adapter.tensors[k].abs().sum() > 0 for k in state)  # trained

    learner.save_checkpoint(tmp_path / "ckpt", extra={"cycle": 1})
    assert (tmp_path / "ckpt" / "adapter_model.safetensors").is_file()
    learner.train(examples(learner.tokenizer))
    assert learner.load_checkpoint(tmp_path / "ckpt") == {"cycle": 1}
    restored = learner.rollout_weights()
    assert all(torch.equal(restored.tensors[k], adapter.tensors[k]) for k in adapter.tensors)


def test_cosine_schedule_needs_total_steps(tiny_dir):
    with pytest.raises(ConfigError, match="total_steps"):
        Learner(ModelConfig(path=tiny_dir), dataclasses.replace(LEARNER, lr_schedule="cosine"), ObjectiveConfig())


def test_grad_norm_is_reported_without_zero(tiny_dir):
    import dataclasses

    learner = Learner(ModelConfig(path=tiny_dir, max_model_len=128), dataclasses.replace(LEARNER, zero_stage=0),
                      ObjectiveConfig(name="sft"))
    metrics = learner.train(examples(learner.tokenizer))
    assert metrics["steps"] == 2 and 0 < metrics["grad_norm"] < float("inf")


def test_one_step_call_skips_the_old_policy_pass_with_the_same_update(tiny_dir, monkeypatch):
    """GRPO needs old-policy log-probs; when a call makes a single optimizer step they are the current
    ones (``logp.detach()``), so the extra forward pass over the batch is skipped, with the same update.
    A call of two epochs still takes them once, before the first step."""
    model = ModelConfig(path=tiny_dir, max_model_len=128)
    cfg = dataclasses.replace(LEARNER, micro_batch_size=4, grad_accum=2, warmup_steps=0)  # 8 examples: one step
    obj = ObjectiveConfig(name="grpo")
    calls = []

    def batch_for(learner):
        exs = examples(learner.tokenizer)
        behaviour = learner.logprobs(exs, 1.0)
        return [dict(ex, logprobs=lp, advantage=1.0 if i % 2 else -1.0, group=i // 4, unit=i // 4)
                for i, (ex, lp) in enumerate(zip(exs, behaviour))]

    def trained(force_old_pass: bool, epochs: int = 1):
        learner = Learner(model, cfg, obj)
        batch = batch_for(learner)
        real = learner.logprobs
        monkeypatch.setattr(learner, "logprobs", lambda *a, **k: calls.append(1) or real(*a, **k))
        if force_old_pass:
            plain = learner._with_logprobs
            monkeypatch.setattr(learner, "_with_logprobs", lambda exs, t, one_step=False: plain(exs, t, False))
        calls.clear()
        metrics = learner.train(batch, epochs=epochs)
        return learner.rollout_weights(), metrics, len(calls)

    skipped, m_skip, n_skip = trained(False)
    forced, m_forced, n_forced = trained(True)
    assert m_skip["steps"] == m_forced["steps"] == 1
    assert (n_skip, n_forced) == (0, 1)
    assert m_skip["loss"] == pytest.approx(m_forced["loss"], rel=1e-5, abs=1e-7)
    assert all(torch.allclose(skipped[k], forced[k], atol=1e-6) for k in skipped)
    untrained = Learner(model, cfg, obj).rollout_weights()
    assert any(not torch.equal(skipped[k], untrained[k]) for k in skipped)  # it trained
    _, m_two, n_two = trained(False, epochs=2)
    assert m_two["steps"] == 2 and n_two == 1


def test_logits_only_from_the_first_completion_column_change_nothing(tiny_dir):
    """The LM head runs only from the first column that predicts a completion token (``logits_to_keep``):
    log-probs, entropy and gradients equal those of full logits, for prompts of different lengths."""
    learner = Learner(ModelConfig(path=tiny_dir, max_model_len=128), dataclasses.replace(LEARNER, micro_batch_size=8),
                      ObjectiveConfig(name="sft"))
    exs = [tokenize_pair(learner.tokenizer, "def f(x):\n" + "    # pad\n" * k + "    ", f"return x + {k}\n")
           for k in range(4)]
    batch, _ = learner._batch(exs, list(range(len(exs))))
    first = int((batch["labels"] != -100).any(dim=0).nonzero()[0])
    assert first >= 3  # prompt columns that every row skips

    def run(trim: bool):
        learner._logits_to_keep = trim
        learner.engine.module.zero_grad()
        logp, ent = learner._forward(learner.engine.module, batch, 0.7, grad=True, entropy=True)
        (logp.sum()).backward()
        grads = {n: p.grad.clone() for n, p in learner.engine.module.named_parameters() if p.grad is not None}
        return logp.detach(), ent, grads

    full, trimmed = run(False), run(True)
    assert full[0].shape == trimmed[0].shape == batch["mask"].shape
    assert torch.allclose(full[0], trimmed[0], atol=1e-5)
    assert float((full[0] != 0).sum()) == float(batch["mask"].sum())
    mask = batch["mask"].bool()
    assert torch.allclose(full[1][mask], trimmed[1][mask], atol=1e-5)
    assert full[2].keys() == trimmed[2].keys() and all(torch.allclose(full[2][k], trimmed[2][k], atol=1e-6) for k in full[2])
