"""Plans: items left after the cache, claims and open batches; tokens labelled exact or
estimated; completion tokens measured from cached answers of the same judge; cost per lane from
a price table (a bad table is one clear error); the plan is recorded beside the actuals."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from pluralign.actors.backends.batch_journal import BatchJournal
from pluralign.actors.testing.fake_server import FakeOpenAIServer
from pluralign.engine.data.synthetic import synthetic_benchmark
from pluralign.engine.errors import InputError
from pluralign.engine.store import manifest
from pluralign.engine.store.cache import ScoreCache
from pluralign.engine.store.claims import Claims
from pluralign.jobs.cli.args import add_llm_args, llm_config
from pluralign.jobs.configs import LLMConfig
from pluralign.jobs.llm_scoring import build_judge, run_llm_scoring
from pluralign.jobs.plan import SHIPPED_PRICES, load_prices, plan_items, prices_for
from tests.fake_openai import FAKE_KEY_ENV, fake_key

__all__ = ["fake_key"]


def bench(n: int = 10):  # type: ignore[no-untyped-def]
    return synthetic_benchmark(n_scenarios=n, responses=(2, 2), n_attributes=2, n_levels=5,
                               seed=9, attributes=("helpfulness", "verbosity"), name="plan")


def config(url: str = "http://127.0.0.1:9/v1", *extra: str) -> LLMConfig:
    p = argparse.ArgumentParser()
    add_llm_args(p)
    return llm_config(p.parse_args([
        "--model", "gpt-4o-mini", "--base-url", url, "--api-key-env", FAKE_KEY_ENV,
        "--no-ray", "--zero-shot", "--max-tokens", "300", *extra]))


def test_plan_counts_what_is_left_after_cache_claims_and_batches(tmp_path: Path) -> None:
    b, cfg = bench(), config("http://127.0.0.1:9/v1", "--rpm", "60")
    judge = build_judge(b, None, "regression", cfg)
    items = judge.items(range(b.n_scenarios), 1)
    BatchJournal(tmp_path).step(BatchJournal(tmp_path).new(
        provider="openai", endpoint="h", model="m", scorer=judge.identity,
        keys=[items[0].key, items[1].key]), "submitted", batch_id="b1")
    other = Claims(tmp_path)
    other.owner = "elsewhere"  # a claim file that is not ours and not stale
    other.try_claim(items[2].key)
    cache = ScoreCache(tmp_path)
    planned = plan_items(judge, items, cfg, cache, benchmark=b.identity, samples=1)
    assert planned.items == len(items) and planned.cached == 0
    assert planned.in_open_batches == 2 and planned.claimed_elsewhere == 1
    assert planned.to_send == len(items) - 3
    assert planned.prompt_tokens > 0 and "estimate" in planned.prompt_method
    assert planned.completion_tokens == 300 * planned.to_send
    assert planned.seconds_online == pytest.approx(60.0 * planned.to_send / 60)
    price = SHIPPED_PRICES["gpt-4o-mini"]
    online = (planned.prompt_tokens * price["input"]
              + planned.completion_tokens * price["output"]) / 1e6
    assert planned.costs["online"] == pytest.approx(online, rel=1e-3)
    assert planned.costs["batch"] == pytest.approx(online / 2, rel=1e-3)
    assert "nothing was sent" in planned.text()


def test_a_second_plan_uses_the_measured_answers(fake_key: str, tmp_path: Path) -> None:
    b = bench()
    with FakeOpenAIServer() as server:
        cfg = config(server.url, "--limit", "5")
        first = run_llm_scoring(b, None, "regression", cfg, ScoreCache(tmp_path), log=None)
        assert first.schedule.complete
        full = config(server.url)
        judge = build_judge(b, None, "regression", full)
        planned = plan_items(judge, judge.items(range(b.n_scenarios), 1), full,
                             ScoreCache(tmp_path), benchmark=b.identity, samples=1)
        assert server.stats()["total"] == first.schedule.requests  # planning sent nothing
    assert planned.cached == first.schedule.completed
    assert planned.completion_method.startswith("measured mean of")
    assert planned.completion_tokens < 300 * planned.to_send
    assert "calibrated on" in planned.prompt_method


def test_the_manifest_records_the_plan_beside_the_actuals(fake_key: str,
                                                          tmp_path: Path) -> None:
    m = manifest.begin("test", ["pluralign", "test"])
    try:
        with FakeOpenAIServer() as server:
            run_llm_scoring(bench(4), None, "regression", config(server.url),
                            ScoreCache(tmp_path), log=None)
        planned = m.counts["plan"]
        assert isinstance(planned, dict) and planned["to_send"] == 16
    finally:
        manifest.end()


def test_price_tables(tmp_path: Path) -> None:
    good = tmp_path / "prices.json"
    good.write_text(json.dumps({"date": "2026-12", "models": {
        "my-model": {"input": 1.0, "output": 2.0, "batch_input": 0.25}}}))
    p = prices_for("org/my-model-v2", str(good))
    assert p is not None and (p.input, p.output, p.batch_input, p.batch_output) == \
        (1.0, 2.0, 0.25, 1.0)
    assert "2026-12" in p.source
    assert prices_for("unknown-model", str(good)) is None
    flags = prices_for("anything", prompt_per_1k=0.001, completion_per_1k=0.002)
    assert flags is not None and flags.input == 1.0 and flags.source == "price flags"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"models": {"m": {"input": -1, "output": 1}}}))
    with pytest.raises(InputError) as e:
        load_prices(str(bad))
    assert "bad.json" in str(e.value) and "record m" in str(e.value) and "input" in str(e.value)
