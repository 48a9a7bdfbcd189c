"""Welfare functions w_α: the named special cases, limits, monotonicity and merging."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from scipy.stats import gmean

from pluralign.engine.errors import InputError
from pluralign.engine.pluralism.welfare import (
    WelfareState,
    alpha_name,
    parse_alphas,
    threshold_share,
    welfare,
    welfare_many,
)

utilities = st.lists(st.floats(0.0, 1.0, allow_nan=False), min_size=1, max_size=30)
positive = st.lists(st.floats(1e-6, 1.0, allow_nan=False), min_size=1, max_size=30)
weights_for = st.floats(0.01, 100.0)


def _plain(u: list[float], alpha: float) -> float:
    """The textbook formula, for comparison away from the numerically hard corners (it loses
    all precision as α nears 1, which test_continuous_at_alpha_one covers)."""
    if alpha == 1:
        return float(np.exp(np.mean(np.log(u))))
    return float(np.mean(np.asarray(u) ** (1 - alpha)) ** (1 / (1 - alpha)))


@settings(deadline=None)
@given(utilities)
def test_alpha_zero_is_the_mean(u: list[float]) -> None:
    assert float(welfare(u, 0.0)) == pytest.approx(np.mean(u), rel=1e-12, abs=1e-15)


@settings(deadline=None)
@given(positive)
def test_alpha_one_is_the_geometric_mean(u: list[float]) -> None:
    assert float(welfare(u, 1.0)) == pytest.approx(gmean(u), rel=1e-12)


@settings(deadline=None)
@given(positive, st.floats(0.0, 20.0).filter(lambda a: abs(a - 1) > 1e-3))
def test_matches_the_formula(u: list[float], alpha: float) -> None:
    assert float(welfare(u, alpha)) == pytest.approx(_plain(u, alpha), rel=1e-9)


@settings(deadline=None)
@given(positive, st.sampled_from([1e-15, 1e-12, 1e-9]))
def test_continuous_at_alpha_one(u: list[float], eps: float) -> None:
    gm = gmean(u)
    assert float(welfare(u, 1 - eps)) == pytest.approx(gm, rel=1e-6)
    assert float(welfare(u, 1 + eps)) == pytest.approx(gm, rel=1e-6)
    assert float(welfare(u, 1 - eps)) >= float(welfare(u, 1 + eps)) * (1 - 1e-12)


@settings(deadline=None)
@given(utilities)
def test_infinity_is_the_minimum(u: list[float]) -> None:
    assert float(welfare(u, math.inf)) == min(u)


@settings(deadline=None)
@given(positive, st.sampled_from([5.0, 50.0, 500.0, 5000.0]))
def test_tends_to_the_minimum(u: list[float], alpha: float) -> None:
    # min ≤ w_α ≤ min · n^{1/(α−1)}: each juror's share is ≥ 1/n, so the bound closes as α grows.
    w = float(welfare(u, alpha))
    lo = min(u)
    assert lo * (1 - 1e-12) <= w <= lo * len(u) ** (1 / (alpha - 1)) * (1 + 1e-12)


@settings(deadline=None)
@given(utilities, st.lists(st.floats(0.0, 50.0), min_size=2, max_size=8))
@example([0.5], [0.0, 0.9999999999999999])  # p = 1 − α near 0: the power mean is ill-conditioned
def test_non_increasing_in_alpha(u: list[float], alphas: list[float]) -> None:
    grid = [*sorted(set(alphas)), math.inf]
    w = welfare_many(u, grid)
    assert np.all(np.diff(w) <= 1e-12 * np.maximum(1.0, np.abs(w[:-1])))


@settings(deadline=None)
@given(utilities, st.data())
def test_weights_equal_repeated_jurors(u: list[float], data: st.DataObject) -> None:
    counts = data.draw(st.lists(st.integers(1, 4), min_size=len(u), max_size=len(u)))
    repeated = np.repeat(u, counts)
    alphas = [0.0, 0.5, 1.0, 2.0, 7.5, math.inf]
    got = welfare_many(u, alphas, weights=counts)
    want = welfare_many(repeated, alphas)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-15)


@settings(max_examples=50, deadline=None)
@given(st.lists(utilities, min_size=2, max_size=4))
def test_merged_chunks_equal_one_pass(chunks: list[list[float]]) -> None:
    alphas = [0.0, 0.3, 1.0, 2.0, 40.0, math.inf]
    state = WelfareState.of(np.array([chunks[0]]), np.ones(len(chunks[0])), alphas)
    for c in chunks[1:]:
        state = state.merge(WelfareState.of(np.array([c]), np.ones(len(c)), alphas))
    flat = [x for c in chunks for x in c]
    np.testing.assert_allclose(state.result()[:, 0], welfare_many(flat, alphas), rtol=1e-10,
                               atol=1e-15)


def test_zero_utility_zeroes_welfare_from_alpha_one() -> None:
    u = [0.0, 0.5, 1.0]
    w = welfare_many(u, [0.0, 0.5, 1.0, 2.0, math.inf])
    assert w[0] == pytest.approx(0.5)
    assert w[1] == pytest.approx(((0.5**0.5 + 1.0) / 3) ** 2)
    assert list(w[2:]) == [0.0, 0.0, 0.0]


def test_large_alpha_does_not_overflow() -> None:
    w = float(welfare([1e-3, 0.9], 1e4))
    assert 1e-3 <= w <= 1e-3 * 2 ** (1 / (1e4 - 1)) + 1e-15


def test_rows_are_independent() -> None:
    u = np.array([[0.2, 0.8], [0.5, 0.5]])
    np.testing.assert_allclose(welfare(u, 1.0), [0.4, 0.5])


def test_bad_utilities_and_weights_are_rejected() -> None:
    with pytest.raises(ValueError, match=">= 0"):
        welfare([0.5, -0.1], 1.0)
    with pytest.raises(ValueError, match=">= 0"):
        welfare([0.5, float("nan")], 1.0)
    with pytest.raises(ValueError, match="positive"):
        welfare([0.5, 0.4], 1.0, weights=[1.0, 0.0])
    with pytest.raises(ValueError, match="alphas"):
        welfare([0.5], -1.0)


def test_threshold_share() -> None:
    assert float(threshold_share([0.2, 0.6, 0.9, 0.5], 0.5)) == 0.5
    assert float(threshold_share([0.2, 0.6], 0.5, weights=[3.0, 1.0])) == 0.25


def test_parse_alphas() -> None:
    assert parse_alphas("0, 0.5,1,inf") == (0.0, 0.5, 1.0, math.inf)
    assert parse_alphas([2, 2, 3]) == (2.0, 3.0)
    assert [alpha_name(a) for a in parse_alphas("0,0.5,inf")] == ["0", "0.5", "inf"]
    for bad in ("x", "-1", "nan", ""):
        with pytest.raises(InputError, match="alpha"):
            parse_alphas(bad)
