"""Reward-model scorer end to end over real HTTP: the fake server's pooling route, the cache."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path

import pytest

from pluralign.actors.backends.reward_client import HTTPRewardClient, parse_pooling_answer
from pluralign.actors.testing.fake_server import FakeOpenAIServer, fake_reward
from pluralign.engine.data.synthetic import synthetic_benchmark
from pluralign.engine.errors import InputError
from pluralign.engine.judges.reward import (
    RewardScorer,
    RewardSettings,
    parse_reward_attributes,
    score_rewards,
)
from pluralign.engine.store.cache import ScoreCache


def test_scores_cached_and_rerun_sends_nothing(tmp_path: Path) -> None:
    bench = synthetic_benchmark(n_scenarios=7, responses=(2, 3), n_attributes=3, seed=1)
    a, b, _ = bench.attributes
    heads = parse_reward_attributes(f"{a}=1,{b}=0", bench.attributes)
    scorer = RewardScorer(bench, RewardSettings(model="fake", heads=heads, backend="http",
                                                squash=True))
    cache = ScoreCache(tmp_path / "cache")
    with FakeOpenAIServer() as srv:
        client = HTTPRewardClient(srv.url, "fake", api_key_env=None)
        first = asyncio.run(score_rewards(scorer, cache, client, batch=4))
        sent = srv.stats()["total"]
        second = asyncio.run(score_rewards(scorer, cache, client, batch=4))
        assert srv.stats()["total"] == sent
    assert first == {"sent": bench.n_responses, "scored": 2 * bench.n_responses, "failed": 0}
    assert second == {"sent": 0, "scored": 0, "failed": 0}
    assert sent == math.ceil(bench.n_responses / 4)
    pred = cache.predictions(bench, scorer.identity)
    flat = [(i, r) for i, sc in enumerate(bench.scenarios) for r in range(len(sc.responses))]
    for row, (i, r) in enumerate(flat):
        h = fake_reward(scorer.text(i, r))
        assert pred[row, 0] == pytest.approx(1 / (1 + math.exp(-h[1])))
        assert pred[row, 1] == pytest.approx(1 / (1 + math.exp(-h[0])))
        assert math.isnan(pred[row, 2])


def test_identity_covers_model_revision_backend() -> None:
    bench = synthetic_benchmark(n_scenarios=2, n_attributes=2)
    base = RewardSettings(model="m", heads={bench.attributes[0]: 0})
    ids = {RewardScorer(bench, s).identity for s in (
        base, RewardSettings(model="m2", heads=base.heads),
        RewardSettings(model="m", heads=base.heads, revision="abc"),
        RewardSettings(model="m", heads=base.heads, backend="http"))}
    assert len(ids) == 4


def test_unreachable_endpoint_writes_failures_then_rerun_retries(tmp_path: Path) -> None:
    bench = synthetic_benchmark(n_scenarios=3, responses=(2, 2), n_attributes=2)
    scorer = RewardScorer(bench, RewardSettings(model="fake", heads={bench.attributes[0]: 0}))
    cache = ScoreCache(tmp_path / "cache")
    dead = HTTPRewardClient("http://127.0.0.1:9/v1", "fake", api_key_env=None, retries=0)
    counts = asyncio.run(score_rewards(scorer, cache, dead))
    assert counts == {"sent": 6, "scored": 0, "failed": 6}
    with FakeOpenAIServer() as srv:
        counts = asyncio.run(score_rewards(scorer, cache, HTTPRewardClient(
            srv.url, "fake", api_key_env=None)))
    assert counts == {"sent": 6, "scored": 6, "failed": 0}


def test_one_bad_item_does_not_stop_others() -> None:
    out = parse_pooling_answer({"data": [{"index": 1, "probs": [0.25, 0.75]},
                                         {"index": 0, "data": "oops"}]}, 3)
    assert out[1] == [0.25, 0.75]
    assert isinstance(out[0], str) and isinstance(out[2], str)
    bench = synthetic_benchmark(n_scenarios=1, responses=(2, 2), n_attributes=2)
    scorer = RewardScorer(bench, RewardSettings(model="m", heads={bench.attributes[0]: 5}))
    (row,) = scorer.rows(0, 0, [1.0, 2.0])
    assert row["score"] is None and "head 5" in row["error"]


@pytest.mark.parametrize("spec", ["", "nope=0", "x", "a0=z"])
def test_bad_mapping_is_refused(spec: str) -> None:
    with pytest.raises(InputError, match="field 'attributes'"):
        parse_reward_attributes(spec, ("a0", "a1"))
