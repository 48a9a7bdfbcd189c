"""The choice rule, written once: which response a target selects from predicted scores (the
alignment function of Adams et al., "Steerable Pluralism: Pluralistic Alignment via Few-Shot
Comparative Regression", §4.1, with the exact ties of its accuracy protocol, §5.1).

For one scenario, the predicted distance of a response is the square root of the sum, in
attribute order, of (prediction - target)^2 over the attributes the target names (NaN target
values are skipped); the chosen response is the lowest index among those within
:data:`PRED_TIE` of the smallest distance.

The functions are plain Python in the subset numba compiles (scalars, loops, 1-D and 2-D
arrays, no Python objects), so the loop oracle (:mod:`engine.align_loop`) runs them as they
are and the compiled paths (:mod:`engine.kernels`, :mod:`engine.jury_eval`) compile these same
functions with ``numba.njit``: one definition, so the fast paths and the oracle agree bit for
bit by construction. The helpers are marked ``register_jitable``: still the plain functions
when called from Python, and compiled into any numba function that calls them (as
:func:`choose` calls them). ``cols``/``values`` may be arrays or, from Python, lists.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
from numba.extending import register_jitable

_F = TypeVar("_F", bound=Callable[..., Any])


def _jitable(fn: _F) -> _F:
    """``register_jitable`` keeping the function's type (it returns the function itself)."""
    register_jitable(fn)
    return fn


PRED_TIE = 1e-9
"""Two predicted distances closer than this tie (the lower response index wins)."""


@_jitable
def add_squares(pred: np.ndarray, row: int, cols: Any, values: Any, total: float) -> float:
    """``total`` plus (pred[row, cols[j]] - values[j])^2 for j in order, NaN values skipped.

    Starting from 0.0 over a target's (column, value) arrays this is the squared predicted
    distance; passing a running ``total`` continues it over further attributes (a target given
    in two halves), with exactly the additions of one pass over the whole target.
    """
    for j in range(len(cols)):
        v = values[j]
        if not math.isnan(v):
            diff = pred[row, cols[j]] - v
            total += diff * diff
    return total


@_jitable
def first_within(values: Any, n: int, tie: float) -> int:
    """The lowest index r < n with values[r] <= min(values[:n]) + tie; NaN values are never
    within and do not count towards the minimum; 0 when there is none."""
    vmin = math.inf
    for r in range(n):
        if values[r] < vmin:
            vmin = values[r]
    for r in range(n):
        if values[r] <= vmin + tie:
            return r
    return 0


@_jitable
def first_within_sqrt(sq: Any, n: int, tie: float) -> int:
    """:func:`first_within` of sqrt(sq[:n]) (distances from squared sums), taking only the
    roots it needs.

    sqrt is correctly rounded, hence monotone: the smallest root is the root of the smallest
    sum, and a response at the smallest sum is within without a root; every other response is
    decided by the same comparison ``sqrt(sq[r]) <= dmin + tie``. So the result equals
    ``first_within(np.sqrt(sq), n, tie)`` exactly (``tests/engine/test_choice_rule.py``).
    """
    best = math.inf
    for r in range(n):
        if sq[r] < best:
            best = sq[r]
    dmin = math.sqrt(best)
    for r in range(n):
        if sq[r] <= best or math.sqrt(sq[r]) <= dmin + tie:
            return r
    return 0


def choose(pred: np.ndarray, r0: int, k: int, cols: Any, values: Any, tie: float) -> int:
    """The chosen response (0..k-1) among rows r0..r0+k-1 of ``pred`` for the target given by
    its (column, value) arrays, in ascending column order (NaN values: not named)."""
    sq = np.empty(k)
    for r in range(k):
        sq[r] = add_squares(pred, r0 + r, cols, values, 0.0)
    return first_within_sqrt(sq, k, tie)


@_jitable
def label_verdict(sq: Any, n: int, chosen: int) -> int:
    """Whether response ``chosen`` is label-closest, from the n label distances' squares in
    exact integer units: 1 yes, 0 no, -1 when every response ties (the scenario is not
    counted)."""
    best = sq[0]
    same = True
    for r in range(1, n):
        same = same and sq[r] == sq[0]
        if sq[r] < best:
            best = sq[r]
    if same:
        return -1
    return 1 if sq[chosen] == best else 0
