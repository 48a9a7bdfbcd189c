"""Multi-objective views (Sorensen et al., "A Roadmap to Pluralistic Alignment", §4.1–4.2): the
Pareto front of systems over objectives, and trade-off steerability Σ_f f(M_f) over a set of
commensurating functions f.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from pluralign.engine.errors import InputError

Commensurating = Callable[[np.ndarray], float]
"""Maps a system's objective vector (O,) to one scalar."""


def _matrix(values: np.ndarray | Sequence[Sequence[float]], what: str) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 2:
        raise InputError(f"{what} must be a (systems x objectives) table, got shape {arr.shape}")
    if np.isnan(arr).any():
        r, c = (int(x) for x in np.argwhere(np.isnan(arr))[0])
        raise InputError(f"{what} has a missing value", record=f"system {r}",
                         field=f"objective {c}")
    return arr


def _oriented(values: np.ndarray, maximize: bool | Sequence[bool]) -> np.ndarray:
    sign = np.where(np.broadcast_to(np.asarray(maximize, dtype=bool), values.shape[1:]), 1.0,
                    -1.0)
    return values * sign


def dominates(a: np.ndarray, b: np.ndarray) -> bool:
    """True when ``a`` is a Pareto improvement on ``b`` (objectives maximised): ≥ on every
    objective and > on at least one (pluralism roadmap, def. 12)."""
    return bool(np.all(a >= b) and np.any(a > b))


def pareto_front(values: np.ndarray | Sequence[Sequence[float]],
                 maximize: bool | Sequence[bool] = True) -> np.ndarray:
    """bool (M,): systems (rows) that no other system Pareto-improves on.

    ``maximize`` per objective (or one for all); equal systems are both on the front.
    """
    v = _oriented(_matrix(values, "values"), maximize)
    # ge[i, j, o]: system i at least as good as j on objective o.
    ge = v[:, None, :] >= v[None, :, :]
    gt = v[:, None, :] > v[None, :, :]
    improves = ge.all(axis=2) & gt.any(axis=2)  # improves[i, j]: i dominates j
    return np.asarray(~improves.any(axis=0))


def linear(weights: Sequence[float]) -> Commensurating:
    """The commensurating function f(o) = Σ w_i o_i."""
    w = np.asarray(weights, dtype=np.float64)
    return lambda o: float(np.dot(w, o))


@dataclass(frozen=True)
class Steerability:
    """Trade-off steerability of one model over commensurating functions F (pluralism roadmap §4.2)."""

    functions: tuple[str, ...]
    """Names of the functions f, in order."""
    table: np.ndarray
    """float64 (F, F): table[i, j] = f_i(M_{f_j}), f_i applied to the model steered to f_j."""

    @property
    def score(self) -> float:
        """Σ_f f(M_f): the diagonal's sum."""
        return float(np.trace(self.table))

    @property
    def steerable(self) -> np.ndarray:
        """bool (F,): f(M_f) ≥ f(M_f') for every f' (def. 16 holds for f)."""
        return np.asarray(np.diag(self.table) >= self.table.max(axis=1) - 1e-12)


def tradeoff_steerability(steered: Mapping[str, Sequence[float] | np.ndarray],
                          functions: Mapping[str, Commensurating]) -> Steerability:
    """``steered[f]``: the objective vector of the model steered to f, for every f in
    ``functions``. Returns the cross table f_i(M_{f_j}) and its diagonal sum."""
    names = tuple(functions)
    missing = [f for f in names if f not in steered]
    if missing:
        raise InputError(f"no steered result for function(s) {missing}", field="steered",
                         hint="give the objectives of the model steered to every f")
    objs = {f: np.asarray(steered[f], dtype=np.float64) for f in names}
    table = np.array([[functions[fi](objs[fj]) for fj in names] for fi in names])
    return Steerability(names, table.reshape(len(names), len(names)))
