"""The choice rule written once (engine/align/choice_rule.py): its Python run and its compiled runs
agree exactly, exact ties and NaN (unnamed) target values included."""

from __future__ import annotations

import math

import numpy as np
import pytest
from numba import njit

from pluralign.engine.align import choice_rule
from pluralign.engine.align.choice_rule import PRED_TIE
from pluralign.engine.align.kernels import exact_choice
from pluralign.engine.pluralism.jury_eval import best_within

_verdict = njit(cache=False)(choice_rule.label_verdict)
_first_within_sqrt = njit(cache=False)(choice_rule.first_within_sqrt)


def _case(rng: np.random.Generator, n_attr: int = 5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Predictions for 2-6 responses on a coarse grid with copied rows and 1e-12 nudges (exact
    and near ties), and a target naming a random subset of the attributes (NaN elsewhere)."""
    k = int(rng.integers(2, 7))
    pred = np.round(rng.uniform(0, 1, (k, n_attr)) * 4) / 4
    for _ in range(int(rng.integers(0, 3))):
        i, j = rng.integers(0, k, 2)
        pred[i] = pred[j]
        if rng.random() < 0.5:
            pred[i, rng.integers(0, n_attr)] += rng.choice([-1e-12, 1e-12])
    values = np.round(rng.uniform(0, 1, n_attr) * 4) / 4
    values[rng.random(n_attr) < 0.35] = np.nan
    return pred, np.arange(n_attr, dtype=np.int64), values


def _distance_space(pred: np.ndarray, values: np.ndarray) -> int:
    """The rule as the accuracy protocol words it (the alignment function of the
    steerable-pluralism paper, §4.1, with exact ties): distances first, then the lowest index
    within 1e-9."""
    named = ~np.isnan(values)
    d = [math.sqrt(sum((float(x) - float(v)) ** 2 for x, v in zip(row[named], values[named],
                                                                   strict=True)))
         for row in pred]
    dmin = min(d)
    return next(i for i, x in enumerate(d) if x <= dmin + PRED_TIE)


def test_python_and_compiled_choices_agree_on_ties_and_nan_targets() -> None:
    rng = np.random.default_rng(3)
    n_ties = 0
    for _ in range(3000):
        pred, cols, values = _case(rng)
        k = pred.shape[0]
        py = choice_rule.choose(pred, 0, k, cols, values, PRED_TIE)
        compiled = exact_choice(pred, 0, k, cols, values, PRED_TIE)
        assert py == compiled == _distance_space(pred, values)
        # the same scenario inside a larger array (rows r0.. of the flat predictions)
        padded = np.vstack([np.full((3, pred.shape[1]), 0.5), pred])
        assert exact_choice(padded, 3, k, cols, values, PRED_TIE) == py
        sq = np.array([choice_rule.add_squares(pred, r, cols, values, 0.0) for r in range(k)])
        n_ties += int(np.sum(sq == sq.min()) > 1)
    assert n_ties > 300  # the cases do exercise exact ties


def test_all_nan_target_chooses_the_first_response() -> None:
    pred = np.array([[0.9, 0.1], [0.2, 0.3]])
    values = np.array([np.nan, np.nan])
    cols = np.arange(2, dtype=np.int64)
    assert choice_rule.choose(pred, 0, 2, cols, values, PRED_TIE) == 0
    assert exact_choice(pred, 0, 2, cols, values, PRED_TIE) == 0


def test_tie_tolerance_prefers_the_lower_index() -> None:
    cols = np.arange(1, dtype=np.int64)
    values = np.array([0.0])
    # response 1 is nearer by less than 1e-9: still response 0; by more: response 1
    for gap, want in ((5e-10, 0), (5e-9, 1)):
        pred = np.array([[0.5 + gap], [0.5]])
        assert choice_rule.choose(pred, 0, 2, cols, values, PRED_TIE) == want
        assert exact_choice(pred, 0, 2, cols, values, PRED_TIE) == want


def test_split_target_sums_equal_one_pass() -> None:
    """add_squares continued over a second half gives the one-pass sum (the fast path's form)."""
    rng = np.random.default_rng(5)
    for _ in range(500):
        pred, cols, values = _case(rng, n_attr=6)
        for r in range(pred.shape[0]):
            whole = choice_rule.add_squares(pred, r, cols, values, 0.0)
            half = choice_rule.add_squares(pred, r, cols[:3], values[:3], 0.0)
            assert choice_rule.add_squares(pred, r, cols[3:], values[3:], half) == whole


def test_first_within_sqrt_equals_first_within_of_the_roots() -> None:
    rng = np.random.default_rng(7)
    for _ in range(3000):
        n = int(rng.integers(1, 7))
        sq = rng.choice([0.0, 0.25, 0.5, 1.0, 1.0 + 1e-12, 2.0], size=n) + \
            rng.choice([0.0, 1e-10, 3e-9], size=n)
        want = choice_rule.first_within(np.sqrt(sq), n, PRED_TIE)
        assert choice_rule.first_within_sqrt(sq, n, PRED_TIE) == want
        assert _first_within_sqrt(sq, n, PRED_TIE) == want


def test_label_verdict_python_and_compiled() -> None:
    rng = np.random.default_rng(11)
    seen = set()
    for _ in range(2000):
        n = int(rng.integers(1, 6))
        sq = rng.integers(0, 4, n).astype(np.int64)
        for chosen in range(n):
            v = choice_rule.label_verdict(sq, n, chosen)
            assert v == _verdict(sq, n, chosen)
            want = -1 if np.all(sq == sq[0]) else int(sq[chosen] == sq.min())
            assert v == want
            seen.add(v)
    assert seen == {-1, 0, 1}


def _best_within_reference(values: np.ndarray, offsets: np.ndarray, tie: float) -> np.ndarray:
    """The former numpy form of best_within: lowest index >= max - tie, 0 when all NaN."""
    starts, sizes = offsets[:-1], np.diff(offsets)
    safe = np.where(np.isnan(values), -np.inf, values)
    top = np.maximum.reduceat(safe, starts, axis=-1)
    ok = safe >= np.repeat(top, sizes, axis=-1) - tie
    local = np.arange(values.shape[-1]) - np.repeat(starts, sizes)
    first = np.minimum.reduceat(np.where(ok, local, np.iinfo(np.int64).max), starts, axis=-1)
    return np.where(np.isfinite(top), first, 0).astype(np.int64)


@pytest.mark.parametrize("tie", [0.0, 1e-9, 0.1])
def test_best_within_equals_its_numpy_reference(tie: float) -> None:
    rng = np.random.default_rng(13)
    sizes = rng.integers(1, 6, 40)
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    values = rng.choice([0.0, 0.25, 0.5, 0.5 + 1e-10, 0.75, np.nan], size=(3, 4, offsets[-1]))
    values[0, 0, offsets[5]:offsets[6]] = np.nan  # a scenario with no value
    got = best_within(values, offsets, tie)
    np.testing.assert_array_equal(got, _best_within_reference(values, offsets, tie))
    assert got.shape == (3, 4, 40) and got[0, 0, 5] == 0


@pytest.mark.parametrize("module", ["align.kernels", "pluralism.jury_eval"])
def test_compiled_callers_name_the_rule_they_were_compiled_with(module: str) -> None:
    """numba renews a cached kernel only when its own file changes: the files that compile the
    rule in must change with it (update CHOICE_RULE_DIGEST there after editing the rule)."""
    import importlib
    from pathlib import Path

    from pluralign.engine.store.hashing import text_digest

    want = text_digest(Path(choice_rule.__file__).read_bytes(), 16)
    named = importlib.import_module(f"pluralign.engine.{module}").CHOICE_RULE_DIGEST
    assert named == want, (f"engine/align/choice_rule.py changed: set CHOICE_RULE_DIGEST in "
                           f"engine/{module.replace('.', '/')}.py to {want!r} so its cached kernels are compiled "
                           "again")
