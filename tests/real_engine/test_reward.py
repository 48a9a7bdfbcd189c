"""The reward scorer against the real vLLM engine: in this process (pooling runner) and
through its OpenAI-compatible server's /pooling and /classify routes (one start each)."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterator
from pathlib import Path

import pytest

from pluralign.actors.backends.reward_client import HTTPRewardClient, VLLMRewardModel
from pluralign.engine.data.synthetic import synthetic_benchmark
from pluralign.engine.judges.reward import RewardScorer, RewardSettings, score_rewards
from pluralign.engine.store.cache import ScoreCache
from tests.real_engine.tiny_model import build_reward
from tests.real_engine.vllm_server import free_port, start_server, stop


@pytest.fixture(scope="module")
def reward_model(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VLLMRewardModel]:
    path = build_reward(tmp_path_factory.mktemp("tiny-reward"), num_labels=2)
    model = VLLMRewardModel(str(path), load_format="dummy", dtype="float32",
                            max_model_len=512, enforce_eager=True)
    yield model
    model.close()  # its engine stops with the module, not at the interpreter's exit


def test_in_process_reward_scores_cached(reward_model: VLLMRewardModel, tmp_path: Path) -> None:
    bench = synthetic_benchmark(n_scenarios=5, responses=(2, 3), n_attributes=3, seed=2)
    a, b, c = bench.attributes
    scorer = RewardScorer(bench, RewardSettings(model="tiny", heads={a: 0, b: 1, c: 1}))
    cache = ScoreCache(tmp_path / "cache")
    first = asyncio.run(score_rewards(scorer, cache, reward_model, batch=8))
    assert first == {"sent": bench.n_responses, "scored": 3 * bench.n_responses, "failed": 0}
    pred = cache.predictions(bench, scorer.identity)
    assert all(math.isfinite(v) for v in pred.ravel())
    assert (pred[:, 1] == pred[:, 2]).all()  # one head read for two attributes
    again = asyncio.run(reward_model([scorer.text(0, 0)]))
    assert again[0][0] == pytest.approx(pred[0, 0], rel=1e-5)  # deterministic
    assert asyncio.run(score_rewards(scorer, cache, reward_model))["sent"] == 0


@pytest.fixture(scope="module")
def reward_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    path = build_reward(tmp_path_factory.mktemp("tiny-reward-server"), num_labels=2)
    port = free_port()
    proc = start_server(path, port, tmp_path_factory.mktemp("log") / "server.log",
                        max_model_len=512)
    yield f"http://127.0.0.1:{port}/v1"
    stop(proc)


@pytest.mark.parametrize("route", ["/pooling", "/classify"])
def test_server_reward_routes(reward_server: str, route: str, tmp_path: Path) -> None:
    bench = synthetic_benchmark(n_scenarios=4, responses=(2, 2), n_attributes=2, seed=3)
    a, b = bench.attributes
    scorer = RewardScorer(bench, RewardSettings(model="tiny", heads={a: 0, b: 1},
                                                backend=f"http:{route}"))
    cache = ScoreCache(tmp_path / "cache")
    client = HTTPRewardClient(reward_server, "tiny", route=route, api_key_env=None)
    counts = asyncio.run(score_rewards(scorer, cache, client, batch=3))
    assert counts == {"sent": 8, "scored": 16, "failed": 0}
    pred = cache.predictions(bench, scorer.identity)
    assert all(math.isfinite(v) for v in pred.ravel())
    assert asyncio.run(score_rewards(scorer, cache, client))["sent"] == 0
