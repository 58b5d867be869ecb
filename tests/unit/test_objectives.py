"""Objectives on hand-worked tensors; collate masking; tokenize_pair keeps prompt ids."""

from __future__ import annotations

import math

import pytest
import torch

from halo_ray.errors import ConfigError, DataError
from halo_ray.objectives import OBJECTIVES, build_objective, collate, token_logprobs, tokenize_pair, with_step_norms
from halo_ray.sections import ObjectiveConfig


def test_collate_masks_prompt_and_padding():
    batch = collate([{"prompt_token_ids": [5, 6], "token_ids": [7, 8, 9]},
                     {"prompt_token_ids": [5], "token_ids": [4], "weight": 0.5}], pad_id=0, max_len=16)
    assert batch["input_ids"].tolist() == [[5, 6, 7, 8, 9], [5, 4, 0, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1, 1], [1, 1, 0, 0, 0]]
    assert batch["labels"].tolist() == [[-100, -100, 7, 8, 9], [-100, 4, -100, -100, -100]]
    assert batch["weight"].tolist() == [1.0, 0.5]


def test_collate_truncates_completion_and_rejects_overlong_prompt():
    batch = collate([{"prompt_token_ids": [1, 2], "token_ids": [3, 4, 5]}], pad_id=0, max_len=3)
    assert batch["input_ids"].tolist() == [[1, 2, 3]]
    assert batch["labels"].tolist() == [[-100, -100, 3]]
    with pytest.raises(DataError, match="max_len=2"):
        collate([{"prompt_token_ids": [1, 2], "token_ids": [3]}], pad_id=0, max_len=2)
    with pytest.raises(DataError, match="token_ids"):
        collate([{"prompt_token_ids": [1]}], pad_id=0, max_len=4)


def _logits(rows):
    """(B, T, V) logits from nested lists."""
    return torch.tensor(rows, dtype=torch.float32, requires_grad=True)


def _contract(batch, logits, **norms):
    """The learner's side of the contract on a hand-made batch: log-probs with grad, step norms."""
    return with_step_norms({**batch, "logp": token_logprobs(logits, batch["labels"]) * batch["mask"]}, **norms)


def _logsoftmax(row, k):
    return row[k] - math.log(sum(math.exp(v) for v in row))


# Vocabulary of 3; sample A: prompt [0], completion [1, 2]; sample B: prompt [0, 0], completion [2], padded.
ROWS_A = [[2.0, 0.0, 0.0], [0.0, 1.0, 3.0], [0.5, 0.5, 0.5]]
ROWS_B = [[1.0, 0.0, 0.0], [0.0, 0.0, 2.0], [9.0, 9.0, 9.0]]
EXAMPLES = [{"prompt_token_ids": [0], "token_ids": [1, 2]},
            {"prompt_token_ids": [0, 0], "token_ids": [2], "weight": 3.0}]


def test_sft_is_mean_nll_over_completion_tokens():
    batch = collate(EXAMPLES, pad_id=0, max_len=8)
    logits = _logits([ROWS_A, ROWS_B])
    loss, stats = OBJECTIVES.get("sft")()(_contract(batch, logits))
    # A: position 0 predicts token 1, position 1 predicts token 2. B: position 1 predicts token 2.
    # The padding position of B (row [9, 9, 9]) and all prompt targets take no loss.
    expected = -(_logsoftmax(ROWS_A[0], 1) + _logsoftmax(ROWS_A[1], 2) + _logsoftmax(ROWS_B[1], 2)) / 3
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert stats["tokens"] == 3
    loss.backward()
    assert logits.grad[1, 2].abs().sum() == 0  # padding position: no gradient
    assert logits.grad[1, 0].abs().sum() == 0  # prompt position predicting prompt token: no gradient
    assert logits.grad[0, 2].abs().sum() == 0  # last position predicts nothing


def test_raft_weights_samples_and_equals_sft_with_unit_weights():
    batch = collate(EXAMPLES, pad_id=0, max_len=8)
    logits = _logits([ROWS_A, ROWS_B])
    loss, _ = OBJECTIVES.get("raft")()(_contract(batch, logits))
    expected = -(_logsoftmax(ROWS_A[0], 1) + _logsoftmax(ROWS_A[1], 2) + 3.0 * _logsoftmax(ROWS_B[1], 2)) / 3  # the step's tokens
    assert loss.item() == pytest.approx(expected, rel=1e-6)

    unit = collate([{k: v for k, v in ex.items() if k != "weight"} for ex in EXAMPLES], pad_id=0, max_len=8)
    raft, _ = OBJECTIVES.get("raft")()(_contract(unit, logits))
    sft, _ = OBJECTIVES.get("sft")()(_contract(unit, logits))
    assert raft.item() == pytest.approx(sft.item(), rel=1e-7)


def test_zero_weight_sample_takes_no_loss():
    batch = collate([{"prompt_token_ids": [0], "token_ids": [1], "weight": 0.0}], pad_id=0, max_len=4)
    logits = _logits([[[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]]])
    loss, _ = OBJECTIVES.get("raft")()(_contract(batch, logits))
    loss.backward()
    assert loss.item() == 0.0 and logits.grad.abs().sum() == 0


@pytest.mark.parametrize("name", OBJECTIVES.names())
def test_every_registered_objective_builds_and_runs(name):
    objective = build_objective(ObjectiveConfig(name=name))
    batch = _contract(collate(EXAMPLES, pad_id=0, max_len=8), _logits([ROWS_A, ROWS_B]))
    batch["old_logp"] = batch["logp"].detach()
    batch["ref_logp"] = batch["logp"].detach()
    batch["is_weight"] = torch.ones_like(batch["mask"])
    loss, _ = objective(batch)
    assert loss.ndim == 0 and torch.isfinite(loss)


def test_unknown_objective_lists_known_names():
    with pytest.raises(ConfigError, match="known: sft, raft"):
        build_objective(ObjectiveConfig(name="rafts"))


def test_tokenize_pair_keeps_prompt_ids_and_appends_eos():
    from halo_ray.tiny import corpus_texts, train_tokenizer

    tok = train_tokenizer(corpus_texts())
    # The prompt ends in indentation, as the demo's prompts do: byte-level BPE would merge it with
    # the completion's first word if the pair were tokenized as one string.
    prompt = 'def f(x):\n    """Add 7 to x."""\n    '
    completion = "return x + 7\n"
    pair = tokenize_pair(tok, prompt, completion)
    assert pair["prompt_token_ids"] == tok(prompt, add_special_tokens=False)["input_ids"]
    assert pair["token_ids"][-1] == tok.eos_token_id
    assert tok.decode(pair["token_ids"][:-1]) == completion
    joint = tok(prompt + completion, add_special_tokens=False)["input_ids"]
    assert joint != pair["prompt_token_ids"] + pair["token_ids"][:-1]


def test_step_norm_splits_the_loss_across_micro_batches():
    """Two micro-batches, each normalised by the step's tokens, add up to the one-batch loss."""
    logits = _logits([ROWS_A, ROWS_B])
    whole, _ = OBJECTIVES.get("sft")()(_contract(collate(EXAMPLES, pad_id=0, max_len=8), logits))
    parts = [OBJECTIVES.get("sft")()(_contract(collate([ex], pad_id=0, max_len=8), logits[i:i + 1, :len(ex["prompt_token_ids"]) + len(ex["token_ids"])], norm_tokens=3.0))[0]
             for i, ex in enumerate(EXAMPLES)]
    assert sum(p.item() for p in parts) == pytest.approx(whole.item(), rel=1e-6)


def test_collate_aligns_behaviour_logprobs_and_sample_fields():
    batch = collate([{"prompt_token_ids": [5, 6], "token_ids": [7, 8], "logprobs": [-0.5, -1.5], "advantage": 2.0,
                      "group": 3, "pair_id": 1, "pair_role": 0}], pad_id=0, max_len=16)
    # Position t scores token t+1: completion tokens 7, 8 sit at positions 1 and 2.
    assert batch["mask"].tolist() == [[0.0, 1.0, 1.0]]
    assert batch["behaviour_logp"].tolist() == [[0.0, -0.5, -1.5]]
    assert batch["advantage"].tolist() == [2.0] and batch["group"].tolist() == [3]
    assert batch["pair_id"].tolist() == [1] and batch["pair_role"].tolist() == [0]
