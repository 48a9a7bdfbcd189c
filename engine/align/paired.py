"""Per-scenario outcomes of a re-alignment and the paired bootstrap that compares two scorers
on the same scenarios (resampling the scenarios, the same draw for both).

The outcome of one (scenario, target) is whether it counts (its labels do not all tie), whether
the chosen response is label-closest, and its weighted score (1 - d(chosen)/d_max) * 100 (the
steerable-pluralism paper's weighted score, d the label distance to the target, d_max the
scenario's largest): summed over scenarios they are exactly :func:`realign`'s totals.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from pluralign.engine.align.align_loop import target_scale
from pluralign.engine.align.realign import chosen_responses
from pluralign.engine.data.benchmark import Benchmark
from pluralign.engine.data.targets import TargetSet

BLOCK = 4096
"""Targets per block: keeps the (responses x targets) distance table small on MIC's grid."""


@dataclass(frozen=True)
class Outcomes:
    """(S, T) outcomes of a block of targets."""

    counted: np.ndarray
    """bool: the scenario counts for the target."""
    correct: np.ndarray
    """bool: counted and the chosen response is label-closest."""
    weighted: np.ndarray
    """float64: (1 - d(chosen)/d_max) * 100 where counted, else 0."""
    chosen: np.ndarray
    """int8: the chosen response's index within its scenario."""


def outcomes(bench: Benchmark, predictions: np.ndarray, targets: TargetSet,
             chosen: np.ndarray | None = None) -> Outcomes:
    """Every scenario's outcome for every target of ``targets`` (``chosen``: (S, T) picks of a
    judge that chooses itself; by default the predictions' choice)."""
    picks = chosen_responses(bench, predictions, targets) if chosen is None else chosen
    d = distances(bench, targets)
    starts = bench.offsets[:-1]
    dmin, dmax = _scenario_extremes(bench, d)
    rows = starts[:, None] + np.maximum(picks.astype(np.int64), 0)
    d_sel = np.take_along_axis(d, rows, axis=0)
    counted = (dmax > dmin) & (picks >= 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        weighted = np.where(counted, (1.0 - d_sel / dmax) * 100.0, 0.0)
    return Outcomes(counted, counted & (d_sel == dmin), weighted, picks.astype(np.int8))


def _scenario_extremes(bench: Benchmark, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(S, T) smallest and largest of each scenario's rows of ``d`` (N, T): one gather of
    every scenario's responses (padded with its first), much faster than ``reduceat``."""
    sizes = np.diff(bench.offsets)
    pos = np.arange(int(sizes.max()))[None, :]
    idx = bench.offsets[:-1, None] + np.where(pos < sizes[:, None], pos, 0)
    g = d[idx]  # (S, R, T)
    return g.min(axis=1), g.max(axis=1)


def distances(bench: Benchmark, targets: TargetSet) -> np.ndarray:
    """float64 (N, T): :func:`label_distances` by matrix products over integer label units
    (exact: the squared sums are small integers, so ties stay ties), several times faster on
    large blocks of targets."""
    scale = target_scale(bench, targets)
    units = np.round(bench.labels * scale)
    named = ~np.isnan(targets.values)
    v = np.where(named, np.round(np.nan_to_num(targets.values) * scale), 0.0)
    m = named.astype(np.float64)
    sq = (units**2) @ m.T - 2.0 * (units @ v.T) + (v**2).sum(axis=1)[None, :]
    return np.sqrt(np.maximum(sq, 0.0)) / scale


def blocks(targets: TargetSet, size: int = BLOCK) -> Iterator[tuple[slice, TargetSet]]:
    """``targets`` in blocks of at most ``size``: (its columns, the block's targets)."""
    if len(targets) <= size:
        yield slice(0, len(targets)), targets
        return
    for t0 in range(0, len(targets), size):
        cols = slice(t0, min(t0 + size, len(targets)))
        yield cols, targets.take(np.arange(cols.start, cols.stop))


def all_outcomes(bench: Benchmark, predictions: np.ndarray,
                 targets: TargetSet) -> Iterator[Outcomes]:
    """:func:`outcomes` of every target, block by block; the choices are made once over the
    whole set (fast on the grid of every target)."""
    picks = chosen_responses(bench, predictions, targets)
    for cols, block in blocks(targets):
        yield outcomes(bench, predictions, block, picks[:, cols])


def resample_weights(n_scenarios: int, n_boot: int, seed: int) -> np.ndarray:
    """float64 (1 + n_boot, S): row 0 all ones (the point estimate), then how often each
    scenario is drawn in each bootstrap resample."""
    rng = np.random.default_rng(seed)
    draws = rng.multinomial(n_scenarios, np.full(n_scenarios, 1.0 / n_scenarios), size=n_boot)
    return np.vstack([np.ones((1, n_scenarios)), draws]).astype(np.float64)


@dataclass
class PairedSums:
    """Running sums over target blocks of one target set, per resample."""

    n_rows: int
    """1 + number of resamples."""

    def __post_init__(self) -> None:
        z = np.zeros(self.n_rows)
        self.acc_a, self.acc_b, self.w_a, self.w_b = z.copy(), z.copy(), z.copy(), z.copy()
        self.defined = z.copy()
        self.a_wins = self.b_wins = self.targets = 0

    def add(self, weights: np.ndarray, a: Outcomes, b: Outcomes) -> None:
        """Add one block of targets (``a`` and ``b`` over the same targets and scenarios)."""
        k = weights @ a.counted.astype(np.float64)  # counted depends on labels alone
        with np.errstate(invalid="ignore", divide="ignore"):
            per = {name: (weights @ x) / k for name, x in (
                ("acc_a", a.correct.astype(np.float64)), ("acc_b", b.correct.astype(np.float64)),
                ("w_a", a.weighted), ("w_b", b.weighted))}
        ok = k > 0
        for name, value in per.items():
            setattr(self, name, getattr(self, name) + np.where(ok, value, 0.0).sum(axis=1))
        self.defined += ok.sum(axis=1)
        point_a, point_b = per["acc_a"][0][ok[0]], per["acc_b"][0][ok[0]]
        self.a_wins += int((point_a > point_b).sum())
        self.b_wins += int((point_a < point_b).sum())
        self.targets += int(ok[0].sum())

    def means(self) -> dict[str, np.ndarray]:
        """Per resample (row 0 the point estimate): mean accuracy and weighted score over the
        targets defined in that resample, in percent."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return {name: 100.0 * getattr(self, name) / self.defined if name.startswith("acc")
                    else getattr(self, name) / self.defined
                    for name in ("acc_a", "acc_b", "w_a", "w_b")}


def interval(values: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of the finite bootstrap values (row 0, the point, left out)."""
    boot = values[1:][np.isfinite(values[1:])]
    if not len(boot):
        return float("nan"), float("nan")
    lo, hi = np.percentile(boot, [50 * (1 - level), 100 - 50 * (1 - level)])
    return float(lo), float(hi)


def squared_errors(bench: Benchmark, predictions: np.ndarray) -> np.ndarray:
    """float64 (S, A): per scenario, the sum over its responses of (prediction - label)^2."""
    return np.add.reduceat((predictions - bench.labels) ** 2, bench.offsets[:-1], axis=0)


def error_difference(bench: Benchmark, pred_a: np.ndarray, pred_b: np.ndarray,
                     weights: np.ndarray) -> np.ndarray:
    """(1 + resamples, A): mean squared error of A minus that of B, per attribute, over the
    responses of each resample's scenarios."""
    n = weights @ np.diff(bench.offsets).astype(np.float64)
    diff = squared_errors(bench, pred_a) - squared_errors(bench, pred_b)
    return (weights @ diff) / n[:, None]
