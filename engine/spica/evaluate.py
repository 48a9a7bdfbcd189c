"""Retrieval evaluation (SPICA §4.4): how well do the retrieved scenarios' group ratings match
held-out ground truth? Error of a query = mean over its k retrieved scenarios of the mean
pairwise L between the query's raters and the scenario's raters; SPICA vs the baseline, per
group, with paired bootstrap intervals over queries.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from pluralign.engine.errors import InputError
from pluralign.engine.spica.bank import ALL, ScenarioBank
from pluralign.engine.spica.retrieval import Retriever, Weights


@dataclass(frozen=True)
class Interval:
    """A mean with a percentile bootstrap interval."""

    mean: float
    low: float
    high: float

    def __str__(self) -> str:
        return f"{self.mean:.3f} [{self.low:.3f}, {self.high:.3f}]"


@dataclass(frozen=True)
class GroupEvaluation:
    """Retrieval error of one group on held-out queries."""

    group: str
    n_queries: int
    """Held-out queries the group rated."""
    k: int
    """Scenarios retrieved per query."""
    baseline: Interval
    """Error of similarity-only retrieval."""
    spica: Interval
    """Error of group-informed retrieval."""
    gain: Interval
    """baseline - spica, paired per query (positive: SPICA better)."""
    weights: Weights


def query_errors(
    retriever: Retriever, queries: ScenarioBank, group: str, k: int, weights: Weights | None,
    distance: np.ndarray | None = None, observed: np.ndarray | None = None,
) -> np.ndarray:
    """(N,) retrieval error per query (NaN for queries the group did not rate)."""
    obs = retriever.observed_mismatch(queries, group) if observed is None else observed
    idx = retriever.retrieve(queries.prompts, group, k, weights, distance)
    picked = np.take_along_axis(obs, idx, axis=1)
    out = np.full(picked.shape[0], np.nan)
    ok = np.isfinite(picked).any(axis=1)
    out[ok] = np.nanmean(picked[ok], axis=1)
    return out


def _bootstrap(values: np.ndarray, idx: np.ndarray, level: float) -> Interval:
    means = values[idx].mean(axis=1)
    a = (1 - level) / 2
    return Interval(float(values.mean()), float(np.quantile(means, a)),
                    float(np.quantile(means, 1 - a)))


def evaluate_group(
    retriever: Retriever, queries: ScenarioBank, weights: Weights, k: int = 5,
    n_boot: int = 2000, level: float = 0.95, seed: int = 0,
) -> GroupEvaluation:
    """SPICA vs baseline error for ``weights.group`` on ``queries`` (held out from the fit)."""
    g = weights.group
    d = retriever.distance(queries.prompts)
    obs = retriever.observed_mismatch(queries, g)
    base = query_errors(retriever, queries, g, k, None, d, obs)
    spica = query_errors(retriever, queries, g, k, weights, d, obs)
    ok = np.isfinite(base) & np.isfinite(spica)
    if not ok.any():
        raise InputError(f"no held-out query was rated by group {g!r}", field="group")
    base, spica = base[ok], spica[ok]
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, base.size, (n_boot, base.size))
    return GroupEvaluation(
        g, int(base.size), k, _bootstrap(base, idx, level), _bootstrap(spica, idx, level),
        _bootstrap(base - spica, idx, level), weights,
    )


def evaluate_retrieval(
    retriever: Retriever, queries: ScenarioBank, weights: Mapping[str, Weights],
    groups: Sequence[str] | None = None, k: int = 5, n_boot: int = 2000, seed: int = 0,
) -> list[GroupEvaluation]:
    """One evaluation per group (default: every group with weights, ``ALL`` last)."""
    names = list(groups) if groups else sorted(weights, key=lambda g: (g == ALL, g))
    missing = [g for g in names if g not in weights]
    if missing:
        raise InputError(f"no fitted weights for groups {missing}", field="weights",
                         hint="run `pluralign spica fit` with these groups")
    return [evaluate_group(retriever, queries, weights[g], k, n_boot, seed=seed) for g in names]
