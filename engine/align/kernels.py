"""Compiled inner loops of re-alignment (numba): label cells and response choice per cell.

Kept apart from :mod:`engine.align` so the array bookkeeping stays readable. Both kernels run
in parallel over first-half rows ``a``; every cell ``a * n2 + c`` is owned by one thread.
numba is used because the fused loop runs ~10x faster than the same work as numpy passes.
"""

from __future__ import annotations

import math
import types
from collections.abc import Callable
from typing import Any

import numpy as np
from numba import njit, prange

from pluralign.engine.align import choice_rule
from pluralign.engine.align.choice_rule import PRED_TIE

CHOICE_RULE_DIGEST = "bde0f2034490d8f3"
"""First 16 hex of the SHA-256 of ``engine/align/choice_rule.py`` that the cached kernels of this
file were compiled with. numba keys a cached kernel on its own file's content only, yet
compiles :mod:`engine.choice_rule`'s functions into it; this line changes with that file
(``tests/engine/test_choice_rule.py`` checks it), so its edits renew this file's caches."""


def _label_cells(l1, l2, offsets, masks, counted):  # type: ignore[no-untyped-def]
    """masks[s, cell]: bit r set when response r is label-closest; 0 when all responses tie.

    Responses outermost and cells innermost (contiguous rows of ``l2``), so the inner loop is
    branch-free and vectorizes.
    """
    n1, n2 = l1.shape[1], l2.shape[1]
    n_s = offsets.size - 1
    for a in prange(n1):
        first = np.empty(n2, np.int64)
        best = np.empty(n2, np.int64)
        mask = np.empty(n2, np.int64)
        same = np.empty(n2, np.bool_)
        base = a * n2
        for s in range(n_s):
            r0 = offsets[s]
            k = offsets[s + 1] - r0
            la = l1[r0, a]
            q = l2[r0]
            for c in range(n2):
                v = la + q[c]
                first[c] = v
                best[c] = v
                mask[c] = 1
                same[c] = True
            for r in range(1, k):
                la = l1[r0 + r, a]
                q = l2[r0 + r]
                bit = np.int64(1) << r
                for c in range(n2):
                    v = la + q[c]
                    same[c] = same[c] and v == first[c]
                    b = best[c]
                    mask[c] = bit if v < b else (mask[c] | bit if v == b else mask[c])
                    best[c] = v if v < b else b
            for c in range(n2):
                if same[c]:
                    masks[s, base + c] = 0
                else:
                    masks[s, base + c] = mask[c]
                    counted[base + c] += 1


exact_choice = njit(cache=True)(choice_rule.choose)
"""The choice rule (:func:`engine.choice_rule.choose`, the alignment function of the
steerable-pluralism paper, §4.1) compiled: the exact re-decision."""


def _choose_cells(  # type: ignore[no-untyped-def]
    p1, p2, offsets, masks, margin, pred, h1, v1, h2, v2,
    hits, l1, l2, k1, k2, scale, wsum, csum, want_weighted, chosen_out, keep_chosen,
):
    """For every scenario and cell pick the response; count hits against the label masks.

    Pass 1 decides in squared-distance space and flags near-ties (gap <= margin[s]); pass 2
    re-decides flagged cells with the exact rule; pass 3 accumulates. With ``want_weighted``,
    ``wsum`` gets 1 - d(selected)/d_max per counted scenario, d_max the largest label distance
    among the scenario's responses (the published weighted score), and ``csum`` the closeness
    1 - d(selected)/sqrt(k), sqrt(k) the largest distance possible in [0, 1]^k (not a weighted
    score: no scenario's responses enter it); both in scenario order, as the oracle.
    """
    n1, n2 = p1.shape[1], p2.shape[1]
    n_s = offsets.size - 1
    n_h1 = h1.size
    cols = np.concatenate((h1, h2))  # the exact rule's columns: attribute order
    rule_values = np.empty((n1, cols.size))  # per row, the values of its cell being re-decided
    for a in prange(n1):
        values = rule_values[a]
        values[:n_h1] = v1[a]
        ch = np.empty(n2, np.int64)
        best = np.empty(n2, p1.dtype)
        second = np.empty(n2, p1.dtype)
        base = a * n2
        row_hits = hits[base:base + n2]
        l_max = np.empty(n2, np.int64)
        sqrt_k = np.empty(n2)
        if want_weighted:
            for c in range(n2):
                sqrt_k[c] = math.sqrt(float(k1[a] + k2[c]))
        for s in range(n_s):
            r0 = offsets[s]
            k = offsets[s + 1] - r0
            m = margin[s]
            mrow = masks[s, base:base + n2]
            n_unsure = 0
            if k == 2:
                # Two responses: the sign of the difference decides; branch-free so it vectorizes.
                d1 = p1[r0 + 1, a] - p1[r0, a]
                q0 = p2[r0]
                q1 = p2[r0 + 1]
                for c in range(n2):
                    delta = d1 + (q1[c] - q0[c])
                    ch[c] = delta < 0
                    n_unsure += abs(delta) <= m
            else:
                # Running minimum over responses, with the runner-up to detect near-ties.
                pa = p1[r0, a]
                q = p2[r0]
                for c in range(n2):
                    best[c] = pa + q[c]
                    second[c] = math.inf
                    ch[c] = 0
                for r in range(1, k):
                    pa = p1[r0 + r, a]
                    q = p2[r0 + r]
                    for c in range(n2):
                        v = pa + q[c]
                        lt = v < best[c]
                        second[c] = best[c] if lt else min(second[c], v)
                        ch[c] = r if lt else ch[c]
                        best[c] = v if lt else best[c]
                for c in range(n2):
                    n_unsure += second[c] - best[c] <= m
            if n_unsure:
                _fix_unsure(ch, k, r0, a, m, p1, p2, pred, cols, values, n_h1, v2, best, second)
            for c in range(n2):
                row_hits[c] += (np.int64(mrow[c]) >> ch[c]) & 1
            if want_weighted:
                # Largest label distance per cell: contiguous rows, vectorizes.
                la = l1[r0, a]
                q = l2[r0]
                for c in range(n2):
                    l_max[c] = la + q[c]
                for r in range(1, k):
                    la = l1[r0 + r, a]
                    q = l2[r0 + r]
                    for c in range(n2):
                        l_max[c] = max(l_max[c], la + q[c])
                for c in range(n2):
                    if mrow[c] != 0:
                        r = r0 + ch[c]
                        d_sel = math.sqrt(float(l1[r, a] + l2[r, c]))
                        wsum[base + c] += 1.0 - d_sel / math.sqrt(float(l_max[c]))
                        csum[base + c] += 1.0 - d_sel / scale / sqrt_k[c]
            if keep_chosen:
                for c in range(n2):
                    chosen_out[s, base + c] = ch[c]


@njit(cache=True)
def _fix_unsure(ch, k, r0, a, m, p1, p2, pred, cols, values, n_h1, v2, best, second):  # type: ignore[no-untyped-def]
    """Re-decide, with the exact rule, every cell of this row whose gap is within the margin.

    The rule takes the target as one (column, value) pair of arrays: ``cols`` is the first
    half's columns then the second's (all after them, so still in attribute order) and
    ``values`` holds row a's first-half values; per cell only the second half's are written.
    """
    n2 = ch.size
    for c in range(n2):
        if k == 2:
            gap = abs((p1[r0 + 1, a] - p1[r0, a]) + (p2[r0 + 1, c] - p2[r0, c]))
        else:
            gap = second[c] - best[c]
        if gap <= m:
            values[n_h1:] = v2[c]
            ch[c] = exact_choice(pred, r0, k, cols, values, PRED_TIE)


def _named(fn: Callable[..., Any], suffix: str) -> Callable[..., Any]:
    """The same function under another name. numba names a function's cache files after its
    qualified name and line and keys their entries by signature only, not by compile options:
    a parallel and a serial build of one function would share entries, and a process could
    load the serial code for the parallel kernel (re-alignment then ran on one core)."""
    assert isinstance(fn, types.FunctionType)
    copy = types.FunctionType(fn.__code__, fn.__globals__, fn.__name__ + suffix,
                              fn.__defaults__, fn.__closure__)
    copy.__qualname__ = fn.__qualname__ + suffix
    copy.__doc__ = fn.__doc__
    return copy


def _few_targets(pred, units, offsets, values, unit_values, scale, want_weighted,  # type: ignore[no-untyped-def]
                 counted, correct, wsum, csum, chosen_out, keep_chosen):
    """Re-alignment of a few targets by the exact rule alone, one target and one scenario at a
    time as the loop oracle (:mod:`engine.align_loop`) spells it, compiled: no label index, no
    tables, no margins. For one or a handful of targets this is less work than building the
    grid tables the cell kernels need (the service's one-target queries).

    ``values`` is (T, A) float64 with NaN for an attribute a target does not name,
    ``unit_values`` the same rounded to integer units of ``scale`` (still float, NaN kept),
    ``units`` the labels in those units (int64). Per target: ``counted``, ``correct``, and with
    ``want_weighted`` the published weighted score (``wsum``) and the closeness (``csum``):
    sums in scenario order, then 100 * sum / counted as :func:`engine.realign.combine`
    computes them (NaN where nothing is counted); with ``keep_chosen`` the chosen response of
    every scenario in ``chosen_out`` (S, T).

    Returns False, with nothing computed, when a prediction is not finite (the caller then
    says which: :func:`engine.realign.check_predictions`), else True.
    """
    for r in range(pred.shape[0]):
        for a in range(pred.shape[1]):
            if not math.isfinite(pred[r, a]):
                return False
    n_t, n_a = values.shape
    n_s = offsets.size - 1
    cols = np.arange(n_a)
    max_k = 1
    for s in range(n_s):
        max_k = max(max_k, offsets[s + 1] - offsets[s])
    sq = np.empty(max_k)
    lsq = np.empty(max_k, np.int64)
    for t in range(n_t):
        v = values[t]
        uv = unit_values[t]
        named = 0
        for a in range(n_a):
            if not math.isnan(v[a]):
                named += 1
        sqrt_k = math.sqrt(float(named))
        for s in range(n_s):
            r0 = offsets[s]
            k = offsets[s + 1] - r0
            for r in range(k):
                total = np.int64(0)
                for a in range(n_a):
                    if not math.isnan(v[a]):
                        d = units[r0 + r, a] - np.int64(uv[a])
                        total += d * d
                lsq[r] = total
            tie = choice_rule.label_verdict(lsq, k, 0) < 0
            if tie and not keep_chosen:
                continue
            for r in range(k):
                sq[r] = choice_rule.add_squares(pred, r0 + r, cols, v, 0.0)
            ch = choice_rule.first_within_sqrt(sq, k, PRED_TIE)
            if keep_chosen:
                chosen_out[s, t] = ch
            if tie:
                continue
            counted[t] += 1
            correct[t] += choice_rule.label_verdict(lsq, k, ch)
            if want_weighted:
                l_max = lsq[0]
                for r in range(1, k):
                    l_max = max(l_max, lsq[r])
                d_sel = math.sqrt(float(lsq[ch]))
                wsum[t] += 1.0 - d_sel / math.sqrt(float(l_max))
                csum[t] += 1.0 - d_sel / scale / sqrt_k
        if want_weighted:
            wsum[t] = 100.0 * wsum[t] / counted[t] if counted[t] > 0 else math.nan
            csum[t] = 100.0 * csum[t] / counted[t] if counted[t] > 0 else math.nan
    return True


few_targets = njit(cache=True)(_few_targets)


# Each kernel twice: parallel over first-half rows for large blocks, and serial for small
# ones (a one-target query), where waking the thread pool costs more than the work — and on a
# loaded machine can wait a whole scheduler slice. Same arithmetic per cell, same results;
# their own names, so their caches stay apart.
label_cells = njit(parallel=True, cache=True)(_named(_label_cells, "_parallel"))
label_cells_serial = njit(cache=True)(_named(_label_cells, "_serial"))
choose_cells = njit(parallel=True, cache=True)(_named(_choose_cells, "_parallel"))
choose_cells_serial = njit(cache=True)(_named(_choose_cells, "_serial"))
SERIAL_BELOW = 1 << 18
"""Blocks of fewer (response, cell) pairs than this run on the serial kernels."""
