"""Two DeepSpeed ZeRO-2 ranks as Ray actors (gloo, CPU) make the same update as one rank with twice
the gradient accumulation on the same examples."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from halo_ray.objectives import tokenize_pair
from halo_ray.sections import LearnerConfig, ModelConfig, ObjectiveConfig


# fp32, no dropout in the tiny model; micro-batch 2: one optimizer step takes 8 examples either way.
ONE_RANK = LearnerConfig(num_ranks=1, micro_batch_size=2, grad_accum=4, lr=1e-3, seed=5, num_cpus_per_rank=1.0)
TWO_RANKS = dataclasses.replace(ONE_RANK, num_ranks=2, grad_accum=2)


def test_two_ranks_match_one_rank_with_double_accumulation(ray_session, tmp_path):
    from transformers import AutoTokenizer

    from halo_ray.actors.learner import LearnerGroup
    from halo_ray.tiny import init_tiny

    path = str(init_tiny(tmp_path / "tiny", seed=0))
    tok = AutoTokenizer.from_pretrained(path)
    # Lengths differ, so a wrong split into micro-batches changes the token-mean losses.
    examples = [tokenize_pair(tok, f'def f(x):\n    """Return x times {k}."""\n    ', "return x" + " * 1" * k + "\n")
                for k in range(1, 17)]
    model = ModelConfig(path=path, max_model_len=256)
    two = LearnerGroup(model, TWO_RANKS, ObjectiveConfig(name="sft"))
    try:
        m2 = two.train(examples)  # 16 examples: 2 optimizer steps
        w2 = ray_session.get(two.rollout_weights_ref())
        w2_rank1 = ray_session.get(two.ranks[1].rollout_weights.remote(every_rank=True))
        two_rank1_default = two.ranks[1].rollout_weights.remote()
        two.save_checkpoint(str(tmp_path / "ckpt"), {"cycle": 1})
    finally:
        two.shutdown()
    one = LearnerGroup(model, ONE_RANK, ObjectiveConfig(name="sft"))
    try:
        w0 = ray_session.get(one.rollout_weights_ref())
        m1 = one.train(examples)
        w1 = ray_session.get(one.rollout_weights_ref())
    finally:
        one.shutdown()

    assert m1["steps"] == m2["steps"] == 2 and m1["samples"] == m2["samples"] == 16
    assert m2["loss"] == pytest.approx(m1["loss"], rel=1e-4)
    assert all(torch.equal(w2[k], w2_rank1[k]) for k in w2)  # ranks hold identical parameters
    assert ray_session.get(two_rank1_default) is None, "only rank 0 puts the weights in the object store"
    moved = max((w1[k] - w0[k]).abs().max().item() for k in w0)
    gap = max((w1[k] - w2[k]).abs().max().item() for k in w0)
    assert moved > 1e-3  # two AdamW steps of lr 1e-3 moved the weights
    assert all(torch.allclose(w1[k], w2[k], rtol=1e-5, atol=1e-6) for k in w0), \
        f"two ranks differ from one rank by up to {gap} (update size {moved})"
    assert (tmp_path / "ckpt" / "rng_state_rank1.pt").is_file() and (tmp_path / "ckpt" / "model.safetensors").is_file()
