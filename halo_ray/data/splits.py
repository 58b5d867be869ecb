"""Seeded train/val/test splits (seed 002: 50/20/30 with seed 42).

A problem's split depends only on its id, the seed and the ratios: problems are ranked by a keyed
hash of their id (SHA-256 of ``seed`` and ``id``) and cut at the ratio boundaries. Input order does
not matter, every id lands in exactly one split, and the sizes are exact (they sum to the total).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections import Counter

from halo_ray.data.schema import SPLITS, Problem
from halo_ray.errors import ConfigError, DataError

DEFAULT_SEED = 42
DEFAULT_RATIOS = (0.5, 0.2, 0.3)


def parse_ratios(text: str) -> tuple[float, float, float]:
    """Parse ``"0.5,0.2,0.3"``: three non-negative numbers (train, val, test) that sum to 1."""
    try:
        values = tuple(float(part) for part in text.split(","))
    except ValueError:
        raise ConfigError(f"--ratios: expected three numbers like 0.5,0.2,0.3, got {text!r}") from None
    if len(values) != 3 or any(v < 0 or math.isnan(v) for v in values):
        raise ConfigError(f"--ratios: expected three non-negative numbers (train,val,test), got {text!r}")
    if abs(sum(values) - 1.0) > 1e-6:
        raise ConfigError(f"--ratios: {text!r} sums to {sum(values):g}; the three ratios must sum to 1")
    return values  # type: ignore[return-value]


def split_rank(problem_id: str, seed: int) -> bytes:
    """The sort key of an id under a seed: its keyed SHA-256."""
    return hashlib.sha256(f"{seed}\0{problem_id}".encode()).digest()


def split_sizes(total: int, ratios: tuple[float, float, float] = DEFAULT_RATIOS) -> dict[str, int]:
    """Split sizes for ``total`` problems: boundaries rounded half up, so they sum to ``total``."""
    first = math.floor(total * ratios[0] + 0.5)
    second = max(first, math.floor(total * (ratios[0] + ratios[1]) + 0.5))
    return {"train": first, "val": second - first, "test": total - second}


def assign_splits(problems: list[Problem], seed: int = DEFAULT_SEED,
                  ratios: tuple[float, float, float] = DEFAULT_RATIOS) -> list[Problem]:
    """Return the problems, in their input order, with ``split`` set.

    Raises:
        DataError: when two problems share an id (a split would then be ambiguous).
    """
    counts = Counter(p.id for p in problems)
    dupes = sorted(pid for pid, n in counts.items() if n > 1)
    if dupes:
        raise DataError(f"duplicate problem ids, splits need unique ids: {', '.join(map(repr, dupes[:5]))}")
    ranked = sorted(counts, key=lambda pid: split_rank(pid, seed))
    sizes = split_sizes(len(ranked), ratios)
    split_of, start = {}, 0
    for name in SPLITS:
        for pid in ranked[start:start + sizes[name]]:
            split_of[pid] = name
        start += sizes[name]
    return [dataclasses.replace(p, split=split_of[p.id]) for p in problems]
