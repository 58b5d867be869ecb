"""LoRA checkpoints as plain models: merge a PEFT adapter into its base for tools that load one folder.

A LoRA run's checkpoint (``learner.save_checkpoint`` with ``model.lora.enabled``) holds the adapter
(``adapter_config.json``, ``adapter_model.safetensors``) and the tokenizer, not the base weights; its
``adapter_config.json`` names the base (``base_model_name_or_path``, the run's ``model.path``).
Evaluation engines take one Hugging Face model folder, so ``merged_model`` writes base + adapter,
merged, into a folder of its own.
"""

from __future__ import annotations

import json
from pathlib import Path

from halo_ray.errors import ModelError

ADAPTER_CONFIG = "adapter_config.json"


def is_adapter_dir(path: str | Path) -> bool:
    """Whether ``path`` holds a PEFT adapter and no full model (no ``config.json``)."""
    p = Path(path)
    return (p / ADAPTER_CONFIG).is_file() and not (p / "config.json").is_file()


def merged_model(adapter_dir: str | Path, output: str | Path, base: str = "") -> Path:
    """Merge the LoRA adapter in ``adapter_dir`` into its base model and save the result in ``output``.

    Args:
        adapter_dir: a folder with ``adapter_config.json`` and the adapter weights (and, from halo-ray
            checkpoints, the tokenizer, which wins over the base's: it may hold added tokens).
        output: the folder to write (created; an existing merged model there is overwritten).
        base: the base model folder; empty: ``base_model_name_or_path`` from ``adapter_config.json``.
    Returns:
        ``output`` as a Path, a Hugging Face model folder.
    Raises:
        ModelError when the adapter config is unreadable or the base model cannot be found.
    """
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    adapter_dir, output = Path(adapter_dir), Path(output)
    try:
        config = json.loads((adapter_dir / ADAPTER_CONFIG).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelError(f"{adapter_dir / ADAPTER_CONFIG}: unreadable adapter config ({exc})") from None
    base = base or config.get("base_model_name_or_path") or ""
    if not base or not (Path(base) / "config.json").is_file():
        raise ModelError(f"{adapter_dir}: the adapter's base model {base!r} (adapter_config.json "
                         "base_model_name_or_path) is not a local model folder; put the base model back there")
    tokenizer_dir = adapter_dir if (adapter_dir / "tokenizer_config.json").is_file() else Path(base)
    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    model = AutoModelForCausalLM.from_pretrained(base, torch_dtype="auto")
    if model.get_input_embeddings().weight.shape[0] < len(tokenizer):
        model.resize_token_embeddings(len(tokenizer))  # tags added as tokens after the base was saved
    merged = PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload()
    output.mkdir(parents=True, exist_ok=True)
    merged.save_pretrained(output, safe_serialization=True)
    tokenizer.save_pretrained(output)
    return output
