"""Distributional pluralism: JS distance against scipy, entropy, the shuffled control, files."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.distance import jensenshannon
from scipy.stats import entropy as scipy_entropy

from pluralign.engine.errors import InputError
from pluralign.engine.pluralism.distributional import (
    entropy,
    evaluate_distributions,
    js_distance,
    load_distributions,
    parse_distributions,
    shuffled_js,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples"


@st.composite
def two_distributions(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    n = draw(st.integers(2, 12))
    entries = st.floats(0.0, 10.0, allow_nan=False)
    p = np.array(draw(st.lists(entries, min_size=n, max_size=n)))
    q = np.array(draw(st.lists(entries, min_size=n, max_size=n)))
    # Keep some mass in each (zeros elsewhere are allowed and common).
    p[draw(st.integers(0, n - 1))] += 1.0
    q[draw(st.integers(0, n - 1))] += 1.0
    return p, q


@settings(max_examples=300, deadline=None)
@given(two_distributions())
def test_js_distance_equals_scipy(pq: tuple[np.ndarray, np.ndarray]) -> None:
    p, q = pq
    ours, theirs = float(js_distance(p, q)), float(jensenshannon(p, q, base=2))
    if math.isfinite(theirs):  # scipy overflows to inf when (p + q) / 2 underflows
        assert ours == pytest.approx(theirs, abs=1e-12)
    assert 0.0 <= ours <= 1.0


@settings(deadline=None)
@given(two_distributions())
def test_entropy_equals_scipy(pq: tuple[np.ndarray, np.ndarray]) -> None:
    p, _ = pq
    assert float(entropy(p)) == pytest.approx(scipy_entropy(p, base=2), abs=1e-12)


def test_js_distance_vectorizes_over_rows() -> None:
    rng = np.random.default_rng(0)
    p, q = rng.dirichlet(np.ones(5), 20), rng.dirichlet(np.ones(5), 20)
    got = js_distance(p, q)
    np.testing.assert_allclose(got, [jensenshannon(a, b, base=2) for a, b in zip(p, q, strict=True)],
                               atol=1e-12)


def test_subnormal_mass_does_not_overflow() -> None:
    assert float(js_distance([1.0, 0.0], [1.0, 5e-324])) == pytest.approx(0.0, abs=1e-12)


def test_extremes() -> None:
    assert float(js_distance([1, 0], [0, 1])) == pytest.approx(1.0)
    assert float(js_distance([0.3, 0.7], [3, 7])) == 0.0
    assert float(entropy([0.25] * 4)) == pytest.approx(2.0)
    assert float(entropy([1, 0, 0])) == 0.0


def test_shuffled_control_keeps_entropy_and_is_seeded() -> None:
    model = np.array([0.7, 0.2, 0.1, 0.0])
    pop = np.array([0.6, 0.25, 0.1, 0.05])
    a = shuffled_js(model, pop, np.random.default_rng(1), 200)
    b = shuffled_js(model, pop, np.random.default_rng(1), 200)
    assert a == b
    # Matching options make the model close; scrambling them makes it farther on average.
    assert a > float(js_distance(model, pop))
    perms = [np.random.default_rng(s).permutation(model) for s in range(5)]
    assert all(float(entropy(p)) == pytest.approx(float(entropy(model))) for p in perms)


def test_evaluate_the_documented_example() -> None:
    qs = load_distributions(EXAMPLES / "distributions.json")
    report = evaluate_distributions(qs, n_shuffles=50, seed=0)
    pairs = {(r["model"], r["group"]): r for r in report.pairs}
    assert set(pairs) == {("base", "US"), ("base", "JP"), ("aligned", "US"), ("aligned", "JP")}
    assert pairs[("base", "US")]["n_questions"] == 2
    assert pairs[("base", "JP")]["n_questions"] == 1
    # Averages over questions of the per-question values.
    rows = [r for r in report.questions if r["model"] == "base" and r["group"] == "US"]
    assert pairs[("base", "US")]["js_distance"] == pytest.approx(
        np.mean([r["js_distance"] for r in rows]))
    us = np.array([410, 380, 150, 60]) / 1000
    q1 = next(r for r in rows if r["question"] == "q1")
    assert q1["js_distance"] == pytest.approx(jensenshannon([0.3, 0.4, 0.2, 0.1], us, base=2))
    assert q1["group_entropy"] == pytest.approx(scipy_entropy(us, base=2))
    # The sharply peaked "aligned" model has lower entropy than the base model.
    assert pairs[("aligned", "US")]["model_entropy"] < pairs[("base", "US")]["model_entropy"]


def _q(**over: Any) -> dict[str, Any]:
    q: dict[str, Any] = {"id": "q", "options": ["a", "b"],
                         "groups": {"G": {"counts": [1, 2]}},
                         "models": {"M": {"probabilities": [0.5, 0.5]}}}
    q.update(over)
    return q


BAD: list[tuple[Any, str, str]] = [
    ({}, "'questions'", "questions"),
    ({"questions": []}, "'questions'", "questions"),
    ({"questions": ["x"]}, "must be an object", "questions[0]"),
    ({"questions": [_q(options=["a"])]}, "at least 2 distinct", "options"),
    ({"questions": [_q(options=["a", "a"])]}, "at least 2 distinct", "options"),
    ({"questions": [_q(groups={})]}, "at least one distribution", "groups"),
    ({"questions": [_q(groups={"G": {"counts": [1, 2, 3]}})]}, "needs 2 numbers",
     "groups.G.counts"),
    ({"questions": [_q(groups={"G": {"counts": [1, -2]}})]}, "finite number >= 0",
     "groups.G.counts"),
    ({"questions": [_q(groups={"G": {"counts": [1.5, 2]}})]}, "whole count",
     "groups.G.counts"),
    ({"questions": [_q(groups={"G": {"counts": [0, 0]}})]}, "all zero", "groups.G.counts"),
    ({"questions": [_q(models={"M": {"probabilities": [0.5, 0.6]}})]}, "sum to 1.1",
     "models.M.probabilities"),
    ({"questions": [_q(models={"M": {"probabilities": [0.5, "x"]}})]}, "finite number",
     "models.M.probabilities"),
    ({"questions": [_q(models={"M": [0.5, 0.5]})]}, "exactly one of", "models.M"),
    ({"questions": [_q(models={"M": {"counts": [1, 1], "probabilities": [0.5, 0.5]}})]},
     "exactly one of", "models.M"),
    ({"questions": [_q(), _q()]}, "duplicate question id", "questions[1]"),
    ({"questions": [_q(answer=1)]}, "unknown key", "answer"),
]


@pytest.mark.parametrize(("data", "message", "where"), BAD)
def test_malformed_distribution_files(tmp_path: Path, data: Any, message: str,
                                      where: str) -> None:
    path = tmp_path / "dist.json"
    path.write_text(json.dumps(data))
    with pytest.raises(InputError) as err:
        load_distributions(path)
    assert message in str(err.value)
    assert str(path) in str(err.value)
    assert where in str(err.value)


def test_counts_are_normalised_and_missing_files_reported(tmp_path: Path) -> None:
    qs = parse_distributions({"questions": [_q(groups={"G": {"counts": [1, 3]}})]})
    np.testing.assert_allclose(qs[0].groups["G"], [0.25, 0.75])
    with pytest.raises(InputError, match="not found"):
        load_distributions(tmp_path / "none.json")
    assert math.isclose(float(js_distance(qs[0].groups["G"], qs[0].models["M"])),
                        jensenshannon([0.25, 0.75], [0.5, 0.5], base=2), abs_tol=1e-12)
