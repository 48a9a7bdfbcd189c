"""Group-informed retrieval (SPICA §3.2.3): rank bank scenarios for a query by

    d̄(x, x') = w_d·d(x, x') + w_s·g_stability(x') + w_c·g_contrast(x') + c,

with d = 1 - cosine similarity and the weights fitted per group by least squares so that d̄
predicts the observed mismatch on dev pairs. The baseline ranks by d alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from pluralign.engine.data.similarity import TextSimilarity, get_similarity
from pluralign.engine.errors import InputError
from pluralign.engine.spica.bank import ALL, RatingKind, ScenarioBank
from pluralign.engine.spica.group_metrics import GroupNorms, group_norms, pairwise_mismatch


@dataclass(frozen=True)
class Weights:
    """One group's fitted composite distance."""

    group: str
    """Group name (``ALL`` for the collective)."""
    w_d: float
    """Weight of the text distance 1 - cos(x, x')."""
    w_s: float
    """Weight of g_stability (negative: agreed-on scenarios are closer)."""
    w_c: float
    """Weight of g_contrast (negative: scenarios the group cares about are closer)."""
    c: float
    """Intercept (does not change the ranking)."""
    n_pairs: int = 0
    """Dev (query, bank scenario) pairs the fit used."""
    r2: float = float("nan")
    """Share of the mismatch variance the fit explains on those pairs."""

    def to_dict(self) -> dict[str, float | int | str]:
        return asdict(self)


def _ranked(score: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k smallest scores per row; ties go to the lower bank index."""
    order = np.argsort(score, axis=1, kind="stable")
    return order[:, :k]


class Retriever:
    """Ranks the scenarios of one bank for new queries, per group."""

    def __init__(
        self,
        bank: ScenarioBank,
        similarity: TextSimilarity | str = "tfidf",
        kind: RatingKind = "response",
    ) -> None:
        self.bank = bank
        """The scenarios that can be retrieved (normally the ``train`` split)."""
        self.kind: RatingKind = kind
        """Which ratings define norms and mismatch."""
        self.similarity = (get_similarity(similarity) if isinstance(similarity, str)
                           else similarity)
        """Text similarity between queries and bank prompts (fitted on the bank's prompts)."""
        self.similarity.fit(list(bank.prompts))
        self._norms: dict[str, GroupNorms] = {}

    def norms(self, group: str) -> GroupNorms:
        if group not in self._norms:
            self._norms[group] = group_norms(self.bank, group, self.kind)
        return self._norms[group]

    def distance(self, queries: Sequence[str]) -> np.ndarray:
        """(Q, S) text distance 1 - cosine similarity to every bank prompt."""
        return 1.0 - self.similarity.similarity(list(queries))

    def scores(self, distance: np.ndarray, group: str, weights: Weights | None) -> np.ndarray:
        """(Q, S) composite distance (or plain distance for the baseline); +inf where the
        group has no ratings, so such scenarios are never retrieved."""
        norms = self.norms(group)
        if weights is None:
            out = distance.copy()
        else:
            out = (weights.w_d * distance + weights.w_s * norms.stability[None, :]
                   + weights.w_c * norms.contrast[None, :] + weights.c)
        out[:, ~norms.rated] = np.inf
        return out

    def retrieve(
        self, queries: Sequence[str], group: str, k: int, weights: Weights | None = None,
        distance: np.ndarray | None = None,
    ) -> np.ndarray:
        """(Q, k') bank indices, best first; ``weights=None`` is the similarity baseline.

        k' = min(k, scenarios the group rated).
        """
        if k < 1:
            raise InputError(f"k must be at least 1, got {k}", field="k")
        self.bank.check_group(group)
        d = self.distance(queries) if distance is None else distance
        n_ok = int(self.norms(group).rated.sum())
        if n_ok == 0:
            raise InputError(f"group {group!r} rated no scenario of the bank", field="group")
        return _ranked(self.scores(d, group, weights), min(k, n_ok))

    def observed_mismatch(self, queries: ScenarioBank, group: str) -> np.ndarray:
        """(N, S) mean pairwise L between each query's group ratings and each bank scenario's."""
        if group != ALL and group not in queries.groups:
            raise InputError(f"no query was rated by group {group!r}", file=queries.source or None,
                             field="group", hint="fitting and evaluating need the group's "
                             "ratings of the dev/test queries")
        return pairwise_mismatch(queries.ratings(group, self.kind),
                                 self.bank.ratings(group, self.kind))

    def fit(self, dev: ScenarioBank, group: str) -> Weights:
        """Least-squares weights for ``group`` on every (dev query, bank scenario) pair."""
        target = self.observed_mismatch(dev, group)
        d = self.distance(dev.prompts)
        norms = self.norms(group)
        feats = np.stack([
            d,
            np.broadcast_to(norms.stability, d.shape),
            np.broadcast_to(norms.contrast, d.shape),
            np.ones_like(d),
        ], axis=-1).reshape(-1, 4)
        y = target.reshape(-1)
        ok = np.isfinite(y) & np.isfinite(feats).all(axis=1)
        if ok.sum() < 4:
            raise InputError(
                f"too few dev pairs rated by group {group!r} to fit weights ({int(ok.sum())})",
                field="group", hint="the dev split needs ratings by this group",
            )
        coef, *_ = np.linalg.lstsq(feats[ok], y[ok], rcond=None)
        resid = y[ok] - feats[ok] @ coef
        var = float(np.var(y[ok]))
        r2 = 1.0 - float(np.mean(resid**2)) / var if var > 0 else float("nan")
        return Weights(group, float(coef[0]), float(coef[1]), float(coef[2]), float(coef[3]),
                       int(ok.sum()), r2)

    def fit_all(self, dev: ScenarioBank, groups: Sequence[str] | None = None
                ) -> dict[str, Weights]:
        """Weights for every group of the bank and the collective ``ALL`` (or those named)."""
        names = list(groups) if groups else [*self.bank.groups, ALL]
        return {g: self.fit(dev, g) for g in names}
