"""The scorer protocol: something that predicts attribute scores for every response."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from pluralign.engine.data.benchmark import Benchmark


@runtime_checkable
class Scorer(Protocol):
    """Predicts an (N, A) score matrix for a benchmark, attributes in the benchmark's order.

    ``identity`` names the scorer plus a hash of everything that changes its answers (for the
    score cache); a scorer with ``needs_train`` is fitted on the training split first.
    """

    name: str
    needs_train: bool

    def identity(self, bench: Benchmark, train: Benchmark | None) -> str: ...

    def fit(self, train: Benchmark) -> None: ...

    def predict(self, bench: Benchmark) -> np.ndarray: ...


def checked_predictions(bench: Benchmark, pred: np.ndarray, who: str) -> np.ndarray:
    """``pred`` as float64 (N, A) with finite values, or a ValueError naming the scorer."""
    out = np.asarray(pred, dtype=np.float64)
    want = (bench.n_responses, len(bench.attributes))
    if out.shape != want:
        raise ValueError(f"scorer {who} returned shape {out.shape}, expected {want}")
    if not np.isfinite(out).all():
        raise ValueError(f"scorer {who} returned non-finite scores")
    return out
