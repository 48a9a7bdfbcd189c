"""The plain, loop-per-target alignment: the reference the fast path must equal exactly.

It spells out SPEC §4 one target and one scenario at a time, with no cleverness, so a reader
can check the rules against the spec line by line:

* predicted distance: sqrt of the sum, in attribute order, of (prediction - target)^2 over the
  target's attributes; the chosen response is the lowest index among those within 1e-9 of the
  smallest distance;
* label distance: the same sum in exact integer units of the level grid; the correct responses
  are those at the minimum; a scenario where every response ties on labels is not counted;
* weighted score (seed 003, the authors' ``score.py``): per counted scenario
  (1 - d(selected) / d_max) * 100, d_max the largest label distance among the scenario's
  responses (never 0 there: a scenario whose responses all tie is not counted); the variant
  normalised by the largest distance possible in [0, 1]^k uses d_max = sqrt(k) instead.
"""

from __future__ import annotations

import math

import numpy as np

from pluralign.engine.benchmark import Benchmark
from pluralign.engine.levels import common_scale, grid_scale
from pluralign.engine.targets import TargetSet

PRED_TIE = 1e-9
"""Two predicted distances closer than this tie (the lower response index wins)."""


def target_scale(bench: Benchmark, targets: TargetSet) -> int:
    """Integer grid on which both the labels and every target value are exact."""
    vals = targets.values[~np.isnan(targets.values)]
    if vals.size == 0:
        return bench.scale
    return common_scale(bench.scale, grid_scale(np.unique(vals).tolist()))


def predicted_choice(pred: np.ndarray, items: list[tuple[int, float]]) -> int:
    """Index of the chosen response for one scenario's predictions (rows = responses)."""
    dists = []
    for row in pred:
        total = 0.0
        for a, v in items:
            diff = float(row[a]) - v
            total += diff * diff
        dists.append(math.sqrt(total))
    dmin = min(dists)
    return next(i for i, d in enumerate(dists) if d <= dmin + PRED_TIE)


def label_correct(units: np.ndarray, items: list[tuple[int, int]]) -> set[int] | None:
    """Label-closest responses in integer units, or None when every response ties."""
    dists = [sum((int(row[a]) - v) ** 2 for a, v in items) for row in units]
    best = min(dists)
    if all(d == best for d in dists):
        return None
    return {i for i, d in enumerate(dists) if d == best}


def _items(targets: TargetSet, t: int) -> list[tuple[int, float]]:
    return [(a, float(v)) for a, v in enumerate(targets.values[t]) if not math.isnan(v)]


def chosen_loop(bench: Benchmark, predictions: np.ndarray, targets: TargetSet) -> np.ndarray:
    """int64 (S, T): the chosen response of every scenario for every target."""
    out = np.zeros((bench.n_scenarios, len(targets)), dtype=np.int64)
    for t in range(len(targets)):
        items = _items(targets, t)
        for s in range(bench.n_scenarios):
            lo, hi = bench.offsets[s], bench.offsets[s + 1]
            out[s, t] = predicted_choice(predictions[lo:hi], items)
    return out


def realign_loop(
    bench: Benchmark, predictions: np.ndarray, targets: TargetSet, *, sqrt_k: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(counted, correct, weighted) per target, one target and one scenario at a time.

    ``weighted`` is the mean over counted scenarios of (1 - d(selected)/d_max) * 100 with d the
    selected response's label distance and d_max the largest label distance among that
    scenario's responses (``sqrt_k``: d_max = sqrt(number of target attributes)); NaN when
    nothing is counted.
    """
    scale = target_scale(bench, targets)
    units = np.round(bench.labels * scale).astype(np.int64)
    n_t = len(targets)
    counted = np.zeros(n_t, dtype=np.int64)
    correct = np.zeros(n_t, dtype=np.int64)
    weighted = np.full(n_t, np.nan)
    for t in range(n_t):
        items = _items(targets, t)
        unit_items = [(a, round(v * scale)) for a, v in items]
        total_w = 0.0
        for s in range(bench.n_scenarios):
            lo, hi = bench.offsets[s], bench.offsets[s + 1]
            good = label_correct(units[lo:hi], unit_items)
            if good is None:
                continue
            chosen = predicted_choice(predictions[lo:hi], items)
            counted[t] += 1
            correct[t] += chosen in good
            sq = [sum((int(row[a]) - v) ** 2 for a, v in unit_items) for row in units[lo:hi]]
            d_sel = math.sqrt(float(sq[chosen]))
            if sqrt_k:
                total_w += 1.0 - d_sel / scale / math.sqrt(len(items))
            else:
                total_w += 1.0 - d_sel / math.sqrt(float(max(sq)))
        if counted[t]:
            weighted[t] = 100.0 * total_w / counted[t]
    return counted, correct, weighted
