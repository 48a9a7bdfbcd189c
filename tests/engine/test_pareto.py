"""Pareto fronts against brute force; trade-off steerability Σ_f f(M_f)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pluralign.engine.errors import InputError
from pluralign.engine.pluralism.pareto import dominates, linear, pareto_front, tradeoff_steerability


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 12), st.integers(1, 4), st.integers(0, 10_000))
def test_front_equals_brute_force(m: int, o: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    v = rng.integers(0, 4, (m, o)).astype(float)  # small integers: many ties and equal rows
    front = pareto_front(v)
    want = [not any(dominates(v[j], v[i]) for j in range(m)) for i in range(m)]
    assert list(front) == want
    assert front.any()  # a finite set always has a non-dominated member


def test_front_with_minimised_objectives() -> None:
    # (accuracy ↑, cost ↓): C is dominated by A (better accuracy, lower cost).
    v = np.array([[0.9, 3.0], [0.7, 1.0], [0.8, 4.0], [0.9, 3.0]])
    assert list(pareto_front(v, maximize=[True, False])) == [True, True, False, True]
    assert list(pareto_front(v, maximize=True)) == [True, False, True, True]


def test_missing_values_are_rejected() -> None:
    with pytest.raises(InputError, match="system 1"):
        pareto_front([[1.0, 2.0], [np.nan, 1.0]])
    with pytest.raises(InputError, match="systems x objectives"):
        pareto_front([1.0, 2.0])


def test_tradeoff_steerability() -> None:
    functions = {"helpful": linear([1.0, 0.0]), "harmless": linear([0.0, 1.0]),
                 "both": linear([0.5, 0.5])}
    steered = {"helpful": [0.9, 0.4], "harmless": [0.5, 0.95], "both": [0.8, 0.8]}
    s = tradeoff_steerability(steered, functions)
    assert s.functions == ("helpful", "harmless", "both")
    assert s.table[0, 1] == pytest.approx(0.5)  # helpfulness of the model steered to harmless
    assert s.score == pytest.approx(0.9 + 0.95 + 0.8)
    assert list(s.steerable) == [True, True, True]
    # A model that ignores the steering is steerable to nothing but one trade-off.
    flat = tradeoff_steerability({f: [0.9, 0.4] for f in functions}, functions)
    assert flat.score == pytest.approx(0.9 + 0.4 + 0.65)
    bad = tradeoff_steerability({**steered, "both": [0.9, 0.3]}, functions)
    assert list(bad.steerable) == [True, True, False]
    with pytest.raises(InputError, match="harmless"):
        tradeoff_steerability({"helpful": [1, 0]}, functions)
