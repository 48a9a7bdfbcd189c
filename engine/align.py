"""Re-alignment of any set of targets from predicted scores: vectorized, chunked and exact.

Targets form a grid, so the attributes are split in two halves and every target is a cell
(i, j) of (first-half combination, second-half combination). A response's squared distance to
a target is then P1[r, i] + P2[r, j]: one addition per (response, target). The label side
(which responses are label-closest, per scenario and target) depends only on the benchmark and
the targets; it is computed once in exact integer units and kept (:class:`LabelIndex`).

Exactness: the fast pass decides in squared-distance space and flags every comparison closer
than a margin far above its rounding error; flagged cells are decided again exactly as the
loop oracle (:mod:`engine.align_loop`) does, so results equal it bit for bit.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from pluralign.engine.align_loop import target_scale
from pluralign.engine.benchmark import Benchmark
from pluralign.engine.errors import InputError
from pluralign.engine.kernels import choose_cells, label_cells
from pluralign.engine.targets import TargetSet

_CHUNK_BYTES = 64 * 2**20
"""Upper bound on the per-chunk score tables and chosen-index buffers."""
_PRODUCT_SLACK = 4
"""Evaluate the full product of half-combinations when it is at most this many times the
number of distinct targets (it is exactly the targets for the all-targets grid)."""


@dataclass(frozen=True)
class AlignResult:
    """Per-target outcome of re-alignment."""

    counted: np.ndarray
    """int64 (T,): scenarios whose labels do not all tie for the target."""
    correct: np.ndarray
    """int64 (T,): counted scenarios where the chosen response is label-closest."""
    weighted: np.ndarray | None = None
    """float64 (T,): mean of (1 - d(selected)/d_max) * 100 over counted scenarios (NaN where
    nothing is counted); d_max = sqrt(number of target attributes). Only when asked for."""

    @property
    def accuracy(self) -> np.ndarray:
        """float64 (T,): percent correct; NaN where undefined (no counted scenario)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            acc = 100.0 * self.correct / self.counted
        return np.where(self.counted > 0, acc, np.nan)


@dataclass(frozen=True, eq=False)
class _Factor:
    """Targets as cells of a two-half grid."""

    h1: np.ndarray  # attribute indices of the first half (ascending)
    h2: np.ndarray  # attribute indices of the second half (ascending, all after h1)
    v1: np.ndarray  # (n1, |h1|) target values, NaN = attribute not in the target
    v2: np.ndarray  # (n2, |h2|)
    cell: np.ndarray  # (T,) cell index (i * n2 + j) of every target

    @property
    def n1(self) -> int:
        return int(self.v1.shape[0])

    @property
    def n2(self) -> int:
        return int(self.v2.shape[0])


def _unique_rows(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct rows (NaN-aware) and the inverse index."""
    if values.shape[1] == 0:
        return values[:1], np.zeros(values.shape[0], dtype=np.int64)
    keyed = np.where(np.isnan(values), -1.0, values)
    uniq, inv = np.unique(keyed, axis=0, return_inverse=True)
    return np.where(uniq < 0, np.nan, uniq), inv.reshape(-1).astype(np.int64)


def _factor(targets: TargetSet) -> _Factor:
    n_attr = targets.values.shape[1]
    cut = (n_attr + 1) // 2
    h1, h2 = np.arange(cut), np.arange(cut, n_attr)
    v1, i1 = _unique_rows(targets.values[:, h1])
    v2, i2 = _unique_rows(targets.values[:, h2])
    n_distinct = len(_unique_rows(targets.values)[0])
    if v1.shape[0] * v2.shape[0] <= max(_PRODUCT_SLACK * n_distinct, 4096):
        return _Factor(h1, h2, v1, v2, i1 * v2.shape[0] + i2)
    # Too sparse a product (e.g. many continuous-valued targets): one cell per distinct target.
    vall, inv = _unique_rows(targets.values)
    return _Factor(np.arange(n_attr), np.arange(0), vall, np.zeros((1, 0)), inv)


def _sq_table(x: np.ndarray, cols: np.ndarray, v: np.ndarray) -> np.ndarray:
    """(N, n) sum over the half's attributes of (x - v)^2, skipping attributes not in a cell."""
    out = np.zeros((x.shape[0], v.shape[0]), dtype=x.dtype)
    for j, a in enumerate(cols):
        present = ~np.isnan(v[:, j])
        diff = x[:, a][:, None] - np.where(present, v[:, j], 0)[None, :]
        out += np.where(present[None, :], diff * diff, 0)
    return out


def _targets_key(bench: Benchmark, targets: TargetSet) -> str:
    h = hashlib.sha256(bench.content_hash.encode())
    h.update(np.ascontiguousarray(targets.values).tobytes())
    return h.hexdigest()


class LabelIndex:
    """Which responses are label-closest, per scenario and target cell; exact integers.

    Depends only on the benchmark and the targets, so it is built once and reused for every
    scorer. :meth:`for_targets` keeps the last few in memory.
    """

    _memo: ClassVar[OrderedDict[str, LabelIndex]] = OrderedDict()
    _memo_size: ClassVar[int] = 4

    def __init__(self, bench: Benchmark, targets: TargetSet) -> None:
        if targets.attributes != bench.attributes:
            raise InputError(
                f"targets are over {targets.attributes}, the benchmark over {bench.attributes}"
            )
        self.bench = bench
        self.targets = targets
        self.factor = _factor(targets)
        self.scale = target_scale(bench, targets)
        units = np.round(bench.labels * self.scale).astype(np.int64)
        f = self.factor
        # Integer-valued sums held exactly in float64 by _sq_table, stored as int64.
        self.l1 = _sq_table(units.astype(np.float64), f.h1, _units(f.v1, self.scale)).astype(
            np.int64
        )
        self.l2 = _sq_table(units.astype(np.float64), f.h2, _units(f.v2, self.scale)).astype(
            np.int64
        )
        max_k = int(np.diff(bench.offsets).max())
        if max_k > 64:
            raise InputError(f"a scenario has {max_k} responses; at most 64 are supported")
        dtype = np.uint8 if max_k <= 8 else np.uint16 if max_k <= 16 else np.uint32 \
            if max_k <= 32 else np.uint64
        n_cells = f.n1 * f.n2
        self.masks = np.zeros((bench.n_scenarios, n_cells), dtype=dtype)
        self.counted_cells = np.zeros(n_cells, dtype=np.int64)
        label_cells(self.l1, self.l2, bench.offsets, self.masks, self.counted_cells)
        n_attrs = lambda v: (~np.isnan(v)).sum(axis=1).astype(np.int64)  # noqa: E731
        self.k1, self.k2 = n_attrs(f.v1), n_attrs(f.v2)

    @classmethod
    def for_targets(cls, bench: Benchmark, targets: TargetSet) -> LabelIndex:
        """The index for (bench, targets), from memory when it was built recently."""
        key = _targets_key(bench, targets)
        if key in cls._memo:
            cls._memo.move_to_end(key)
            return cls._memo[key]
        index = cls(bench, targets)
        cls._memo[key] = index
        while len(cls._memo) > cls._memo_size:
            cls._memo.popitem(last=False)
        return index


def _units(v: np.ndarray, scale: int) -> np.ndarray:
    """Target values in integer units, kept as float with NaN (exact: small integers)."""
    return np.where(np.isnan(v), np.nan, np.round(v * scale))


def check_predictions(bench: Benchmark, predictions: np.ndarray) -> np.ndarray:
    """float64 (N, A) predictions, or an error naming the first missing/invalid entry."""
    pred = np.asarray(predictions, dtype=np.float64)
    if pred.shape != bench.labels.shape:
        raise InputError(
            f"predictions have shape {pred.shape}, the benchmark needs {bench.labels.shape} "
            "(responses x attributes)"
        )
    bad = np.argwhere(~np.isfinite(pred))
    if bad.size:
        r, a = (int(x) for x in bad[0])
        s = int(bench.scenario_of[r])
        raise InputError(
            f"{len(bad)} predicted scores are missing or not finite",
            record=f"scenario {bench.scenarios[s].id!r} response {int(bench.response_index[r])}",
            field=bench.attributes[a],
            hint="score the missing items first (is the cache incomplete?)",
        )
    return np.ascontiguousarray(pred)


def _margins(bench: Benchmark, p1: np.ndarray, p2: np.ndarray) -> np.ndarray:
    """Per scenario, a gap in squared distance far above the fast pass's rounding error and
    above what the 1e-9 tie tolerance on distances can span (see module docstring).

    The fast pass works in float32 (unit roundoff u = 2**-24) on table entries of at most smax:
    four roundings of entries and three additions of values up to 2 * smax give an error below
    10 * u * smax < 6e-7 * smax. Cells whose gap exceeds 4e-6 * (1 + smax) therefore have a true
    gap above 3.4e-6 * (1 + smax), i.e. a distance gap above 3.4e-6 (d1 - d0 = (s1 - s0) /
    (d1 + d0) and d1 + d0 <= 2 * sqrt(smax) <= 1 + smax): far beyond the 1e-9 tie tolerance and
    the exact rule's own rounding, so both rules agree there. Closer cells go to the exact rule.
    """
    smax = p1.max(axis=1, initial=0.0).astype(np.float64) + p2.max(axis=1, initial=0.0)
    per_scenario = np.maximum.reduceat(smax, bench.offsets[:-1])
    return (4e-6 * (1.0 + per_scenario)).astype(np.float32)


def _run(
    index: LabelIndex,
    predictions: np.ndarray,
    *,
    weighted: bool,
    keep_chosen: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Fast pass over all cells, in chunks of first-half rows to bound memory."""
    bench, f = index.bench, index.factor
    pred = check_predictions(bench, predictions)
    # float32 halves memory traffic and doubles SIMD width; the margin covers its rounding.
    p2 = _sq_table(pred, f.h2, f.v2).astype(np.float32)
    n_cells = f.n1 * f.n2
    hits = np.zeros(n_cells, dtype=np.int64)
    wsum = np.zeros(n_cells if weighted else 0, dtype=np.float64)
    chosen = np.zeros((bench.n_scenarios, n_cells) if keep_chosen else (0, 0), dtype=np.int8)
    row_bytes = 8 * pred.shape[0] + (bench.n_scenarios * f.n2 if keep_chosen else 0)
    rows = max(1, min(f.n1, _CHUNK_BYTES // max(1, row_bytes)))
    for a0 in range(0, f.n1, rows):
        a1 = min(f.n1, a0 + rows)
        p1 = _sq_table(pred, f.h1, f.v1[a0:a1]).astype(np.float32)
        cells = slice(a0 * f.n2, a1 * f.n2)
        choose_cells(
            p1, p2, bench.offsets, index.masks[:, cells], _margins(bench, p1, p2), pred,
            f.h1, f.v1[a0:a1], f.h2, f.v2,
            hits[cells],
            index.l1[:, a0:a1], index.l2, index.k1[a0:a1], index.k2, float(index.scale),
            wsum[cells] if weighted else wsum, weighted,
            chosen[:, cells] if keep_chosen else chosen, keep_chosen,
        )
    return hits, wsum, (chosen if keep_chosen else None)


def realign(
    bench: Benchmark,
    predictions: np.ndarray,
    targets: TargetSet,
    *,
    weighted: bool = False,
    index: LabelIndex | None = None,
) -> AlignResult:
    """Accuracy (and optionally the weighted score) of ``predictions`` for every target.

    ``predictions`` is (N, A) in ``bench.attributes`` order, one row per flat response.
    """
    index = index or LabelIndex.for_targets(bench, targets)
    hits, wsum, _ = _run(index, predictions, weighted=weighted, keep_chosen=False)
    cell = index.factor.cell
    counted = index.counted_cells[cell]
    w = None
    if weighted:
        with np.errstate(invalid="ignore", divide="ignore"):
            w = np.where(counted > 0, 100.0 * wsum[cell] / counted, np.nan)
    return AlignResult(counted=counted, correct=hits[cell], weighted=w)


def chosen_responses(
    bench: Benchmark, predictions: np.ndarray, targets: TargetSet,
    *, index: LabelIndex | None = None,
) -> np.ndarray:
    """int8 (S, T): index (within its scenario) of the response chosen for every target."""
    index = index or LabelIndex.for_targets(bench, targets)
    _, _, chosen = _run(index, predictions, weighted=False, keep_chosen=True)
    assert chosen is not None
    return chosen[:, index.factor.cell]


def accuracy_from_choices(
    bench: Benchmark, chosen: np.ndarray, targets: TargetSet,
    *, index: LabelIndex | None = None,
) -> AlignResult:
    """Accuracy of scorers that pick a response per (scenario, target) themselves (prompt-
    aligned, unaligned): ``chosen`` is (S, T) indices within each scenario, -1 where no answer
    exists; such scenarios are left out of that target's count (the caller reports them)."""
    index = index or LabelIndex.for_targets(bench, targets)
    chosen = np.asarray(chosen, dtype=np.int64)
    if chosen.shape != (bench.n_scenarios, len(targets)):
        raise InputError(f"choices have shape {chosen.shape}, expected "
                         f"{(bench.n_scenarios, len(targets))} (scenarios x targets)")
    sizes = np.diff(bench.offsets)[:, None]
    if np.any(chosen >= sizes):
        s = int(np.argwhere(chosen >= sizes)[0][0])
        raise InputError("a choice names a response the scenario does not have",
                         record=f"scenario {bench.scenarios[s].id!r}")
    masks = index.masks[:, index.factor.cell].astype(np.int64)
    answered = (chosen >= 0) & (masks != 0)
    hit = (masks >> np.maximum(chosen, 0)) & 1
    return AlignResult(counted=answered.sum(axis=0).astype(np.int64),
                       correct=(hit * answered).sum(axis=0).astype(np.int64))


def label_distances(bench: Benchmark, targets: TargetSet) -> np.ndarray:
    """float64 (N, T): Euclidean label distance of every response to every target (exact
    integer sums, one rounding at the square root)."""
    scale = target_scale(bench, targets)
    units = np.round(bench.labels * scale).astype(np.int64)
    sq = _sq_table(
        units.astype(np.float64), np.arange(len(bench.attributes)), _units(targets.values, scale)
    )
    return np.sqrt(sq) / scale


def max_distance(targets: TargetSet) -> np.ndarray:
    """float64 (T,): d_max = sqrt(number of target attributes) (0 for the empty target)."""
    return np.sqrt(targets.n_attributes.astype(np.float64))


__all__ = [
    "AlignResult",
    "LabelIndex",
    "accuracy_from_choices",
    "check_predictions",
    "chosen_responses",
    "label_distances",
    "max_distance",
    "realign",
]
