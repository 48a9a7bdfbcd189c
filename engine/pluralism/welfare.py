"""Welfare functions over jurors' utilities (Sorensen et al., "A Roadmap to Pluralistic
Alignment", §4.3): the power means w_α and the share of jurors above a threshold, computed
stably and mergeable across chunks of jurors.

w_α(u) = (Σ_i p_i u_i^{1−α})^{1/(1−α)} with juror shares p_i (weights over their sum): α = 0 is
the weighted mean (utilitarian), α = 1 the geometric mean, α = ∞ the minimum (Rawlsian).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from numba import njit, prange

from pluralign.engine.errors import InputError

DEFAULT_ALPHAS: tuple[float, ...] = (0.0, 0.5, 1.0, 2.0, math.inf)
"""The α values reported when none are asked for: utilitarian to Rawlsian."""


def parse_alphas(text: str | Iterable[float]) -> tuple[float, ...]:
    """α values from ``"0,0.5,1,inf"`` (or an iterable); each must be a number ≥ 0."""
    items: Iterable[object] = text.split(",") if isinstance(text, str) else text
    out: list[float] = []
    for item in items:
        raw = item.strip() if isinstance(item, str) else item
        try:
            a = float(raw)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise InputError(f"alpha {raw!r} is not a number", field="alpha",
                             hint="write e.g. 0,0.5,1,2,inf") from None
        if math.isnan(a) or a < 0:
            raise InputError(f"alpha {raw!r} must be >= 0", field="alpha",
                             hint="welfare is defined for alpha in [0, inf]")
        if a not in out:
            out.append(a)
    if not out:
        raise InputError("no alpha given", field="alpha", hint="write e.g. 0,1,inf")
    return tuple(out)


def alpha_name(alpha: float) -> str:
    """Column-friendly name: ``0``, ``0.5``, ``1``, ``inf``."""
    return "inf" if math.isinf(alpha) else f"{alpha:g}"


def _check_alphas(alphas: Sequence[float]) -> np.ndarray:
    arr = np.asarray([float(a) for a in alphas], dtype=np.float64)
    if arr.size == 0 or np.any(np.isnan(arr)) or np.any(arr < 0):
        raise ValueError(f"alphas must be >= 0, got {tuple(alphas)}")
    return arr


@njit(cache=True)
def _term(u, m, a):  # type: ignore[no-untyped-def]
    """One juror's summand for α: u (α = 0), log u (α = 1), else x^{1−α} − 1 with x = u
    (α < 1) or u/m (α > 1, m the smallest positive utility, so x^{1−α} ≤ 1).

    Keeping x^p − 1 (via expm1) rather than x^p holds the precision that the power mean needs
    when p = 1 − α is near 0; common exponents get exact shortcuts (sqrt, reciprocal).
    """
    if a == 0.0:
        return u
    if a == 1.0:
        return math.log(u) if u > 0.0 else 0.0  # a zero is recorded through has_zero
    if u == 0.0:
        return -1.0 if a < 1.0 else 0.0  # 0^p = 0 for p > 0; α > 1: has_zero decides
    x = u if a < 1.0 else u / m
    if a == 0.5:
        return math.sqrt(x) - 1.0
    if a == 2.0:
        return 1.0 / x - 1.0
    return math.expm1((1.0 - a) * math.log(x))


@njit(parallel=True, cache=True)
def _rows_state(u, cols, w, alphas, total, sums, umin, pos_min, has_zero, bad):  # type: ignore[no-untyped-def]
    """State of rows of ``u`` over the columns ``cols`` with weights ``w`` (see WelfareState);
    ``bad[r]`` flags a NaN or negative utility."""
    for r in prange(u.shape[0]):
        mn, pm, z, tot = math.inf, math.inf, False, 0.0
        for j in range(cols.size):
            x = u[r, cols[j]]
            if not x >= 0.0:
                bad[r] = True
            tot += w[j]
            mn = min(mn, x)
            if x == 0.0:
                z = True
            elif x < pm:
                pm = x
        total[r], umin[r], pos_min[r], has_zero[r] = tot, mn, pm, z
        ref = pm if pm < math.inf else 1.0
        for k in range(alphas.size):
            a = alphas[k]
            if math.isinf(a):
                continue
            acc = 0.0
            for j in range(cols.size):
                acc += w[j] * _term(u[r, cols[j]], ref, a)
            sums[k, r] = acc


@dataclass
class WelfareState:
    """Mergeable sufficient statistics of w_α per row, for jurors seen so far.

    For α > 1 the sums are taken relative to ``pos_min`` (so (u/m)^{1−α} ≤ 1 never overflows);
    merging rescales them to the smaller reference.
    """

    alphas: np.ndarray
    """float64 (K,): the α values."""
    total: np.ndarray
    """float64 (R,): sum of the weights."""
    sums: np.ndarray
    """float64 (K, R): Σ w·term per α (see ``_term``; unused for α = ∞)."""
    umin: np.ndarray
    """float64 (R,): smallest utility (α = ∞)."""
    pos_min: np.ndarray
    """float64 (R,): smallest positive utility (the α > 1 reference); inf when none."""
    has_zero: np.ndarray
    """bool (R,): some juror has utility 0 (then w_α = 0 for α ≥ 1)."""

    @classmethod
    def empty(cls, n_rows: int, alphas: Sequence[float]) -> WelfareState:
        a = _check_alphas(alphas)
        return cls(a, np.zeros(n_rows), np.zeros((a.size, n_rows)), np.full(n_rows, np.inf),
                   np.full(n_rows, np.inf), np.zeros(n_rows, dtype=bool))

    @classmethod
    def of(cls, utilities: np.ndarray, weights: np.ndarray, alphas: Sequence[float],
           cols: np.ndarray | None = None) -> WelfareState:
        """State of the rows of ``utilities`` (R, C) over columns ``cols`` (default all),
        ``weights`` being those columns' weights."""
        u = np.ascontiguousarray(utilities, dtype=np.float64)
        c = np.arange(u.shape[1]) if cols is None else np.asarray(cols, dtype=np.int64)
        w = np.ascontiguousarray(weights, dtype=np.float64)
        if u.ndim != 2 or w.shape != c.shape:
            raise ValueError(f"utilities {u.shape}, columns {c.shape}, weights {w.shape}")
        if np.any(~(w > 0)) or not np.all(np.isfinite(w)):
            raise ValueError("weights must be positive and finite")
        state = cls.empty(u.shape[0], alphas)
        bad = np.zeros(u.shape[0], dtype=bool)
        _rows_state(u, c, w, state.alphas, state.total, state.sums, state.umin, state.pos_min,
                    state.has_zero, bad)
        if bad.any():
            raise ValueError("utilities must be >= 0 and not NaN")
        return state

    def merge(self, other: WelfareState) -> WelfareState:
        """The state of both sets of jurors together (weights add, as for a pooled jury)."""
        ref = np.minimum(self.pos_min, other.pos_min)
        sums = np.empty_like(self.sums)
        for k, a in enumerate(self.alphas):
            if 1 < a < math.inf:
                sums[k] = (_rescale(self.sums[k], self.total, self.pos_min, ref, 1 - a)
                           + _rescale(other.sums[k], other.total, other.pos_min, ref, 1 - a))
            else:
                sums[k] = self.sums[k] + other.sums[k]
        return WelfareState(self.alphas, self.total + other.total, sums,
                            np.minimum(self.umin, other.umin), ref,
                            self.has_zero | other.has_zero)

    def result(self) -> np.ndarray:
        """float64 (K, R): w_α per row; NaN where no juror was seen."""
        out = np.full(self.sums.shape, np.nan)
        seen = self.total > 0
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            mean = self.sums / np.where(seen, self.total, 1.0)
            for k, a in enumerate(self.alphas):
                out[k] = self._finish(float(a), mean[k])
        out[:, ~seen] = np.nan
        return out

    def _finish(self, a: float, mean: np.ndarray) -> np.ndarray:
        if a == 0:
            return mean
        if math.isinf(a):
            return self.umin.copy()
        if a == 1:
            val = np.exp(mean)
        else:
            # w = ref · (1 + mean)^{1/p}, with mean = Σ p_i (x_i^p − 1); ref = 1 for α < 1.
            ref = np.ones_like(mean) if a < 1 else \
                np.where(np.isfinite(self.pos_min), self.pos_min, 0.0)
            val = ref * np.exp(np.log1p(mean) / (1.0 - a))
            if a < 1:
                return val
        # A juror at utility 0 sends u^{1−α} to infinity (α > 1) or log u to −∞ (α = 1).
        return np.where(self.has_zero, 0.0, val)


def _rescale(s: np.ndarray, total: np.ndarray, old: np.ndarray, new: np.ndarray,
             p: float) -> np.ndarray:
    """Sums Σ w((u/old)^p − 1) re-expressed relative to ``new`` ≤ old.

    Σ w (u/new)^p = f · Σ w (u/old)^p with f = (old/new)^p, so the new sums are
    (f − 1)(total + s) + s, with f − 1 from expm1 to keep precision.
    """
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        fm1 = np.expm1(p * np.log(old / np.where(np.isfinite(new), new, 1.0)))
    # A side with no positive utility (old = inf) has a zero: has_zero decides its result.
    return np.where(np.isfinite(old), fm1 * (total + s) + s, s)


def welfare(utilities: np.ndarray | Sequence[float], alpha: float,
            weights: np.ndarray | Sequence[float] | None = None) -> np.ndarray:
    """w_α over the last axis of ``utilities`` (jurors), optionally weighted (weights > 0,
    utilities ≥ 0). A 1-d input gives a 0-d array."""
    return welfare_many(utilities, (alpha,), weights)[0]


def welfare_many(utilities: np.ndarray | Sequence[float], alphas: Sequence[float],
                 weights: np.ndarray | Sequence[float] | None = None) -> np.ndarray:
    """w_α for every α in ``alphas``: shape ``(len(alphas), *utilities.shape[:-1])``."""
    u = np.asarray(utilities, dtype=np.float64)
    lead = u.shape[:-1]
    flat = u.reshape(-1, u.shape[-1])
    w = np.ones(flat.shape[1]) if weights is None else np.asarray(weights, dtype=np.float64)
    return WelfareState.of(flat, w, alphas).result().reshape((len(alphas), *lead))


def threshold_share(utilities: np.ndarray | Sequence[float], tau: float,
                    weights: np.ndarray | Sequence[float] | None = None) -> np.ndarray:
    """Weighted share of jurors (last axis) whose utility is strictly above ``tau``."""
    u = np.asarray(utilities, dtype=np.float64)
    w = np.ones(u.shape[-1]) if weights is None else np.asarray(weights, dtype=np.float64)
    return np.asarray(((u > tau) @ w) / w.sum())
