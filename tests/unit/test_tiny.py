"""The embedded tiny model: deterministic bytes, loads in transformers and PEFT."""

from __future__ import annotations

import hashlib
from pathlib import Path

from halo_ray.tiny import init_tiny


def digest(folder: str | Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(Path(folder).iterdir())}


def test_same_seed_same_bytes_other_seed_other_weights(tiny_model, tmp_path):
    again = init_tiny(tmp_path / "again", seed=0)
    other = init_tiny(tmp_path / "other", seed=1)
    assert digest(tiny_model) == digest(again)
    assert digest(other)["model.safetensors"] != digest(tiny_model)["model.safetensors"]
    assert digest(other)["tokenizer.json"] == digest(tiny_model)["tokenizer.json"]


def test_loads_in_transformers_and_peft(tiny_model):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model)
    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    n_params = sum(p.numel() for p in model.parameters())
    assert 400_000 < n_params < 700_000
    assert model.config.hidden_size // model.config.num_attention_heads >= 32  # vLLM CPU attention needs it
    ids = tok("def f(x):\n    return x + 12", return_tensors="pt").input_ids
    assert tok.decode(ids[0]) == "def f(x):\n    return x + 12"
    assert [tok.decode([i]) for i in tok("1234").input_ids] == ["1", "2", "3", "4"]  # digits one per token
    with torch.no_grad():
        assert model(ids).logits.shape == (1, ids.shape[1], 512)
    peft_model = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    assert sum(p.numel() for p in peft_model.parameters() if p.requires_grad) > 0
    chat = tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)
    assert chat.endswith("<|im_start|>assistant\n")


def test_refuses_to_replace_a_foreign_directory(tmp_path):
    import pytest

    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    from halo_ray.errors import ModelError

    with pytest.raises(ModelError, match="not a halo-ray tiny model"):
        init_tiny(tmp_path / "mine")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
