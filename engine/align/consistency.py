"""Self-consistency: balanced response orders across samples, averaging, spread and majority.

LLM judges favour some positions; sample ``i`` shows the responses rotated ``i`` places from a
seeded base order, so over any k consecutive samples each response sits in each position once.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np

from pluralign.engine.store.hashing import seed_of


@lru_cache(maxsize=4096)  # a judge asks again for each item's request and answer
def base_order(k: int, key: str) -> tuple[int, ...]:
    """A seeded permutation of range(k), fixed for ``key`` (e.g. benchmark, scenario, attribute)."""
    seed = seed_of(key)
    perm = np.random.default_rng(seed).permutation(k)
    return tuple(int(i) for i in perm)


def order_for_sample(k: int, sample: int, key: str) -> tuple[int, ...]:
    """Response shown at each position for ``sample``: the base order rotated ``sample`` places.

    Depends on the sample index only (not on how many samples are drawn), so raising the sample
    count later keeps the earlier samples' prompts, and their cache entries, unchanged.
    """
    base = base_order(k, key)
    shift = sample % k
    return base[shift:] + base[:shift]


def balanced_orders(k: int, n: int, key: str) -> list[tuple[int, ...]]:
    """Orders of samples 0..n-1; when k divides n every response is in every position n/k times,
    otherwise the counts differ by at most one."""
    return [order_for_sample(k, i, key) for i in range(n)]


def position_counts(orders: Sequence[Sequence[int]]) -> np.ndarray:
    """int64 (k, k): how often response r was shown at position p (``[r, p]``)."""
    k = len(orders[0]) if orders else 0
    counts = np.zeros((k, k), dtype=np.int64)
    for order in orders:
        for pos, resp in enumerate(order):
            counts[resp, pos] += 1
    return counts


def mean_and_spread(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and sample standard deviation (ddof=1, the package's convention) over samples
    (axis 0), ignoring NaN (failed samples).

    A column with one finite sample has spread 0.0; one with no finite sample gets NaN for both.
    """
    arr = np.asarray(scores, dtype=np.float64)
    finite = np.isfinite(arr)
    count = finite.sum(axis=0)
    total = np.where(finite, arr, 0.0).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(count > 0, total / np.maximum(count, 1), np.nan)
        dev = np.where(finite, arr - mean, 0.0)
        var = np.where(count > 0, (dev**2).sum(axis=0) / np.maximum(count - 1, 1), np.nan)
    return mean, np.sqrt(var)


def majority(choices: Sequence[int | None]) -> int | None:
    """The most frequent choice over samples (None entries are failed samples).

    Ties go to the lowest response index, so the result never depends on sample order.
    """
    valid = [c for c in choices if c is not None]
    if not valid:
        return None
    values, counts = np.unique(np.asarray(valid, dtype=np.int64), return_counts=True)
    return int(values[np.flatnonzero(counts == counts.max())[0]])
