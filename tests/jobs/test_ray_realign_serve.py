"""On a small real local Ray: sharded re-alignment equals the local path bit for bit, and the
query service deployed on Ray Serve (2 replicas) answers as the engine does, with 401/400."""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pluralign.engine.align.realign import realign
from pluralign.engine.data.sources import load_benchmark
from pluralign.engine.data.synthetic import noisy_predictions, synthetic_benchmark
from pluralign.engine.data.targets import all_targets
from pluralign.engine.scorers import get_scorer, score_through_cache
from pluralign.engine.store.cache import ScoreCache
from tests.jobs.http_json import call_json

pytestmark = [pytest.mark.ray, pytest.mark.slow]

BENCH = "synthetic:S=30,R=2-4,A=4,L=5,seed=8"
# `ray_local` (tests/conftest.py): a loopback runtime for this module, shut down after it.


def test_sharded_equals_local_bit_for_bit(ray_local: Any) -> None:
    from pluralign.jobs.sharded import realign_sharded, row_ranges

    bench = synthetic_benchmark(120, (2, 4), 6, 5, seed=2)
    pred = noisy_predictions(bench, 0.3, seed=2)
    targets = all_targets(bench.attributes, bench.levels)
    local = realign(bench, pred, targets, weighted=True)
    for shards in (1, 3, 4):
        assert len(row_ranges(36, shards)) == shards
        sharded = realign_sharded(bench, pred, targets, shards=shards, weighted=True)
        np.testing.assert_array_equal(sharded.counted, local.counted)
        np.testing.assert_array_equal(sharded.correct, local.correct)
        assert np.array_equal(sharded.weighted, local.weighted, equal_nan=True)
        assert np.array_equal(sharded.closeness, local.closeness, equal_nan=True)
    # Shards under a small memory budget stream their blocks: still the same bits.
    small = realign_sharded(bench, pred, targets, shards=2, weighted=True,
                            memory_budget=2**20)
    assert np.array_equal(small.weighted, local.weighted, equal_nan=True)
    np.testing.assert_array_equal(small.correct, local.correct)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _post(url: str, body: Any, token: str | None) -> tuple[int, dict[str, Any]]:
    return call_json(url, body, token=token, timeout=60)


def test_ray_serve_deployment_answers_like_the_engine(ray_local: Any, tmp_path: Path) -> None:
    serve = pytest.importorskip("ray.serve")
    from pluralign.jobs.serve.query import Limits
    from pluralign.jobs.serve.ray_serve import build

    cache = tmp_path / "cache"
    bench = load_benchmark(BENCH, "eval")
    scorer = get_scorer("random", seed=4)
    preds = score_through_cache(scorer, bench, ScoreCache(cache))
    port = _free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    try:
        serve.run(build(str(cache), None, token="tok", replicas=2,
                        limits=Limits(max_synthetic_scenarios=100)), name="pluralign",
                  route_prefix="/")
        url = f"http://127.0.0.1:{port}/v1/align"
        body = {"benchmark": BENCH, "scorer": "random", "seed": 4, "targets": ["all"]}
        deadline = time.time() + 60
        while True:
            status, out = _post(url, body, "tok")
            if status == 200 or time.time() > deadline:
                break
            time.sleep(0.5)
        assert status == 200, out
        res = realign(bench, preds, all_targets(bench.attributes, bench.levels), weighted=True)
        assert [r["correct"] for r in out["targets"]] == res.correct.tolist()
        assert [r["counted"] for r in out["targets"]] == res.counted.tolist()
        assert _post(url, body, None)[0] == 401
        status, out = _post(url, {**body, "targets": [{"nope": 1}]}, "tok")
        assert status == 400 and "nope" in out["error"]
        assert _post(url, body, "tok")[0] == 200  # still serving
        states = serve.status().applications["pluralign"].deployments["pluralign-align"]
        assert states.replica_states.get("RUNNING") == 2, states
    finally:
        serve.shutdown()
