"""The unbiased pass@k estimator (Chen et al. 2021, "Evaluating Large Language Models Trained on Code").

With ``n`` samples of which ``c`` are correct, pass@k = 1 - C(n-c, k) / C(n, k): the chance that at
least one of ``k`` samples drawn without replacement passes. Only SUCCESS counts as correct; halo-forge
counted a prompt as passed when any sample compiled, which measures compile rate, not correctness.
"""

from __future__ import annotations

import operator


class PassAtKError(ValueError):
    """``n``, ``c`` or ``k`` make pass@k undefined (k > n, c outside 0..n, non-integers)."""


def _count(value, name: str) -> int:
    try:
        number = operator.index(value)  # ints and numpy ints, not floats or bools
    except TypeError:
        raise PassAtKError(f"pass@k: {name} must be an integer, got {value!r}") from None
    if isinstance(value, bool):
        raise PassAtKError(f"pass@k: {name} must be an integer, got {value!r}")
    return number


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased estimate of pass@k for one problem.

    Computed as 1 - prod_{i=n-c+1}^{n} (1 - k / i), which equals 1 - C(n-c, k) / C(n, k) without
    the overflowing binomials, so it stays accurate for n in the thousands.

    Args:
        n: samples drawn for the problem (>= 1).
        c: samples that passed every test (0 <= c <= n).
        k: the k of pass@k (1 <= k <= n).
    Returns:
        A float in [0, 1]; exactly 0.0 when c == 0 and exactly 1.0 when n - c < k.
    Raises:
        PassAtKError (a ValueError) when k > n or an argument is out of range.
    """
    n, c, k = _count(n, "n"), _count(c, "c"), _count(k, "k")
    if n < 1:
        raise PassAtKError(f"pass@k: n (samples) must be at least 1, got {n}")
    if not 0 <= c <= n:
        raise PassAtKError(f"pass@k: c (correct samples) must be in 0..n={n}, got {c}")
    if not 1 <= k <= n:
        raise PassAtKError(f"pass@k: k must be in 1..n={n}, got k={k}; draw at least k samples per problem")
    if c == 0:
        return 0.0
    if n - c < k:
        return 1.0
    remaining = 1.0
    for i in range(n - c + 1, n + 1):
        remaining *= 1.0 - k / i
    return 1.0 - remaining


def parse_ks(text: str) -> tuple[int, ...]:
    """Parse ``"1,10"`` into ``(1, 10)``; range and duplicate checks belong to ``BenchmarkConfig``."""
    try:
        return tuple(int(item) for item in text.split(","))
    except ValueError:
        raise PassAtKError(f"k values: {text!r} is not a comma-separated list of integers (e.g. 1,10)") from None
