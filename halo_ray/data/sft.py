"""Chat-templated prompt/completion records for SFT, from problems that carry reference solutions.

The default template is ChatML (the Qwen2 family's, which the embedded tiny model follows); a
tokenizer directory with its own chat template can be given instead.
"""

from __future__ import annotations

from halo_ray.data.schema import Problem
from halo_ray.errors import DataError

SYSTEM = "You are an expert programmer. Answer with a complete program in one fenced code block."
FENCE_LANG = {"python": "python", "cpp": "cpp", "c": "c", "rust": "rust", "go": "go"}


def chatml(messages: list[dict], add_generation_prompt: bool) -> str:
    """Render messages in ChatML (``<|im_start|>role\\ncontent<|im_end|>``)."""
    text = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
    return text + ("<|im_start|>assistant\n" if add_generation_prompt else "")


def sft_records(problems: list[Problem], tokenizer_dir: str | None = None) -> tuple[list[dict], int]:
    """Turn problems with ``metadata["canonical_solution"]`` into ``{id, split, prompt, completion}``.

    ``prompt`` is the templated conversation up to the assistant turn; ``completion`` the assistant
    turn (the solution in a fenced block) and its end marker, so ``prompt + completion`` is the whole
    templated conversation.

    Returns:
        ``(records, skipped)``: skipped counts problems without a reference solution.

    Raises:
        DataError: when no problem has a reference solution.
    """
    render = chatml
    if tokenizer_dir:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
        if not tokenizer.chat_template:
            raise DataError(f"{tokenizer_dir}: the tokenizer has no chat template; leave out --tokenizer for ChatML")

        def render(messages, add_generation_prompt):
            return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)

    records, skipped = [], 0
    for p in problems:
        solution = p.solution
        if not solution:
            skipped += 1
            continue
        lang = FENCE_LANG.get(p.language, p.language)
        messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": p.prompt}]
        prompt = render(messages, True)
        answer = f"```{lang}\n{solution.rstrip()}\n```"
        full = render(messages + [{"role": "assistant", "content": answer}], False)
        if not full.startswith(prompt):
            raise DataError(f"{tokenizer_dir}: its chat template renders the conversation so that the "
                            f"prompt is not a prefix of the whole; use the default ChatML template")
        records.append({"id": p.id, "split": p.split, "prompt": prompt, "completion": full[len(prompt):]})
    if not records:
        raise DataError("--format sft: none of the problems has a reference solution (metadata.canonical_solution)")
    return records, skipped
