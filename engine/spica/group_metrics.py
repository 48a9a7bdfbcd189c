"""SPICA's group metrics, vectorized over a whole bank (Chen et al., "SPICA: Retrieving Scenarios
for Pluralistic In-Context Alignment", §3.1.1-3.2.3, eqs. 1-5).

Inputs are rating tensors ``R`` of shape (S, M, K) — scenario, rater slot, response class — with
NaN where a rater did not rate a class (or the slot is empty). Means run over what is present;
a quantity with nothing to average is NaN.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pluralign.engine.spica.bank import RatingKind, ScenarioBank

__all__ = [
    "GroupNorms",
    "consensus",
    "consensus_mismatch",
    "contrast",
    "g_contrast",
    "g_stability",
    "group_norms",
    "mismatch",
    "pairwise_mismatch",
    "stability",
]


def _mean(x: np.ndarray, axis: int) -> np.ndarray:
    """Mean over present (non-NaN) entries; NaN where none (no RuntimeWarning)."""
    present = ~np.isnan(x)
    n = present.sum(axis=axis)
    total = np.where(present, x, 0.0).sum(axis=axis)
    out: np.ndarray = np.full(n.shape, np.nan)
    np.divide(total, n, out=out, where=n > 0)
    return out


def consensus(R: np.ndarray) -> np.ndarray:
    """(S, K) group consensus r̄(x, y): the mean rating of each class over the group's raters."""
    return _mean(R, axis=1)


def stability(R: np.ndarray) -> np.ndarray:
    """(S, K) eq. 2: minus the within-group variance of each class's ratings (population)."""
    dev = R - consensus(R)[:, None, :]
    return -_mean(dev**2, axis=1)


def g_stability(R: np.ndarray) -> np.ndarray:
    """(S,) eq. 3: stability averaged over the response classes that were rated."""
    return _mean(stability(R), axis=1)


def contrast(R: np.ndarray) -> np.ndarray:
    """(S, M) eq. 4 with the rater's OWN mean: how much each rater spreads ratings over classes.

    Eq. 4 as printed subtracts the group mean r̄(x', y'); that would make g_contrast equal
    -g_stability, and the text describes each annotator's variance across behaviours, so the
    rater's own mean over the classes they rated is used (SPICA §3.2.2, as its text reads).
    """
    own = _mean(R, axis=2)
    return _mean((R - own[:, :, None]) ** 2, axis=2)


def g_contrast(R: np.ndarray) -> np.ndarray:
    """(S,) eq. 5: contrast averaged over the raters present."""
    return _mean(contrast(R), axis=1)


def mismatch(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Eq. 1 over the last axis: sqrt(Σ_y (a_y - b_y)²), the root of the SUM of squares.

    The paper calls it RMSE but prints no mean; we implement the printed formula. Classes
    missing on either side are left out of the sum; NaN where no class is shared.
    """
    d2 = (a - b) ** 2
    shared = ~np.isnan(d2)
    out: np.ndarray = np.sqrt(np.where(shared, d2, 0.0).sum(axis=-1))
    return np.where(shared.any(axis=-1), out, np.nan)


def pairwise_mismatch(Q: np.ndarray, B: np.ndarray, chunk: int | None = None) -> np.ndarray:
    """(N, S): mean of L over every (query rater, bank rater) pair, as in SPICA §4.4.

    ``Q`` is (N, Mq, K) ground-truth ratings of N queries, ``B`` (S, Mb, K) the bank's.
    Pairs with no shared class are skipped; NaN where no pair remains. Queries are processed
    ``chunk`` at a time (default: ~4M pair-class cells, a few tens of MB per block).
    """
    n = Q.shape[0]
    if chunk is None:
        cells = max(1, Q.shape[1] * B.shape[0] * B.shape[1] * B.shape[2])
        chunk = max(1, 4_000_000 // cells)
    out = np.empty((n, B.shape[0]), dtype=np.float64)
    b = B[None, None, :, :, :]
    for lo in range(0, n, chunk):
        q = Q[lo:lo + chunk, :, None, None, :]
        L = mismatch(q, b)  # (n, Mq, S, Mb)
        present = ~np.isnan(L)
        cnt = present.sum(axis=(1, 3))
        tot = np.where(present, L, 0.0).sum(axis=(1, 3))
        block = np.full(cnt.shape, np.nan)
        np.divide(tot, cnt, out=block, where=cnt > 0)
        out[lo:lo + chunk] = block
    return out


def consensus_mismatch(Q: np.ndarray, B: np.ndarray) -> np.ndarray:
    """(N, S): L between the queries' and the bank's group consensus preferences."""
    return mismatch(consensus(Q)[:, None, :], consensus(B)[None, :, :])


@dataclass(frozen=True)
class GroupNorms:
    """A group's values and norms over every scenario of a bank."""

    group: str
    """Group name (``ALL`` for the collective)."""
    kind: RatingKind
    """Which ratings: of responses or of strategies."""
    consensus: np.ndarray
    """(S, K) mean rating per class."""
    stability: np.ndarray
    """(S,) g_stability."""
    contrast: np.ndarray
    """(S,) g_contrast."""
    n_raters: np.ndarray
    """(S,) int64 raters of the group with at least one rating."""

    @property
    def rated(self) -> np.ndarray:
        """(S,) bool: scenarios the group rated (the only ones it can retrieve)."""
        return (self.n_raters > 0) & ~np.isnan(self.stability) & ~np.isnan(self.contrast)


def group_norms(bank: ScenarioBank, group: str, kind: RatingKind = "response") -> GroupNorms:
    """Consensus, g_stability and g_contrast of ``group`` on every scenario of ``bank``."""
    R = bank.ratings(group, kind)
    n = (~np.isnan(R)).any(axis=2).sum(axis=1).astype(np.int64)
    return GroupNorms(group, kind, consensus(R), g_stability(R), g_contrast(R), n)
