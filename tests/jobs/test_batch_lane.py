"""The batch lane against the fake Batch API (real HTTP on loopback): every item answered once
and equal to the online lane's answers, reattachment instead of resubmission, expired,
cancelled and partially failed batches, split batches, rate-limited creation, the journal
that online runs respect, and the plan that sends nothing."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pytest

from pluralign.actors.backends.batch_journal import BatchJournal
from pluralign.actors.backends.batch_openai import split_lines
from pluralign.actors.testing.batch_server import FakeBatchServer, stable_answerer
from pluralign.actors.testing.fake_server import FakeOpenAIServer
from pluralign.engine.data.synthetic import synthetic_benchmark
from pluralign.engine.store.cache import ScoreCache
from pluralign.jobs.cli.args import add_llm_args, llm_config
from pluralign.jobs.configs import LLMConfig
from pluralign.jobs.llm_scoring import run_llm_scoring
from pluralign.jobs.plan import DryRunDone
from tests.fake_openai import FAKE_KEY_ENV, fake_key

__all__ = ["fake_key"]

SCORER = "regression"


def bench(n: int = 12) -> Any:
    return synthetic_benchmark(n_scenarios=n, responses=(2, 2), n_attributes=2, n_levels=5,
                               seed=3, attributes=("helpfulness", "verbosity"), name="batch")


def config(url: str, *extra: str) -> LLMConfig:
    p = argparse.ArgumentParser()
    add_llm_args(p)
    return llm_config(p.parse_args([
        "--model", "fake-model", "--base-url", url, "--api-key-env", FAKE_KEY_ENV, "--no-ray",
        "--zero-shot", "--batch-poll-seconds", "0.05", "--concurrency", "4", *extra]))


def scores(cache: ScoreCache, identity: str) -> dict[str, float]:
    table = cache.read(bench().identity, identity)
    return dict(zip(table["key"].to_pylist(), table["score"].to_pylist(), strict=True))


def test_batch_lane_scores_every_item_once_and_equals_online(fake_key: str,
                                                              tmp_path: Path) -> None:
    b = bench()
    with FakeBatchServer() as server:
        report = run_llm_scoring(b, None, SCORER, config(server.url, "--lane", "batch"),
                                 ScoreCache(tmp_path / "batch"), log=None)
        assert report.schedule.complete and report.schedule.completed == report.schedule.items
        assert server.created == 1
        assert max(server.processed.values()) == 1
        assert len(server.processed) == report.schedule.items
        # A rerun sends nothing and creates no batch.
        again = run_llm_scoring(b, None, SCORER, config(server.url, "--lane", "batch"),
                                ScoreCache(tmp_path / "batch"), log=None)
        assert again.schedule.cached == again.schedule.items and server.created == 1
    with FakeOpenAIServer(answerer=stable_answerer()) as online:
        ref = run_llm_scoring(b, None, SCORER, config(online.url),
                              ScoreCache(tmp_path / "online"), log=None)
    assert ref.identity == report.identity
    got = scores(ScoreCache(tmp_path / "batch"), report.identity)
    assert got and got == scores(ScoreCache(tmp_path / "online"), ref.identity)


def test_partial_failures_go_to_the_next_batch(fake_key: str, tmp_path: Path) -> None:
    """A 5xx in the error file is sent again in the next batch (or the next run); nothing
    answered is ever bought twice."""
    b = bench()
    with FakeBatchServer(fail_share=0.3, seed=5) as server:
        for _ in range(4):
            report = run_llm_scoring(b, None, SCORER, config(server.url, "--lane", "batch"),
                                     ScoreCache(tmp_path), log=None)
            if report.schedule.complete:
                break
        assert report.schedule.complete
        assert server.created >= 2  # the failed ones went again
        assert any(n > 1 for n in server.processed.values())
        assert max(server.answered.values()) == 1 and len(server.answered) == 48


def test_expired_batch_items_go_online_with_auto(fake_key: str, tmp_path: Path) -> None:
    b = bench()
    with FakeBatchServer(expire_after_s=0.45, in_progress_s=1.0) as server:
        report = run_llm_scoring(b, None, SCORER, config(server.url, "--lane", "auto"),
                                 ScoreCache(tmp_path), log=None)
        assert report.schedule.complete
        assert [x.status for x in server.batches.values()] == ["expired"]
        answered_in_batch = sum(server.answered.values())
        assert 0 < answered_in_batch < report.schedule.items
        # Each item answered once: in the batch or online, never both.
        assert answered_in_batch + sum(server.online.values()) == report.schedule.items
        assert max(server.online.values()) == 1


def test_a_large_batch_is_split(fake_key: str, tmp_path: Path) -> None:
    lines = [b"x" * 10 + b"\n"] * 25
    assert [len(g) for g in split_lines(lines, max_requests=10)] == [10, 10, 5]
    assert [len(g) for g in split_lines(lines, max_requests=100, max_bytes=55)] == [5] * 5
    with FakeBatchServer(max_requests=10) as server:
        report = run_llm_scoring(bench(), None, SCORER, config(server.url, "--lane", "batch"),
                                 ScoreCache(tmp_path), log=None)
        assert report.schedule.complete  # the refused batch was split and sent again
        assert max(server.processed.values()) == 1


def test_rate_limited_creation_is_waited_out(fake_key: str, tmp_path: Path) -> None:
    """The provider answers 429 to a second batch within its window: the lane waits out the
    Retry-After and creates it (split batches make two creations back to back)."""
    with FakeBatchServer(create_limit=1, create_window=0.3, max_requests=30) as server:
        report = run_llm_scoring(bench(), None, SCORER, config(server.url, "--lane", "batch"),
                                 ScoreCache(tmp_path), log=None)
        assert report.schedule.complete
        assert server.create_429 >= 1
        assert max(server.processed.values()) == 1


def test_online_lane_leaves_open_batch_items_alone(fake_key: str, tmp_path: Path) -> None:
    b = bench()
    cache = ScoreCache(tmp_path)
    with FakeOpenAIServer(answerer=stable_answerer()) as online:
        cfg = config(online.url)
        with pytest.raises(DryRunDone) as planned:
            run_llm_scoring(b, None, SCORER, config(online.url, "--dry-run"), cache, log=None)
        items = planned.value.plan.to_send
        assert online.stats()["total"] == 0  # a plan sends nothing
        from pluralign.jobs.llm_scoring import build_judge

        judge = build_judge(b, None, SCORER, cfg)
        keys = [it.key for it in judge.items(range(b.n_scenarios), 1)][:5]
        journal = BatchJournal(tmp_path)
        entry = journal.new(provider="openai", endpoint="x", model="fake-model",
                            scorer=judge.identity, keys=keys)
        journal.step(entry, "submitted", batch_id="batch_x")
        report = run_llm_scoring(b, None, SCORER, cfg, cache, log=None)
        assert report.schedule.not_started == 5 and not report.schedule.complete
        assert online.stats()["total"] == items - 5


def test_anthropic_message_batches(fake_key: str, tmp_path: Path) -> None:
    """A Claude model goes through Message Batches: inline requests, a forced tool for the
    schema, results by custom_id; a rerun sends nothing."""
    b = bench()
    with FakeBatchServer() as server:
        cfg = config(server.url, "--lane", "batch", "--model", "claude-test")
        report = run_llm_scoring(b, None, SCORER, cfg, ScoreCache(tmp_path), log=None)
        assert report.schedule.complete and report.schedule.completed == report.schedule.items
        assert [x.anthropic for x in server.batches.values()] == [True]
        assert max(server.processed.values()) == 1
        again = run_llm_scoring(b, None, SCORER, cfg, ScoreCache(tmp_path), log=None)
        assert again.schedule.cached == again.schedule.items and server.created == 1
    assert all(0 <= s <= 1 for s in scores(ScoreCache(tmp_path), report.identity).values())


def test_anthropic_batch_creation_cut_off_is_found_not_repeated(fake_key: str,
                                                                tmp_path: Path) -> None:
    """A run that died after creating a Message Batch but before writing its id down: the
    rerun finds it among the provider's batches (size and time) and creates none."""
    import asyncio

    from pluralign.actors.backends.batch_anthropic import AnthropicBatchClient
    from pluralign.jobs.llm_scoring import build_judge

    b = bench()
    with FakeBatchServer() as server:
        cfg = config(server.url, "--lane", "batch", "--model", "claude-test")
        judge = build_judge(b, None, SCORER, cfg)
        items = judge.items(range(b.n_scenarios), 1)
        journal = BatchJournal(tmp_path)
        entry = journal.new(provider="anthropic", endpoint="h", model="claude-test",
                            scorer=judge.identity, keys=[it.key for it in items])
        from pluralign.jobs.llm_scoring import _api_config

        client = AnthropicBatchClient(_api_config(cfg), tmp_path / ".batches")

        async def create_then_die() -> str:
            ref = await client.upload([client.line(judge.request(it), it.key) for it in items],
                                      entry.local_id)
            await client.create(ref, {})
            await client.close()
            return ref

        ref = asyncio.run(create_then_die())
        journal.step(entry, "creating", input_file_id=ref)  # the id was never written
        report = run_llm_scoring(b, None, SCORER, cfg, ScoreCache(tmp_path), log=None)
        assert report.schedule.complete and server.created == 1
        assert max(server.processed.values()) == 1
