"""Queries the service has never answered (computed, not replayed) equal ``pluralign align``
and the engine's label-index path bit for bit, whichever way the local server computes them:
in its event loop (a few targets over predictions it holds) or in a worker thread."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("uvicorn")

from pluralign.engine.align.realign import FEW_TARGETS, LabelIndex, chosen_responses, realign
from pluralign.engine.data.sources import load_benchmark
from pluralign.engine.data.targets import TargetSet, all_targets
from pluralign.engine.scorers import get_scorer, score_through_cache
from pluralign.engine.store.cache import ScoreCache
from pluralign.jobs.align import AlignConfig, run_align
from pluralign.jobs.configs import SplitConfig
from pluralign.jobs.serve.asgi import ServiceApp
from pluralign.jobs.serve.http import make_app
from pluralign.jobs.serve.query import Limits, QueryService
from tests.jobs.http_json import call_json, serving

BENCH = "synthetic:S=60,R=2-5,A=3,L=5,seed=11"
SCORERS = ({"scorer": "random", "seed": 4}, {"scorer": "constant", "value": 0.25})
"""Continuous predictions, and predictions that tie everywhere (the tie rule decides)."""
TOKEN = "new-queries-token"


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("serve-new-cache")
    bench = load_benchmark(BENCH, "eval")
    score_through_cache(get_scorer("random", seed=4), bench, ScoreCache(root))
    score_through_cache(get_scorer("constant", value=0.25), bench, ScoreCache(root))
    return root


@pytest.fixture()
def served(cache_dir: Path) -> Iterator[tuple[str, ServiceApp]]:
    """A fresh local server (nothing answered yet) on loopback, and its application."""
    app = make_app(QueryService(cache_dir, None, limits=Limits(max_synthetic_scenarios=100)),
                   TOKEN)
    with serving(app) as port:
        yield f"http://127.0.0.1:{port}/v1/align", app


def _engine(cache_dir: Path, scorer: dict[str, Any], targets: TargetSet
            ) -> tuple[Any, np.ndarray]:
    """The engine's answer through a label index (the path of sweeps and large queries)."""
    bench = load_benchmark(BENCH, "eval")
    options = {k: v for k, v in scorer.items() if k != "scorer"}
    preds = ScoreCache(cache_dir).predictions(
        bench, get_scorer(scorer["scorer"], **options).identity(bench, None))
    index = LabelIndex(bench, targets)
    return (realign(bench, preds, targets, weighted=True, index=index),
            chosen_responses(bench, preds, targets, index=index))


def _same(row: dict[str, Any], res: Any, chosen: np.ndarray | None, t: int) -> None:
    """One answered target equals the engine's, bit for bit (None where NaN)."""
    def value(x: float) -> float | None:
        return None if np.isnan(x) else float(x)

    assert row["counted"] == int(res.counted[t]) and row["correct"] == int(res.correct[t])
    assert row["accuracy"] == value(res.accuracy[t])
    assert row["weighted_score"] == value(res.weighted[t])
    assert row["closeness"] == value(res.closeness[t])
    if chosen is not None:
        assert row["chosen"] == chosen[:, t].tolist()


@pytest.mark.parametrize("scorer", SCORERS, ids=[s["scorer"] for s in SCORERS])
def test_never_answered_queries_equal_align_and_the_engine(
        served: tuple[str, ServiceApp], cache_dir: Path, scorer: dict[str, Any]) -> None:
    url, app = served
    bench = load_benchmark(BENCH, "eval")
    grid = all_targets(bench.attributes, bench.levels)
    pick = np.random.default_rng(5).choice(len(grid), size=14, replace=False)
    targets = grid.take(pick, "inline")
    res, chosen = _engine(cache_dir, scorer, targets)
    # What `pluralign align --target ...` answers for the same targets, from the same cache.
    config = AlignConfig(splits=SplitConfig(benchmark=BENCH, cache=str(cache_dir)),
                         target=tuple(targets.json(t) for t in range(len(targets))),
                         **scorer)
    cli = run_align(config)
    assert [r["correct"] for r in cli.rows()] == res.correct.tolist()
    assert np.array_equal(cli.sets[0].result.weighted, res.weighted, equal_nan=True)
    assert cli.sets[0].chosen is not None
    np.testing.assert_array_equal(cli.sets[0].chosen, chosen)

    base = {"benchmark": BENCH, **scorer}
    # The first query loads the benchmark and the predictions: a worker thread computes it.
    for t in range(len(targets)):
        status, out = call_json(url, {**base, "targets": [targets.target(t)],
                                      "per_scenario": t % 2 == 0}, token=TOKEN)
        assert status == 200, out
        (row,) = out["targets"]
        assert json.dumps(row["target"]) == cli.rows()[t]["target"]
        _same(row, res, chosen if t % 2 == 0 else None, t)
    # Then the held predictions answer in the event loop: every later query did.
    assert app.computed_in_loop == len(targets) - 1
    # Several targets at once, never asked together before; then past the few-targets bound
    # (a label index, in a worker thread): the same bits.
    status, out = call_json(url, {**base, "targets": [targets.target(t) for t in (3, 1, 4)]},
                            token=TOKEN)
    assert status == 200
    for row, t in zip(out["targets"], (3, 1, 4), strict=True):
        _same(row, res, None, t)
    many = grid.take(np.arange(FEW_TARGETS + 3), "inline")
    res_many, _ = _engine(cache_dir, scorer, many)
    before = app.computed_in_loop
    status, out = call_json(url, {**base, "targets": [many.target(t) for t in range(len(many))]},
                            token=TOKEN)
    assert status == 200 and app.computed_in_loop == before
    for t, row in enumerate(out["targets"]):
        _same(row, res_many, None, t)
    # weighted off: the same counts, no scores.
    status, out = call_json(url, {**base, "targets": [targets.target(5)], "weighted": False},
                            token=TOKEN)
    assert status == 200 and "weighted_score" not in out["targets"][0]
    assert out["targets"][0]["correct"] == int(res.correct[5])


def test_errors_in_the_event_loop_are_the_same_answers(served: tuple[str, ServiceApp]) -> None:
    """Bad input gets the same status and line whichever way the query is computed."""
    url, app = served
    base = {"benchmark": BENCH, "scorer": "random", "seed": 4}
    cold = call_json(url, {**base, "targets": [{"a0": 0.123456789}]}, token=TOKEN)
    assert call_json(url, {**base, "targets": [{"a1": 1}]}, token=TOKEN)[0] == 200  # loaded
    warm = call_json(url, {**base, "targets": [{"a0": 0.123456789}]}, token=TOKEN)
    assert cold == warm and cold[0] == 400 and "targets" in cold[1]["error"]
    assert app.computed_in_loop >= 1
    missing = {"benchmark": BENCH, "scorer": "constant", "value": 0.75, "targets": [{"a0": 1}]}
    assert call_json(url, missing, token=TOKEN)[0] == 404
