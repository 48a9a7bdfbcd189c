"""Score a benchmark through the score cache: compute only what the cache lacks."""

from __future__ import annotations

from typing import Any

import numpy as np

from pluralign.engine.benchmark import Benchmark
from pluralign.engine.cache import ScoreCache
from pluralign.engine.errors import InputError
from pluralign.engine.scorers.base import Scorer, checked_predictions


def score_through_cache(
    scorer: Scorer, bench: Benchmark, cache: ScoreCache, train: Benchmark | None = None
) -> np.ndarray:
    """float64 (N, A) predictions of ``scorer`` on ``bench``, from ``cache`` when complete.

    Otherwise the scorer is fitted on ``train`` (when it needs training), predicts, and only
    the missing scores are appended (sample 0: these scorers are deterministic).
    """
    ident = scorer.identity(bench, train)
    cached = cache.predictions(bench, ident, [0])
    missing = np.isnan(cached)
    if not missing.any():
        return cached
    if scorer.needs_train:
        if train is None:
            raise InputError(f"scorer {scorer.name} needs a training split", field="train-split")
        scorer.fit(train)
    pred = checked_predictions(bench, scorer.predict(bench), scorer.name)
    cache.append(_rows(bench, ident, pred, missing))
    out = cached.copy()
    out[missing] = pred[missing]
    return out


def _rows(bench: Benchmark, ident: str, pred: np.ndarray, missing: np.ndarray
          ) -> list[dict[str, Any]]:
    ids = [s.id for s in bench.scenarios]
    rows = []
    for row, a in np.argwhere(missing):
        sid, resp, attr = ids[bench.scenario_of[row]], int(bench.response_index[row]), \
            bench.attributes[a]
        rows.append({  # the cache computes each key from these fields
            "benchmark": bench.identity, "scenario": sid, "response": resp, "attribute": attr,
            "scorer": ident, "sample": 0, "score": float(pred[row, a]), "error": None,
        })
    return rows
