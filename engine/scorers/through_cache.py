"""Score a benchmark through the score cache: compute only what the cache lacks."""

from __future__ import annotations

import numpy as np

from pluralign.engine.data.benchmark import Benchmark
from pluralign.engine.errors import InputError
from pluralign.engine.run.progress import bar
from pluralign.engine.scorers.base import Scorer, checked_predictions
from pluralign.engine.store.cache import ScoreCache


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
    if scorer.needs_train and train is None:
        raise InputError(f"scorer {scorer.name} needs a training split", field="train",
                         hint="pass the benchmark's training split as `train`")
    # Steps: fit (when trained), predict, write the missing scores to the cache.
    with bar(2 + bool(scorer.needs_train), f"scoring with {scorer.name}", unit="step") as b:
        if scorer.needs_train:
            b.set_postfix_str("fit")
            scorer.fit(train)  # type: ignore[arg-type]
            b.update(1)
        b.set_postfix_str("predict")
        pred = checked_predictions(bench, scorer.predict(bench), scorer.name)
        b.update(1)
        b.set_postfix_str("write cache")
        cache.append(_rows(bench, ident, pred, missing))
        b.update(1)
    out = cached.copy()
    out[missing] = pred[missing]
    return out


def _rows(bench: Benchmark, ident: str, pred: np.ndarray, missing: np.ndarray
          ) -> list[dict[str, object]]:
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
