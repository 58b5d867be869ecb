"""``data prepare --format sft --tokenizer DIR`` renders with a real tokenizer's chat template."""

from __future__ import annotations

import json

import halo_ray.cli as cli
from halo_ray.data import load_source
from halo_ray.data.sft import SYSTEM
from halo_ray.tiny import init_tiny


def test_sft_with_tiny_model_chat_template(tmp_path, monkeypatch):
    from transformers import AutoTokenizer

    model_dir = init_tiny(tmp_path / "m")
    out = tmp_path / "sft.jsonl"
    monkeypatch.setattr(cli, "COMMAND_MODULES", ["data"])
    assert cli.main(["data", "prepare", "--dataset", "humaneval", "--output", str(out), "--format", "sft",
                     "--split", "val", "--tokenizer", str(model_dir)]) == 0
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == 33
    problems = {p.id: p for p in load_source("humaneval")}
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    for record in records[:3]:
        messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": problems[record["id"]].prompt}]
        assert record["prompt"] == tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        assert record["completion"].startswith("```python\n")
        assert problems[record["id"]].metadata["canonical_solution"].rstrip() in record["completion"]
