"""Aggregate metrics: accuracy per target set and by number of attributes, weighted score,
implicit bias of target-free choices, and regression quality (MSE, Pearson r) per attribute.

One statistics convention for the whole package: a standard deviation over targets (or over
samples, jurors, runs) is the *sample* standard deviation, ddof=1 (:data:`STD_DDOF`), and a
standard error is that std over sqrt(n) (:func:`pluralign.engine.align.per_scenario.
standard_error`). Summaries written before this convention carry a population std (ddof=0) and
no ``std_ddof`` field; readers convert with ``std * sqrt(n / (n - 1))``. A single defined value
has no spread: its std is reported as 0.0 (its standard error as undefined).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass

import numpy as np

from pluralign.engine.data.benchmark import Benchmark

STD_DDOF = 1
"""Every standard deviation is the sample one (ddof=1): see the module docstring."""


def sample_std(x: np.ndarray) -> float:
    """Sample standard deviation (ddof=1) of the finite-or-not values ``x``; 0.0 for one value
    (nothing spreads), NaN for none."""
    x = np.asarray(x, dtype=np.float64)
    if x.size < 2:
        return 0.0 if x.size == 1 else float("nan")
    return float(x.std(ddof=STD_DDOF))


@dataclass(frozen=True)
class SetSummary:
    """Accuracy over the targets of one set (undefined targets excluded)."""

    name: str
    """Set name (all, sampled, high, low, a file name...)."""
    n_targets: int
    """Targets in the set."""
    n_defined: int
    """Targets with a defined accuracy (the empty target has none)."""
    mean: float | None
    """Mean accuracy over defined targets, percent."""
    std: float | None
    """Sample standard deviation (ddof=1) over defined targets (0.0 for a single one)."""
    weighted_mean: float | None = None
    """Mean weighted score over defined targets, when computed: the published definition
    (the steerable-pluralism paper), d_max = the largest label distance among each scenario's
    responses."""
    by_n_attributes: Mapping[int, tuple[float, float, int]] | None = None
    """Number of target attributes -> (mean, sample std, targets)."""
    closeness_mean: float | None = None
    """Mean closeness over defined targets, when computed: (1 - d(selected)/sqrt(k)) * 100,
    sqrt(k) the largest distance possible in [0, 1]^k (written as ``weighted_sqrtk_mean``
    before it had its own name; :func:`set_summary_json` reads both)."""
    std_ddof: int = 1
    """Delta degrees of freedom of every std here (summaries without it used ddof=0)."""

    def to_json(self) -> dict[str, object]:
        out = asdict(self)
        if self.by_n_attributes is not None:
            out["by_n_attributes"] = {
                str(k): {"mean": m, "std": s, "targets": n}
                for k, (m, s, n) in self.by_n_attributes.items()
            }
        return out


def _mean_std(x: np.ndarray) -> tuple[float | None, float | None]:
    x = x[~np.isnan(x)]
    if x.size == 0:
        return None, None
    return float(x.mean()), sample_std(x)


def summarize(
    name: str,
    accuracy: np.ndarray,
    n_attributes: np.ndarray,
    weighted: np.ndarray | None = None,
    closeness: np.ndarray | None = None,
) -> SetSummary:
    """Mean ± std over the defined targets of a set, and the same per number of attributes."""
    mean, std = _mean_std(accuracy)
    by: dict[int, tuple[float, float, int]] = {}
    for k in np.unique(n_attributes):
        sel = (n_attributes == k) & ~np.isnan(accuracy)
        if sel.any():
            m, s = _mean_std(accuracy[sel])
            assert m is not None and s is not None
            by[int(k)] = (m, s, int(sel.sum()))
    wmean = None if weighted is None else _mean_std(weighted)[0]
    cmean = None if closeness is None else _mean_std(closeness)[0]
    return SetSummary(name, int(accuracy.size), int((~np.isnan(accuracy)).sum()), mean, std,
                      wmean, by, cmean)


def implicit_bias(bench: Benchmark, chosen: np.ndarray) -> dict[str, float] | None:
    """Mean label vector of the responses a target-free model selects (one per scenario), over
    the answered scenarios; None when none was answered.

    ``chosen`` is (S,) response indices within each scenario, -1 (any negative) where the
    model gave no answer (the steerable-pluralism paper, Fig. 7).
    """
    chosen = np.asarray(chosen, dtype=np.int64)
    answered = np.flatnonzero(chosen >= 0)
    if answered.size == 0:
        return None
    rows = bench.offsets[:-1][answered] + chosen[answered]
    means = bench.labels[rows].mean(axis=0)
    return {a: float(v) for a, v in zip(bench.attributes, means, strict=True)}


def regression_quality(bench: Benchmark, predictions: np.ndarray) -> dict[str, dict[str, float]]:
    """Per attribute: MSE and Pearson r of predicted vs true scores (r is NaN when either side
    is constant)."""
    out: dict[str, dict[str, float]] = {}
    for j, a in enumerate(bench.attributes):
        y, p = bench.labels[:, j], np.asarray(predictions)[:, j]
        mse = float(np.mean((p - y) ** 2))
        constant = np.std(y) == 0 or np.std(p) == 0
        r = float("nan") if constant else float(np.corrcoef(y, p)[0, 1])
        out[a] = {"mse": mse, "pearson_r": r}
    return out
