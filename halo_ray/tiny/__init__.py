"""The embedded tiny model: a Qwen2-architecture causal LM and a byte-level BPE tokenizer.

Everything is built locally from the code corpus shipped in ``halo_ray/tiny/corpus``; nothing is
downloaded. The same seed gives the same bytes. ``tiny`` (0.56M parameters) is for tests and the
demo; ``small`` (tens of millions) is for benchmarks.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from importlib import resources
from pathlib import Path

from halo_ray.errors import ModelError

SIZES = {
    # head_dim must be >= 32 for vLLM's CPU attention (DESIGN.md).
    "tiny": dict(hidden_size=128, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                 intermediate_size=512),
    "small": dict(hidden_size=512, num_hidden_layers=10, num_attention_heads=8, num_key_value_heads=2,
                  intermediate_size=1536),
}
VOCAB_SIZE = 512
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
EOS_TOKEN = "<|endoftext|>"
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def corpus_texts() -> list[str]:
    """The shipped code corpus, one string per file, in a fixed order."""
    folder = resources.files("halo_ray.tiny") / "corpus"
    names = sorted(p.name for p in folder.iterdir() if p.name.endswith(".py"))
    return [(folder / name).read_text() for name in names]


def train_tokenizer(texts: list[str]):
    """Train the byte-level BPE tokenizer (digits split one per token) and wrap it for transformers."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    # Repeat lines so that merges reflect frequent code idioms even on a small corpus.
    lines = [line + "\n" for text in texts for line in text.splitlines()]
    tok.train_from_iterator(lines, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS_TOKEN, pad_token=EOS_TOKEN,
                                   bos_token=None, unk_token=None)
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_model(tokenizer, size: str, seed: int):
    """A freshly initialised Qwen2ForCausalLM of the given size, seeded."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    if size not in SIZES:
        raise ValueError(f"unknown size {size!r} (known: {', '.join(SIZES)})")
    dims = SIZES[size]
    config = Qwen2Config(
        vocab_size=VOCAB_SIZE,
        max_position_embeddings=2048,
        rope_theta=10000.0,
        tie_word_embeddings=True,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.eos_token_id,
        torch_dtype="float32",
        **dims,
    )
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.eos_token_id
    return model


def init_tiny(output: str | os.PathLike, seed: int = 0, size: str = "tiny") -> Path:
    """Write the embedded model as a Hugging Face directory, atomically.

    Args:
        output: the directory to create (replaced if it holds an earlier tiny model).
        seed: initialisation seed; the same seed gives byte-identical files.
        size: ``tiny`` or ``small``.
    Returns:
        The output path.
    """
    out = Path(output)
    tokenizer = train_tokenizer(corpus_texts())
    model = build_model(tokenizer, size, seed)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        (tmp / "halo_ray_tiny.json").write_text(json.dumps({"size": size, "seed": seed}) + "\n")
        if out.exists():
            if not (out / "halo_ray_tiny.json").exists():
                raise ModelError(f"{out} exists and is not a halo-ray tiny model; choose another --output")
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return out
