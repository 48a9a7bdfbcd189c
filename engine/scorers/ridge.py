"""``ridge``: the embedded CPU scorer, per-attribute ridge regression on cheap text features.

Trained only on the training split. Its hyperparameters (feature groups, TF-IDF weight and
both penalties) are chosen by K-fold cross-validation on that split, grouped by scenario, with
the quantity the product reports as objective: mean accuracy over the alignment targets.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field

import numpy as np
from sklearn.model_selection import GroupKFold

from pluralign.engine.align.realign import realign
from pluralign.engine.data.benchmark import Benchmark, make_benchmark
from pluralign.engine.data.targets import TargetSet, all_targets
from pluralign.engine.errors import InputError
from pluralign.engine.run.progress import bar
from pluralign.engine.scorers import features as ft
from pluralign.engine.scorers.ridge_model import (
    FittedRidge,
    fit_design,
    fit_tfidf,
    level_targets,
    responses,
    ridge_path,
)
from pluralign.engine.store.cache import scorer_identity

MODEL_VERSION = 1
"""Bump whenever features or fitting change what the scorer predicts (misses old caches)."""


@dataclass(frozen=True)
class RidgeSettings:
    """The hyperparameter grid and the cross-validation protocol (all part of the identity)."""

    feature_sets: tuple[tuple[str, ...], ...] = (
        ("length",), ("length", "curve"), ("length", "shape"), ("length", "shape", "curve"),
    )
    """Feature groups to choose among (see :data:`features.FEATURE_GROUPS`)."""
    tfidf_weights: tuple[float, ...] = (0.0, 3.0)
    """Weights of the response TF-IDF block in the within-scenario model (0 = none); the
    features are standardized and TF-IDF rows have unit norm, so it needs a weight > 1 to
    count against them."""
    alphas: tuple[float, ...] = (10.0, 30.0, 100.0, 300.0, 1000.0)
    """Penalties of the within-scenario (deviation) regression."""
    level_alphas: tuple[float, ...] = (1.0, 10.0, 100.0)
    """Penalties of the scenario-level regression."""
    max_features: int = 300
    """TF-IDF vocabulary size."""
    folds: int = 5
    """Cross-validation folds (grouped by scenario)."""
    cv_targets: int = 2000
    """Targets scored per fold: all of them up to this many, else a seeded sample."""
    seed: int = 0
    """Seed of that sample."""

    def __post_init__(self) -> None:
        if self.folds < 2:
            raise InputError(f"ridge needs at least 2 folds, got {self.folds}", field="folds")
        for name, low in (("tfidf_weights", 0.0), ("alphas", 1e-9), ("level_alphas", 1e-9)):
            values = getattr(self, name)
            if not values or any(not np.isfinite(v) or v < low for v in values):
                raise InputError(f"{values!r}: need finite values >= {low:g}", field=name)
        for groups in self.feature_sets:
            unknown = set(groups) - set(ft.FEATURE_GROUPS)
            if not groups or unknown:
                raise InputError(f"unknown feature groups {sorted(unknown)}",
                                 field="feature_sets", hint=f"known: {sorted(ft.FEATURE_GROUPS)}")
            if "curve" in groups and "length" not in groups:
                raise InputError(f"{groups}: the curve group needs the length group",
                                 field="feature_sets")


@dataclass(frozen=True)
class RidgeChoice:
    """One point of the grid."""

    groups: tuple[str, ...]
    """Feature groups."""
    tfidf: float
    """TF-IDF weight."""
    alpha: float
    """Within-scenario penalty."""
    level_alpha: float
    """Scenario-level penalty."""


@dataclass
class RidgeScorer:
    """Per-attribute ridge regression; call :meth:`fit` on the training split first."""

    settings: RidgeSettings = field(default_factory=RidgeSettings)
    """Grid and CV protocol."""
    name: str = field(default="ridge", init=False)
    needs_train: bool = field(default=True, init=False)
    chosen: RidgeChoice | None = field(default=None, init=False)
    """The grid point cross-validation picked (after :meth:`fit`)."""
    cv_scores: dict[RidgeChoice, float] = field(default_factory=dict, init=False, repr=False)
    """Mean CV accuracy over targets of every grid point (after :meth:`fit`)."""
    _model: FittedRidge | None = field(default=None, init=False, repr=False)
    _attributes: tuple[str, ...] = field(default=(), init=False, repr=False)

    def identity(self, bench: Benchmark, train: Benchmark | None) -> str:
        if train is None:
            raise InputError("the ridge scorer needs a training split", field="train",
                             hint="pass the benchmark's training split as `train`")
        return scorer_identity(self.name, {
            "version": MODEL_VERSION, "grid": asdict(self.settings), "train": train.identity,
        })

    def fit(self, train: Benchmark) -> None:
        """Choose hyperparameters by grouped CV on ``train``, then fit on all of it."""
        if train.n_scenarios < 2:
            raise InputError("the training split needs at least 2 scenarios",
                             file=train.source or None)
        x, prompts = ft.feature_matrix(train), ft.prompt_matrix(train)
        self.cv_scores = cross_validate(train, x, prompts, self.settings)
        grid = list(self.cv_scores)
        # The first best in grid order, so ties are broken the same way on every machine.
        self.chosen = grid[int(np.argmax([self.cv_scores[c] for c in grid]))]
        self._model = fit_choice(train, x, prompts, self.chosen, self.settings.max_features)
        self._attributes = train.attributes

    def predict(self, bench: Benchmark) -> np.ndarray:
        """float64 (N, A) in [0, 1]; never reads ``bench``'s labels."""
        if self._model is None:
            raise RuntimeError("ridge scorer used before fit()")
        if bench.attributes != self._attributes:
            raise InputError(f"attributes {bench.attributes} differ from the training split's "
                             f"{self._attributes}", file=bench.source or None, field="attributes")
        return self._model.predict(bench, ft.feature_matrix(bench), ft.prompt_matrix(bench))


def fit_choice(
    train: Benchmark, x: np.ndarray, prompts: np.ndarray, choice: RidgeChoice, max_features: int
) -> FittedRidge:
    """Fit one grid point on ``train``."""
    design = fit_design(train, x, prompts, choice.groups, choice.tfidf, max_features)
    means, dev = level_targets(train, np.asarray(train.labels))
    within_coef = ridge_path(design.within_block(train, x), dev, [choice.alpha])[0]
    intercept = means.mean(axis=0)
    level = design.level_block(train, x, prompts)
    level_coef = ridge_path(level, means - intercept, [choice.level_alpha])[0]
    return FittedRidge(design, within_coef, level_coef, intercept)


# ---------------------------------------------------------------------------- CV


def cross_validate(
    train: Benchmark, x: np.ndarray, prompts: np.ndarray, settings: RidgeSettings
) -> dict[RidgeChoice, float]:
    """Mean over targets of the pooled held-out accuracy, for every grid point."""
    targets = cv_targets(train, settings)
    correct: dict[RidgeChoice, np.ndarray] = {}
    counted: dict[RidgeChoice, np.ndarray] = {}
    designs = list(itertools.product(settings.feature_sets, settings.tfidf_weights))
    folds = list(scenario_folds(train, settings.folds))
    # One step per fold and design (its penalty pairs share one fit): never per target.
    with bar(len(folds) * len(designs), "ridge cross-validation", unit="fit") as b:
        for f, (fit_idx, held_idx) in enumerate(folds):
            b.set_postfix_str(f"fold {f + 1}/{len(folds)}")
            fold = _Fold(train, x, prompts, fit_idx, held_idx, settings)
            for groups, weight in designs:
                for alpha, level_alpha, pred in fold.predictions(groups, weight):
                    res = realign(fold.held, pred, targets)
                    key = RidgeChoice(groups, weight, alpha, level_alpha)
                    correct[key] = correct.get(key, 0) + res.correct
                    counted[key] = counted.get(key, 0) + res.counted
                b.update(1)
    return {k: _mean_accuracy(correct[k], counted[k]) for k in correct}


class _Fold:
    """One CV fold: fit and held-out parts, with what every grid point shares precomputed."""

    def __init__(self, train: Benchmark, x: np.ndarray, prompts: np.ndarray,
                 fit_idx: np.ndarray, held_idx: np.ndarray, settings: RidgeSettings) -> None:
        self.settings = settings
        self.fit, self.held = subset(train, fit_idx, "fit"), subset(train, held_idx, "held")
        self.fx, self.hx = x[_rows(train, fit_idx)], x[_rows(train, held_idx)]
        self.fp, self.hp = prompts[fit_idx], prompts[held_idx]
        self.means, self.dev = level_targets(self.fit, np.asarray(self.fit.labels))
        self.vectorizer = None
        if any(w > 0 for w in settings.tfidf_weights):
            self.vectorizer = fit_tfidf(self.fit, settings.max_features)
            self.ftf = self.vectorizer.transform(responses(self.fit)).toarray()
            self.htf = self.vectorizer.transform(responses(self.held)).toarray()

    def predictions(
        self, groups: tuple[str, ...], weight: float
    ) -> Iterator[tuple[float, float, np.ndarray]]:
        """(alpha, level alpha, held-out predictions) for every penalty pair."""
        s = self.settings
        design = fit_design(self.fit, self.fx, self.fp, groups, weight, s.max_features,
                            self.vectorizer)
        tf = (self.ftf, self.htf) if design.vectorizer is not None else (None, None)
        a = design.within_block(self.fit, self.fx, tf[0])
        b = design.within_block(self.held, self.hx, tf[1])
        devs = [b @ c for c in ridge_path(a, self.dev, s.alphas)]
        intercept = self.means.mean(axis=0)
        la = design.level_block(self.fit, self.fx, self.fp)
        lb = design.level_block(self.held, self.hx, self.hp)
        levels = [lb @ c + intercept for c in ridge_path(la, self.means - intercept,
                                                          s.level_alphas)]
        for (alpha, d), (level_alpha, lv) in itertools.product(
            zip(s.alphas, devs, strict=True), zip(s.level_alphas, levels, strict=True)
        ):
            yield alpha, level_alpha, np.clip(lv[self.held.scenario_of] + d, 0.0, 1.0)


def _mean_accuracy(correct: np.ndarray, counted: np.ndarray) -> float:
    ok = counted > 0
    return float(np.mean(100.0 * correct[ok] / counted[ok])) if ok.any() else 0.0


def cv_targets(train: Benchmark, settings: RidgeSettings) -> TargetSet:
    """Every target over the training split's levels, or a seeded sample of them."""
    full = all_targets(train.attributes, train.levels)
    if len(full) <= settings.cv_targets:
        return full
    rng = np.random.default_rng(settings.seed)
    pick = np.sort(rng.choice(len(full), size=settings.cv_targets, replace=False))
    return full.take(pick, name="cv-sample")


def scenario_folds(train: Benchmark, k: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(fit scenarios, held-out scenarios) per fold; a scenario's responses stay together."""
    n_folds = min(k, train.n_scenarios)
    rows = np.arange(train.n_responses)
    for fit_rows, held_rows in GroupKFold(n_splits=n_folds).split(rows, groups=train.scenario_of):
        yield np.unique(train.scenario_of[fit_rows]), np.unique(train.scenario_of[held_rows])


def subset(bench: Benchmark, idx: np.ndarray, tag: str) -> Benchmark:
    """The scenarios ``idx`` of ``bench`` as a benchmark of their own."""
    picked = [bench.scenarios[int(i)] for i in idx]
    return make_benchmark(bench.name, f"{bench.split}~{tag}", bench.attributes, bench.levels,
                          picked, bench.source)


def _rows(bench: Benchmark, idx: np.ndarray) -> np.ndarray:
    return np.concatenate([np.arange(bench.offsets[i], bench.offsets[i + 1]) for i in idx])
