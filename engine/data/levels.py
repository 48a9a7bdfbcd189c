"""Exact integer grids for label values, so label ties are decided exactly and portably.

Labels sit on a grid of levels (quarters, hundredths, ...). Distances between labels and targets
are compared in integer units of the finest grid both live on, never by float equality.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

_MAX_SCALE = 10**6
_TOL = 1e-9


def is_on_grid(values: Iterable[float], scale: int) -> bool:
    """True when every value times ``scale`` is an integer (to 1e-9)."""
    arr = np.asarray(list(values), dtype=np.float64) * scale
    return bool(np.all(np.abs(arr - np.round(arr)) <= _TOL * max(1, scale)))


def grid_scale(values: Iterable[float]) -> int:
    """Smallest integer q (up to 10**6) such that every value is a multiple of 1/q.

    HelpSteer2's quarters give 4; MIC's rounded sevenths (0, .17, .33, ...) give 100.
    Raises ValueError for values that are on no such grid (e.g. 1/3 written in full).
    """
    vals = sorted({round(float(v), 12) for v in values})
    for q in range(1, 1001):
        if is_on_grid(vals, q):
            return q
    q = 1000
    while q <= _MAX_SCALE:
        if is_on_grid(vals, q):
            return q
        q *= 10
    raise ValueError(f"values {vals[:5]} are not on a grid of at most 1/{_MAX_SCALE}")


def common_scale(a: int, b: int) -> int:
    """Least common multiple of two grid scales."""
    return a * b // math.gcd(a, b)


def to_units(values: np.ndarray, scale: int) -> np.ndarray:
    """Values in [0, 1] as exact int64 multiples of 1/scale (NaN stays a sentinel of -1)."""
    out = np.round(np.nan_to_num(values, nan=-1.0) * scale).astype(np.int64)
    out[np.isnan(values)] = -1
    return out
