"""The ridge scorer's model: a scenario-level part plus a within-scenario part, per attribute.

prediction = level(scenario) + deviation(response). The level is a ridge regression of a
scenario's mean label on its mean features and prompt features; the deviation is a ridge
regression (no intercept) of a response's label minus its scenario mean on its features minus
theirs (optionally with TF-IDF of the response). Selection happens within a scenario, so the
deviation part decides which response is closer to a target and the level part calibrates it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer

from pluralign.engine.data.benchmark import Benchmark
from pluralign.engine.scorers import features as ft


@dataclass(frozen=True)
class Design:
    """Fitted feature transforms of one (feature groups, TF-IDF weight) choice."""

    cols: np.ndarray
    """Columns of :data:`features.FEATURE_NAMES` used."""
    center: np.ndarray
    """Training mean of those columns."""
    scale: np.ndarray
    """Training standard deviation of those columns (1 where constant)."""
    curve: np.ndarray
    """Columns of :data:`features.FEATURE_NAMES` whose square and cube are added."""
    curve_center: np.ndarray
    """Training mean of the curve terms."""
    curve_scale: np.ndarray
    """Training standard deviation of the curve terms."""
    level_center: np.ndarray
    """Training mean of the scenario-level features."""
    level_scale: np.ndarray
    """Training standard deviation of the scenario-level features."""
    vectorizer: TfidfVectorizer | None
    """Response TF-IDF fitted on the training responses, or None when the weight is 0."""
    weight: float
    """Multiplier of the TF-IDF block against the standardized features."""

    def features(self, x: np.ndarray) -> np.ndarray:
        """(N, p0): the standardized columns and curve terms of every response."""
        z = (x[:, self.cols] - self.center) / self.scale
        if self.curve.size == 0:
            return np.asarray(z)
        raw = _curve_terms(x, self.curve, self.center, self.scale, self.cols)
        return np.hstack([z, (raw - self.curve_center) / self.curve_scale])

    def within_block(self, bench: Benchmark, x: np.ndarray,
                     tfidf: np.ndarray | None = None) -> np.ndarray:
        """(N, p): features (and weighted TF-IDF) minus their scenario means.

        ``tfidf`` passes a precomputed ``vectorizer.transform`` of the responses."""
        z = self.features(x)
        if self.vectorizer is not None:
            tf = self.vectorizer.transform(responses(bench)).toarray() if tfidf is None else tfidf
            z = np.hstack([z, self.weight * tf])
        return ft.within(bench, z)

    def level_block(self, bench: Benchmark, x: np.ndarray, prompts: np.ndarray) -> np.ndarray:
        """(S, q): standardized scenario means of the features, plus prompt features."""
        raw = np.hstack([ft.scenario_means(bench, self.features(x)), prompts])
        return np.asarray((raw - self.level_center) / self.level_scale)


def responses(bench: Benchmark) -> list[str]:
    """Every flat response text."""
    return [r for sc in bench.scenarios for r in sc.responses]


def _standardizer(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    center = x.mean(axis=0)
    scale = x.std(axis=0)
    return center, np.where(scale > 1e-12, scale, 1.0)


def _curve_terms(x: np.ndarray, curve: np.ndarray, center: np.ndarray, scale: np.ndarray,
                 cols: np.ndarray) -> np.ndarray:
    # Powers of the standardized base feature, so the center is the training mean.
    where = [int(np.flatnonzero(cols == c)[0]) for c in curve]
    z = (x[:, curve] - center[where]) / scale[where]
    return np.hstack([z**2, z**3])


def fit_design(
    bench: Benchmark, x: np.ndarray, prompts: np.ndarray, groups: tuple[str, ...],
    tfidf_weight: float, max_features: int, vectorizer: TfidfVectorizer | None = None,
) -> Design:
    """Fit the transforms of one design on ``bench`` (the training part only).

    ``vectorizer`` passes a TF-IDF already fitted on ``bench``'s responses."""
    cols = ft.columns(groups)
    center, scale = _standardizer(x[:, cols])
    curve = ft.curve_columns(groups)
    c_center, c_scale = np.zeros(0), np.ones(0)
    if curve.size:
        c_center, c_scale = _standardizer(_curve_terms(x, curve, center, scale, cols))
    design = Design(cols, center, scale, curve, c_center, c_scale, np.zeros(0), np.ones(0),
                    None, tfidf_weight)
    level_raw = np.hstack([ft.scenario_means(bench, design.features(x)), prompts])
    level_center, level_scale = _standardizer(level_raw)
    if tfidf_weight > 0 and vectorizer is None:
        vectorizer = fit_tfidf(bench, max_features)
    return replace(design, level_center=level_center, level_scale=level_scale,
                   vectorizer=vectorizer if tfidf_weight > 0 else None)


def fit_tfidf(bench: Benchmark, max_features: int) -> TfidfVectorizer:
    """Response TF-IDF (sublinear counts, limited vocabulary) fitted on ``bench``."""
    vectorizer = TfidfVectorizer(max_features=max_features, sublinear_tf=True, min_df=2,
                                 dtype=np.float64)
    return vectorizer.fit(responses(bench))


def ridge_path(a: np.ndarray, y: np.ndarray, alphas: Sequence[float]) -> list[np.ndarray]:
    """Ridge coefficients (p, k) of ``y`` (n, k) on ``a`` (n, p), no intercept, per alpha > 0.

    One eigendecomposition serves every alpha: of the p x p Gram matrix when p <= n, else of
    the n x n one (the dual form). Both are far cheaper than an SVD of ``a``.
    """
    n, p = a.shape
    if p <= n:
        lam, q = np.linalg.eigh(a.T @ a)
        lam = np.clip(lam, 0.0, None)  # round-off can make tiny eigenvalues negative
        qty = q.T @ (a.T @ y)
        return [q @ (qty / (lam + al)[:, None]) for al in alphas]
    lam, q = np.linalg.eigh(a @ a.T)
    lam = np.clip(lam, 0.0, None)
    qty = q.T @ y
    return [a.T @ (q @ (qty / (lam + al)[:, None])) for al in alphas]


@dataclass(frozen=True)
class FittedRidge:
    """A fitted model: its design and coefficients per attribute."""

    design: Design
    """Feature transforms."""
    within_coef: np.ndarray
    """(p, A) deviation coefficients."""
    level_coef: np.ndarray
    """(q, A) scenario-level coefficients."""
    level_intercept: np.ndarray
    """(A,) mean scenario label on the training split."""

    def predict(self, bench: Benchmark, x: np.ndarray, prompts: np.ndarray) -> np.ndarray:
        """float64 (N, A) in [0, 1]."""
        dev = self.design.within_block(bench, x) @ self.within_coef
        level = self.design.level_block(bench, x, prompts) @ self.level_coef + self.level_intercept
        return np.clip(level[bench.scenario_of] + dev, 0.0, 1.0)


def level_targets(bench: Benchmark, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(scenario mean labels (S, A), response deviations from them (N, A))."""
    means = ft.scenario_means(bench, labels)
    return means, labels - means[bench.scenario_of]
