"""The trace tags as tokens of their own in a Hugging Face tokenizer, with the schema version kept beside them.

Atomic tags make the format easier to learn (seed 003 §8): each tag is one added token, matched
before BPE runs, so it is never split, and the embeddings are resized to hold it. They are added as
added tokens *not flagged special*: vLLM and transformers decode with ``skip_special_tokens=True`` by
default, which would drop special tags from the text the verifier parses (and the rollout's stop
string ``</state_update>`` would never match). Unflagged, they survive every decoder unchanged.
The schema version is written into the tokenizer's and the model's config so that a checkpoint
trained on one schema is never scored or KL-anchored against another (§33).
"""

from __future__ import annotations

from halo_ray.errors import ModelError
from halo_ray.srl.trace import SCHEMA_VERSION, TAG_TOKENS

SCHEMA_KEY = "srl_schema_version"


def add_trace_tokens(tokenizer, model=None) -> int:
    """Add the six tag tokens to ``tokenizer`` (and resize ``model``'s embeddings to match).

    Idempotent: tags already present are not added twice. A new tag's embedding row starts as the mean of the
    rows of the pieces the tokenizer split it into before: six rows drawn around one mean start nearly equal,
    and a model then takes long to tell ``<think>`` from ``</action>`` (about log 1/6 per tag after a short SFT).

    Args:
        tokenizer: a ``PreTrainedTokenizer(Fast)``.
        model: optional ``PreTrainedModel`` whose input (and tied output) embeddings get resized.
    Returns:
        How many tokens were added.
    Raises:
        ModelError when the tokenizer or model already records a different schema version.
    """
    for owner, where in ((getattr(tokenizer, "init_kwargs", {}), "tokenizer"),
                         (vars(model.config) if model is not None else {}, "model config")):
        found = owner.get(SCHEMA_KEY)
        if found is not None and found != SCHEMA_VERSION:
            raise ModelError(f"{where} was prepared for SRL schema {found!r}, this halo-ray writes "
                             f"{SCHEMA_VERSION!r}; start again from the base model")
    from tokenizers import AddedToken

    # special=False keeps them through skip_special_tokens decoding (module docstring); normalized=False matches
    # the tag exactly. add_tokens reads the same in transformers 4 and 5.
    have = set(tokenizer.get_vocab())
    new = [t for t in TAG_TOKENS if t not in have]
    pieces = {t: tokenizer.encode(t, add_special_tokens=False) for t in new}  # before the tags exist
    added = tokenizer.add_tokens([AddedToken(t, special=False, normalized=False) for t in new])
    tokenizer.init_kwargs[SCHEMA_KEY] = SCHEMA_VERSION  # saved into tokenizer_config.json
    if model is not None:
        if model.get_input_embeddings().weight.shape[0] < len(tokenizer):
            model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
            _init_from_pieces(model, tokenizer, pieces)
        model.config.update({SCHEMA_KEY: SCHEMA_VERSION})  # saved into config.json
    return added


def _init_from_pieces(model, tokenizer, pieces: dict[str, list[int]]) -> None:
    import torch

    rows = model.get_input_embeddings().weight
    with torch.no_grad():
        for tag, ids in pieces.items():
            rows[tokenizer.convert_tokens_to_ids(tag)] = rows[ids].mean(dim=0)
    if not model.config.tie_word_embeddings and model.get_output_embeddings() is not None:
        out = model.get_output_embeddings().weight
        with torch.no_grad():
            for tag, ids in pieces.items():
                out[tokenizer.convert_tokens_to_ids(tag)] = out[ids].mean(dim=0)


def schema_version(tokenizer) -> str | None:
    """The SRL schema version a tokenizer was prepared with (None when it never was)."""
    return getattr(tokenizer, "init_kwargs", {}).get(SCHEMA_KEY)


def has_trace_tokens(tokenizer) -> bool:
    """Whether every tag is one token of ``tokenizer`` under the current schema version."""
    try:
        check_trace_tokens(tokenizer)
    except ModelError:
        return False
    return True


def check_trace_tokens(tokenizer) -> None:
    """Raise ModelError unless every tag is one token of ``tokenizer`` and its schema version is current."""
    found = schema_version(tokenizer)
    if found != SCHEMA_VERSION:
        raise ModelError(f"tokenizer SRL schema is {found!r}, expected {SCHEMA_VERSION!r}; "
                         "prepare it with halo_ray.srl.add_trace_tokens")
    split = [t for t in TAG_TOKENS if len(tokenizer.encode(t, add_special_tokens=False)) != 1]
    if split:
        raise ModelError(f"tokenizer splits the tag(s) {', '.join(split)}; prepare it with halo_ray.srl.add_trace_tokens")


def prepare_model_dir(folder, output=None) -> int:
    """Add the tag tokens to the Hugging Face model in ``folder`` and save it to ``output`` (default: in place).

    What vLLM and the learner then load: the tokenizer with the tags and the schema version, the
    embeddings resized to match (``config.json`` records both).

    Returns:
        How many tokens were added (0: it was prepared already; nothing is rewritten in place then).
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    model = AutoModelForCausalLM.from_pretrained(str(folder), torch_dtype="auto")
    added = add_trace_tokens(tokenizer, model)
    if added or (output is not None and str(output) != str(folder)):
        target = str(output if output is not None else folder)
        model.save_pretrained(target, safe_serialization=True)
        tokenizer.save_pretrained(target)
    return added
