"""SPICA metrics: a hand-computed example and vectorized == loop on random banks."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pluralign.engine.spica.bank import ALL, make_bank
from pluralign.engine.spica.group_metrics import (
    consensus,
    g_contrast,
    g_stability,
    group_norms,
    mismatch,
    pairwise_mismatch,
)
from pluralign.engine.spica.group_metrics_loop import (
    consensus_loop,
    g_contrast_loop,
    g_stability_loop,
    pairwise_mismatch_loop,
)
from pluralign.schemas.spica import BankMeta, BankScenario, ClassRating, RaterRecord, ResponseClass
from tests.engine.spica.helpers import bank, rater, scenario


def _hand_bank():
    # Group g: rater a rates [5, 3, 1], rater b [3, 3, 3]; rater c (group h) rates [5, 3, 1].
    return bank([
        scenario("x", "first", [rater("a", ["g"], [5, 3, 1]), rater("b", ["g"], [3, 3, 3])]),
        scenario("y", "second", [rater("c", ["g", "h"], [5, 3, 1])]),
    ])


def test_hand_computed_example():
    b = _hand_bank()
    n = group_norms(b, "g")
    np.testing.assert_allclose(n.consensus[0], [4.0, 3.0, 2.0])
    # stability per class: -(1+1)/2, -(0+0)/2, -(1+1)/2 -> mean -2/3
    assert n.stability[0] == pytest.approx(-2 / 3)
    # contrast with the rater's own mean 3: a -> (4+0+4)/3 = 8/3, b -> 0; mean 4/3
    assert n.contrast[0] == pytest.approx(4 / 3)
    # Eq. 4 as printed (group mean) would give 2/3 = -g_stability; ours differs.
    assert n.contrast[0] != pytest.approx(-n.stability[0])
    # One rater: no within-group spread; contrast of [5, 3, 1] is 8/3.
    assert n.stability[1] == 0.0 and n.contrast[1] == pytest.approx(8 / 3)
    # Eq. 1: root of the SUM of squares, not a mean.
    assert float(mismatch(np.array([5.0, 3, 1]), np.array([3.0, 3, 3]))) == pytest.approx(
        math.sqrt(8))
    R = b.ratings("g")
    # Pairwise: (a, c) = 0 and (b, c) = sqrt 8 -> mean sqrt(8)/2; x against itself: (0 + 2·sqrt8 + 0)/4.
    P = pairwise_mismatch(R, R)
    assert P[0, 1] == pytest.approx(math.sqrt(8) / 2)
    assert P[0, 0] == pytest.approx(math.sqrt(8) / 2)
    assert P[1, 1] == 0.0


def test_group_membership_and_all():
    b = _hand_bank()
    h = group_norms(b, "h")
    assert list(h.n_raters) == [0, 1]
    assert list(h.rated) == [False, True]
    everyone = group_norms(b, ALL)
    assert list(everyone.n_raters) == [2, 1]


def test_missing_ratings_are_left_out():
    b = bank([scenario("x", "p", [rater("a", ["g"], [5, None, 1]),
                                  rater("b", ["g"], [3, 2, None])])])
    R = b.ratings("g")
    np.testing.assert_allclose(consensus(R)[0], [4.0, 2.0, 1.0])
    # class 0: -1; class 1: 0 (one rater); class 2: 0 -> mean -1/3
    assert g_stability(R)[0] == pytest.approx(-1 / 3)
    # a: own mean 3 over {5, 1} -> 4; b: own mean 2.5 over {3, 2} -> .25; mean 2.125
    assert g_contrast(R)[0] == pytest.approx(2.125)


# -- property: vectorized == loop ----------------------------------------------------------
GROUPS = ("g", "h", "k")


@st.composite
def random_banks(draw):
    k = draw(st.integers(2, 4))
    classes = tuple(ResponseClass(f"c{i}", f"strategy {i}") for i in range(k))
    meta = BankMeta("random", classes)
    n = draw(st.integers(1, 6))
    rating = st.one_of(st.none(), st.integers(1, 5))
    scenarios = []
    for s in range(n):
        raters = []
        for r in range(draw(st.integers(0, 5))):
            groups = draw(st.lists(st.sampled_from(GROUPS), min_size=1, max_size=2, unique=True))
            ratings = {c.name: ClassRating(draw(rating), draw(rating), 0) for c in classes
                       if draw(st.booleans()) or c is classes[0]}
            raters.append(RaterRecord(f"s{s}r{r}", tuple(groups), ratings))
        scenarios.append(BankScenario(f"s{s}", f"prompt {s}",
                                      {c.name: ("t",) for c in classes}, tuple(raters)))
    return make_bank(meta, scenarios)


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, abs=1e-12)


@settings(max_examples=150, deadline=None)
@given(random_banks(), st.sampled_from(("response", "strategy")))
def test_vectorized_equals_loop(b, kind):
    for group in (*b.groups, ALL):
        norms = group_norms(b, group, kind)
        R = b.ratings(group, kind)
        P = pairwise_mismatch(R, R, chunk=2)
        for i, s in enumerate(b.scenarios):
            cons = consensus_loop(s, b.classes, group, kind)
            for j, c in enumerate(b.classes):
                assert _same(norms.consensus[i, j], cons[c])
            assert _same(norms.stability[i], g_stability_loop(s, b.classes, group, kind))
            assert _same(norms.contrast[i], g_contrast_loop(s, b.classes, group, kind))
            for j, x in enumerate(b.scenarios):
                assert _same(P[i, j], pairwise_mismatch_loop(s, x, b.classes, group, kind))
