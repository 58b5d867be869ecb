"""pass@k against exact combinatorics, its edges and its errors."""

from fractions import Fraction
from math import comb

import pytest

from halo_ray.bench import PassAtKError, parse_ks, pass_at_k


def exact(n: int, c: int, k: int) -> Fraction:
    return 1 - Fraction(comb(n - c, k), comb(n, k))


@pytest.mark.parametrize("n", [1, 2, 3, 5, 10, 16, 33])
def test_matches_exact_combinatorics_on_a_grid(n):
    for c in range(n + 1):
        for k in range(1, n + 1):
            assert pass_at_k(n, c, k) == pytest.approx(float(exact(n, c, k)), abs=1e-13), (n, c, k)


@pytest.mark.parametrize("c", [1, 2, 7, 100, 999, 1500, 1990])
@pytest.mark.parametrize("k", [1, 10, 100, 1000])
def test_stable_for_large_n(c, k):
    n = 2000
    want = exact(n, c, k)
    got = pass_at_k(n, c, k)
    assert abs(got - float(want)) < 1e-11
    # the failure probability keeps its relative accuracy where it is representable
    if 1 - want > Fraction(1, 10**12):
        assert (1 - got) == pytest.approx(float(1 - want), rel=1e-9)


def test_edges_are_exact():
    assert pass_at_k(10, 0, 1) == 0.0
    assert pass_at_k(2000, 0, 1000) == 0.0
    assert pass_at_k(10, 10, 10) == 1.0
    assert pass_at_k(10, 5, 6) == 1.0  # n - c = 5 < k: every draw of 6 holds a success
    assert pass_at_k(1, 1, 1) == 1.0


def test_pass_at_1_is_the_success_fraction():
    for n, c in [(10, 3), (7, 1), (2000, 1234)]:
        assert pass_at_k(n, c, 1) == pytest.approx(c / n, abs=1e-12)


def test_seed_002_example_n10_k1_k10():
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)
    assert pass_at_k(10, 3, 10) == 1.0
    assert pass_at_k(10, 1, 5) == pytest.approx(0.5)


@pytest.mark.parametrize("n,c,k,words", [
    (5, 2, 6, "k must be in 1..n=5"),
    (5, 2, 0, "k must be in 1..n=5"),
    (5, 6, 1, "c (correct samples) must be in 0..n=5"),
    (5, -1, 1, "c (correct samples) must be in 0..n=5"),
    (0, 0, 1, "n (samples) must be at least 1"),
    (5.0, 2, 1, "n must be an integer"),
    (5, True, 1, "c must be an integer"),
])
def test_invalid_arguments_raise_a_value_error_that_says_why(n, c, k, words):
    with pytest.raises(PassAtKError, match=words.replace("(", r"\(").replace(")", r"\)")) as info:
        pass_at_k(n, c, k)
    assert isinstance(info.value, ValueError)


def test_parse_ks():
    assert parse_ks("1,10") == (1, 10)
    assert parse_ks(" 5 ") == (5,)
    with pytest.raises(PassAtKError, match="comma-separated"):
        parse_ks("1,ten")
