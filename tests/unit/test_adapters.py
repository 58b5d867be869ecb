"""Merging a LoRA checkpoint into its base (``halo_ray.adapters``): what ``srl eval`` does with an adapter folder."""

from __future__ import annotations

import json

import pytest

from halo_ray.adapters import is_adapter_dir, merged_model
from halo_ray.errors import ModelError


def test_an_adapter_folder_merges_into_a_model_with_the_adapters_outputs(tmp_path):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from halo_ray.tiny import init_tiny

    base = init_tiny(tmp_path / "base")
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base),
                           LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    adapter = tmp_path / "ckpt"
    model.save_pretrained(adapter)  # as learner.save_checkpoint does under LoRA, with the tokenizer beside it
    AutoTokenizer.from_pretrained(base).save_pretrained(adapter)
    assert is_adapter_dir(adapter) and not is_adapter_dir(base)
    assert json.loads((adapter / "adapter_config.json").read_text())["base_model_name_or_path"] == str(base)

    out = merged_model(adapter, tmp_path / "merged")
    assert (out / "config.json").is_file() and (out / "tokenizer_config.json").is_file()
    ids = torch.tensor([[5, 17, 42, 99, 7]])
    merged = AutoModelForCausalLM.from_pretrained(out)
    plain = AutoModelForCausalLM.from_pretrained(base)
    with torch.no_grad():
        want = model(ids).logits
        assert torch.allclose(merged(ids).logits, want, atol=1e-4)
        assert not torch.allclose(plain(ids).logits, want, atol=1e-4), "the adapter changes the outputs"


def test_a_missing_base_is_a_model_error_naming_it(tmp_path):
    (tmp_path / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "/nowhere/base"}))
    with pytest.raises(ModelError, match="/nowhere/base"):
        merged_model(tmp_path, tmp_path / "merged")
