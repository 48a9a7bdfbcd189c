"""The scheduler: one output per item, retries only where classified retryable, failure records
only when attempts run out, budgets, resume after a crash, and surviving a dead actor."""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from pluralign.engine.data.synthetic import synthetic_benchmark
from pluralign.engine.judges import ComparativeJudge, JudgeSettings
from pluralign.engine.judges.fake_answerer import label_answerer
from pluralign.engine.run.backend import (
    Failure,
    FailureKind,
    GenerationRequest,
    GenerationResult,
    Sample,
    Usage,
)
from pluralign.engine.run.scheduler import SchedulerConfig, plan, redact, run_schedule
from pluralign.engine.store.cache import ScoreCache
from tests.fake_openai import FAKE_KEY, FAKE_KEY_ENV, fake_key, make_fake_server

__all__ = ["fake_key", "make_fake_server"]

REPO = Path(__file__).resolve().parents[2]
FAST = SchedulerConfig(max_in_flight=8, batch_size=2, retry_backoff=0.01, flush_rows=16,
                       flush_seconds=0.2, progress_seconds=0.2)


def bench_of(n: int = 6, seed: int = 0):
    return synthetic_benchmark(n_scenarios=n, responses=(2, 3), n_attributes=3, n_levels=5,
                               seed=seed, name="sched")


def body_of(req: GenerationRequest) -> dict[str, Any]:
    return {"messages": [{"role": m.role, "content": m.content} for m in req.messages]}


class ScriptedBackend:
    """In-process backend: answers from labels unless ``script(request, nth_call)`` says
    otherwise (a GenerationResult to return, or an exception to raise for the whole batch)."""

    name = "scripted"

    def __init__(self, bench, script: Callable[[GenerationRequest, int], Any] | None = None):
        self.answer = label_answerer(bench, noise=0.05)
        self.script = script
        self.calls: Counter[str] = Counter()

    async def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        out = []
        for r in requests:
            self.calls[r.id] += 1
            special = self.script(r, self.calls[r.id]) if self.script else None
            if isinstance(special, BaseException):
                raise special
            out.append(special or GenerationResult(
                r.id, samples=(Sample(self.answer(body_of(r))),), usage=Usage(100, 20)))
        await asyncio.sleep(0)
        return out

    async def close(self) -> None:
        return None


def run(judge, backend, cache, config=FAST, **kw) -> Any:
    items = judge.items(range(judge.bench.n_scenarios), kw.pop("samples", 1))
    return asyncio.run(run_schedule(judge, items, backend, cache, config,
                                    benchmark=judge.bench.identity, log=kw.pop("log", None),
                                    **kw))


def rows_by_key(cache: ScoreCache) -> dict[str, list[dict[str, Any]]]:
    import pyarrow.parquet as pq

    out: dict[str, list[dict[str, Any]]] = {}
    for part in sorted(Path(cache.root).rglob("*.parquet")):
        for row in pq.read_table(part).to_pylist():
            if "key" in row and "attribute" in row:
                out.setdefault(row["key"], []).append(row)
    return out


# ---------------------------------------------------------------- planning


def test_plan_removes_duplicates_and_cached_items() -> None:
    judge = ComparativeJudge(bench_of(3), JudgeSettings(model="m"))
    items = judge.items(range(3), 1)
    doubled = items + items[:4]
    done = set(items[0].row_keys) | {items[1].row_keys[0]}  # item 1 only half cached
    p = plan(doubled, done)
    assert p.items == len(items) and p.duplicates == 4 and p.cached == 1
    assert [it.key for it in p.pending] == [it.key for it in items[1:]]


def test_redact_replaces_every_secret() -> None:
    assert redact("a sk-1 b sk-1 c", ["sk-1", ""]) == "a [redacted] b [redacted] c"


# ---------------------------------------------------------------- outputs and retries


def test_every_item_gets_exactly_one_output_in_the_cache(tmp_path: Path) -> None:
    bench = bench_of(8)
    judge = ComparativeJudge(bench, JudgeSettings(model="m"))
    cache = ScoreCache(tmp_path)
    backend = ScriptedBackend(bench)
    report = run(judge, backend, cache, samples=2)
    n_items = 8 * 3 * 2
    assert report.items == n_items and report.completed == n_items
    assert report.failed == report.lost == report.duplicated == report.not_started == 0
    assert set(backend.calls.values()) == {1} and len(backend.calls) == n_items
    rows = rows_by_key(cache)
    expected = {k for it in judge.items(range(8), 2) for k in it.row_keys}
    assert set(rows) == expected and all(len(v) == 1 for v in rows.values())
    assert report.prompt_tokens == 100 * n_items and report.completion_tokens == 20 * n_items
    again = ScriptedBackend(bench)
    second = run(judge, again, cache, samples=2)
    assert second.cached == n_items and second.requests == 0 and not again.calls


def test_failure_records_only_where_attempts_run_out(tmp_path: Path) -> None:
    bench = bench_of(4)
    judge = ComparativeJudge(bench, JudgeSettings(model="m"))
    items = judge.items(range(4), 1)
    always, twice, garbage, fatal = (items[i].key for i in (0, 1, 2, 3))
    transient = Failure(FailureKind.TRANSIENT, "503 from upstream")

    def script(req: GenerationRequest, nth: int) -> Any:
        if req.id == always or (req.id == twice and nth <= 2):
            return GenerationResult(req.id, failure=transient)
        if req.id == garbage:
            return GenerationResult(req.id, samples=(Sample("{not json"),))
        if req.id == fatal:
            return GenerationResult(req.id, failure=Failure(FailureKind.FATAL_ITEM, "too long"))
        return None

    backend = ScriptedBackend(bench, script)
    cache = ScoreCache(tmp_path)
    report = run(judge, backend, cache)
    assert backend.calls[always] == FAST.max_attempts == backend.calls[garbage]
    assert backend.calls[twice] == 3 and backend.calls[fatal] == 1
    assert report.failed == 3 and report.completed == len(items) - 3
    assert report.failures == {"transient": 1, "bad_answer": 1, "fatal_item": 1}
    rows = rows_by_key(cache)
    errors = {it.key: rows[it.row_keys[0]][0]["error"] for it in items}
    assert errors[always].startswith("transient: 503")
    assert errors[garbage].startswith("bad_answer:")
    assert errors[fatal] == "fatal_item: too long"
    assert errors[twice] is None
    assert all(e is None for k, e in errors.items() if k not in (always, garbage, fatal))
    # failed items are not complete: a rerun sends exactly those again
    rerun = ScriptedBackend(bench)
    second = run(judge, rerun, cache)
    assert set(rerun.calls) == {always, garbage, fatal} and second.completed == 3


def test_a_batch_that_raises_is_retried_not_lost(tmp_path: Path) -> None:
    bench = bench_of(5)
    judge = ComparativeJudge(bench, JudgeSettings(model="m"))
    boom = {"left": 3}

    def script(req: GenerationRequest, nth: int) -> Any:
        if boom["left"] > 0:
            boom["left"] -= 1
            return RuntimeError("actor died")
        return None

    report = run(judge, ScriptedBackend(bench, script), ScoreCache(tmp_path))
    assert report.completed == report.items == 15
    assert report.failed == report.lost == report.duplicated == 0 and report.retries >= 3


def test_token_budget_stops_cleanly_and_a_rerun_finishes(tmp_path: Path) -> None:
    bench = bench_of(10)
    judge = ComparativeJudge(bench, JudgeSettings(model="m"))
    cache = ScoreCache(tmp_path)
    cfg = SchedulerConfig(max_in_flight=2, batch_size=1, token_budget=600, flush_seconds=0.1,
                          progress_seconds=0.2)
    first = ScriptedBackend(bench)
    report = run(judge, first, cache, cfg)
    assert report.stopped == "token budget"
    assert report.tokens >= 600 and report.completed < report.items
    assert report.completed + report.failed + report.not_started == report.items
    assert report.lost == report.duplicated == 0
    written = {k for k, v in rows_by_key(cache).items() if v[0]["error"] is None}
    second = ScriptedBackend(bench)
    rest = run(judge, second, cache)
    assert rest.completed == report.items - report.completed and rest.stopped is None
    resent = {it.key for it in judge.items(range(10), 1) if set(it.row_keys) <= written}
    assert not resent & set(second.calls)


def test_cost_budget_uses_prices(tmp_path: Path) -> None:
    bench = bench_of(6)
    judge = ComparativeJudge(bench, JudgeSettings(model="m"))
    cfg = SchedulerConfig(max_in_flight=1, batch_size=1, cost_budget=0.5,
                          price_prompt_per_1k=1.0, price_completion_per_1k=5.0)
    report = run(judge, ScriptedBackend(bench), ScoreCache(tmp_path), cfg)
    # each item costs 100/1000*1 + 20/1000*5 = 0.2: the third crosses 0.5
    assert report.stopped == "cost budget" and report.completed == 3
    assert report.cost == pytest.approx(0.6)


def test_a_dead_backend_stops_the_run_instead_of_failing_everything(tmp_path: Path) -> None:
    bench = bench_of(20)
    judge = ComparativeJudge(bench, JudgeSettings(model="m"))
    dead = Failure(FailureKind.FATAL_REPLICA, "environment variable KEY is not set")
    backend = ScriptedBackend(bench, lambda r, n: GenerationResult(r.id, failure=dead))
    cfg = SchedulerConfig(max_in_flight=2, batch_size=1, abort_after_fatal=5,
                          retry_backoff=0.01)
    report = run(judge, backend, ScoreCache(tmp_path), cfg)
    assert report.stopped is not None and "KEY is not set" in report.stopped
    assert report.not_started > 0 and report.lost == 0
    assert report.completed + report.failed + report.not_started == report.items


def test_secrets_never_reach_failure_rows_or_progress(tmp_path: Path) -> None:
    bench = bench_of(3)
    judge = ComparativeJudge(bench, JudgeSettings(model="m"))
    leak = Failure(FailureKind.FATAL_ITEM, f"rejected key {FAKE_KEY}")
    backend = ScriptedBackend(bench, lambda r, n: GenerationResult(r.id, failure=leak))
    cfg = SchedulerConfig(secrets=(FAKE_KEY,), progress_seconds=0.05)
    log = io.StringIO()
    cache = ScoreCache(tmp_path)
    report = run(judge, backend, cache, cfg, log=log)
    assert report.failed == report.items
    assert FAKE_KEY not in log.getvalue() and FAKE_KEY not in json.dumps(report.as_dict())
    for part in Path(tmp_path).rglob("*.parquet"):
        assert FAKE_KEY.encode() not in part.read_bytes()
    errors = {r[0]["error"] for r in rows_by_key(cache).values()}
    assert errors == {"fatal_item: rejected key [redacted]"}


def test_progress_reports_rate_eta_failures_and_publishes_status(tmp_path: Path) -> None:
    bench = bench_of(6)
    judge = ComparativeJudge(bench, JudgeSettings(model="m"))

    class Sink:
        def __init__(self) -> None:
            self.seen: list[dict[str, Any]] = []

        async def publish(self, fields: Any) -> None:
            self.seen.append(dict(fields))

    class Slow(ScriptedBackend):
        async def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
            await asyncio.sleep(0.05)
            return await super().generate(requests)

    sink, log = Sink(), io.StringIO()
    cfg = SchedulerConfig(max_in_flight=2, batch_size=1, progress_seconds=0.1)
    report = run(judge, Slow(bench), ScoreCache(tmp_path), cfg, log=log, status=sink)
    lines = log.getvalue().splitlines()
    assert len(lines) >= 2 and all("items/s" in ln and "ETA" in ln for ln in lines)
    assert f"{report.items}/{report.items} items (100.0%), 0 failed" in lines[-1]
    assert sink.seen[-1]["state"] == "done" and sink.seen[-1]["done"] == report.items
    assert any(s["state"] == "running" for s in sink.seen)
    assert {"rate", "eta_s", "failed", "tokens"} <= set(sink.seen[0])


def test_a_watched_run_shows_a_bar_with_failures_and_retries_then_the_final_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bench = bench_of(6)
    judge = ComparativeJudge(bench, JudgeSettings(model="m"))
    items = judge.items(range(bench.n_scenarios), 1)
    fatal, flaky = items[0].key, items[1].key

    def script(req: GenerationRequest, nth: int) -> Any:
        if req.id == fatal:
            return GenerationResult(req.id, failure=Failure(FailureKind.FATAL_ITEM, "too long"))
        return None

    class Slow(ScriptedBackend):
        async def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
            await asyncio.sleep(0.06)  # 18 items one at a time: over a second, so bars redraw
            out = await super().generate(requests)
            # the client retried this one itself (a scheduler retry would go to the queue's end)
            return [replace(r, attempts=2) if r.id == flaky else r for r in out]

    screen = io.StringIO()
    monkeypatch.setenv("PLURALIGN_PROGRESS", "1")
    monkeypatch.setattr(sys, "stderr", screen)  # standard error, where the bar goes
    cfg = SchedulerConfig(max_in_flight=1, batch_size=1, retry_backoff=0.0,
                          progress_seconds=0.05)
    report = asyncio.run(run_schedule(judge, items, Slow(bench, script), ScoreCache(tmp_path),
                                      cfg, benchmark=bench.identity))
    assert report.failed == 1 and report.resent == 1 and report.completed == len(items) - 1
    out = screen.getvalue()
    frames = [f for f in out.split("\r") if "%|" in f]  # tqdm redraws its line after a \r
    assert any("1 failed, 1 retries" in f and " tokens" in f for f in frames), out
    lines = [ln for ln in out.split("\n") if "items/s" in ln]
    assert len(lines) == 1  # the bar replaced the text lines; the summary is still printed
    assert f"{len(items)}/{len(items)} items (100.0%), 1 failed, 1 retries" in lines[0]
    log = io.StringIO()  # a log stream that is not standard error keeps its text lines
    run(judge, Slow(bench), ScoreCache(tmp_path / "again"), cfg, log=log)
    assert "%|" not in log.getvalue() and log.getvalue().count("items/s") >= 2


# ---------------------------------------------------------------- crash of the driver


DRIVER = """
import sys, argparse
from pluralign.engine.store.cache import ScoreCache
from pluralign.engine.data.sources import load_benchmark
from pluralign.jobs.configs import LLMConfig
from pluralign.jobs.cli.args import add_llm_args as add_backend_args
from pluralign.jobs.cli.args import llm_config
from pluralign.jobs.llm_scoring import run_llm_scoring
p = argparse.ArgumentParser(); add_backend_args(p)
config = llm_config(p.parse_args(sys.argv[3:]))
bench = load_benchmark(sys.argv[1], "eval")
run_llm_scoring(bench, None, "comparative-regression", config, ScoreCache(sys.argv[2]))
"""


def backend_args(url: str, *extra: str) -> list[str]:
    return ["--model", "fake-model", "--base-url", url, "--api-key-env", FAKE_KEY_ENV,
            "--no-ray", "--zero-shot", "--concurrency", "2", *extra]


@pytest.mark.slow
def test_killing_the_driver_then_rerunning_resends_no_completed_item(
    tmp_path: Path, fake_key: str, make_fake_server: Any
) -> None:
    from pluralign.engine.data.sources import load_benchmark
    from pluralign.jobs.llm_scoring import build_judge

    spec = "synthetic:S=40,R=2-2,A=3,L=5,seed=4"
    bench = load_benchmark(spec, "eval")
    # 2 in flight x 0.1 s: the first batch write (after 2 s) holds about a third of the items
    server = make_fake_server(answerer=label_answerer(bench), latency=0.1)
    cache_dir = tmp_path / "cache"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-c", DRIVER, spec, str(cache_dir), *backend_args(server.url)],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not list(cache_dir.rglob("part-*.parquet")):
        assert proc.poll() is None, proc.stdout.read().decode()[-2000:] if proc.stdout else ""
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    cache = ScoreCache(cache_dir)
    args = _parse(backend_args(server.url))
    judge = build_judge(bench, None, "comparative-regression", args)
    done = cache.completed_keys(bench.identity, judge.identity)
    finished = {it.key for it in judge.items(range(bench.n_scenarios), 1)
                if set(it.row_keys) <= done}
    assert 0 < len(finished) < bench.n_scenarios * 3

    from pluralign.actors.backends.api_client import OpenAIBackend

    sent: list[str] = []

    class Recording(OpenAIBackend):
        async def generate(self, requests: Sequence[GenerationRequest]) -> Any:
            sent.extend(r.id for r in requests)
            return await super().generate(requests)

    async def rerun() -> Any:
        backend = Recording(_api_config(args))
        await backend.start()
        try:
            items = judge.items(range(bench.n_scenarios), 1)
            return await run_schedule(judge, items, backend, cache, FAST,
                                      benchmark=bench.identity, log=None)
        finally:
            await backend.close()

    report = asyncio.run(rerun())
    assert sent and not finished & set(sent)
    assert report.cached == len(finished)
    assert report.completed == bench.n_scenarios * 3 - len(finished)
    assert report.lost == report.duplicated == 0


def _parse(argv: list[str]) -> Any:
    import argparse

    from pluralign.jobs.cli.args import add_llm_args as add_backend_args
    from pluralign.jobs.cli.args import llm_config

    p = argparse.ArgumentParser()
    add_backend_args(p)
    return llm_config(p.parse_args(argv))


def _api_config(args: Any) -> Any:
    from pluralign.jobs.llm_scoring import _api_config as make

    return make(args)


# ---------------------------------------------------------------- a dead actor (Ray)


# `ray_local` (tests/conftest.py): a loopback runtime for this module, the planted key in the
# environment its actors inherit.


@pytest.mark.ray
@pytest.mark.slow
def test_killing_an_api_client_actor_mid_sweep_loses_nothing(
    ray_local: Any, tmp_path: Path, fake_key: str, make_fake_server: Any
) -> None:
    from pluralign.actors.backends.api_client import APIClientConfig
    from pluralign.actors.pool import api_client_actors

    bench = bench_of(20, seed=2)
    server = make_fake_server(answerer=label_answerer(bench), latency=0.2)
    judge = ComparativeJudge(bench, JudgeSettings(model="fake-model"))
    items = judge.items(range(bench.n_scenarios), 1)
    cache = ScoreCache(tmp_path)
    config = APIClientConfig(base_url=server.url, model="fake-model", api_key_env=FAKE_KEY_ENV,
                             max_concurrency=4)

    async def main() -> Any:
        pool = api_client_actors(config, 2)
        await pool.start()
        try:
            task = asyncio.create_task(run_schedule(
                judge, items, pool, cache, SchedulerConfig(max_in_flight=8, batch_size=2),
                benchmark=bench.identity, log=None))
            while server.stats()["total"] < 10:
                await asyncio.sleep(0.02)
            ray_local.kill(pool.actors()[0], no_restart=True)
            report = await task
            return report, pool.reroutes
        finally:
            await pool.close()

    report, reroutes = asyncio.run(main())
    assert report.completed == len(items) and report.failed == 0
    assert report.lost == report.duplicated == 0
    rows = rows_by_key(cache)
    assert {k for it in items for k in it.row_keys} == set(rows)
    assert all(len(v) == 1 for v in rows.values())
    assert reroutes >= 1


# ---------------------------------------------------------------- one budget, interrupts, claims


class CountingBackend(ScriptedBackend):
    """Reports ``sends_per_call`` sends per request (as a retrying client would) and fails
    every request transiently: the scheduler must stop at ``max_sends`` in total."""

    def __init__(self, bench, sends_per_call: int) -> None:
        super().__init__(bench)
        self.per_call = sends_per_call
        self.budgets: list[int | None] = []
        self.sent: Counter[str] = Counter()

    async def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        out = []
        for r in requests:
            self.budgets.append(r.max_sends)
            n = min(self.per_call, r.max_sends or self.per_call)
            self.sent[r.id] += n
            out.append(GenerationResult(r.id, failure=Failure(FailureKind.TRANSIENT, "503"),
                                        attempts=n))
        await asyncio.sleep(0)
        return out


@pytest.mark.parametrize("per_call", [1, 2, 4])
def test_an_item_is_sent_at_most_max_sends_times_whoever_retries(tmp_path: Path,
                                                                  per_call: int) -> None:
    bench = bench_of(3)
    judge = ComparativeJudge(bench, JudgeSettings(model="m"))
    backend = CountingBackend(bench, per_call)
    cfg = SchedulerConfig(max_in_flight=4, batch_size=2, retry_backoff=0.0, max_attempts=10,
                          max_sends=5, flush_seconds=0.1, progress_seconds=0.1)
    report = run(judge, backend, ScoreCache(tmp_path), cfg)
    assert set(backend.sent.values()) == {5}  # exactly the budget, never more
    assert report.sends == 5 * report.items and report.resent == 4 * report.items
    assert backend.budgets[0] == 5 and min(b for b in backend.budgets if b) >= 1
    assert report.failed == report.items and not report.complete


def test_a_truncated_answer_is_failed_at_once_with_its_own_kind(tmp_path: Path) -> None:
    bench = bench_of(2)
    judge = ComparativeJudge(bench, JudgeSettings(model="m"))
    cut = Failure(FailureKind.TRUNCATED, "answer truncated at max_tokens = 64: raise --max-tokens")
    backend = ScriptedBackend(bench, lambda r, n: GenerationResult(r.id, failure=cut))
    report = run(judge, backend, ScoreCache(tmp_path))
    assert set(backend.calls.values()) == {1}
    assert report.failures == {"truncated": report.items}
    assert "raise --max-tokens" in report.failure_examples["truncated"]


def test_an_interrupt_stops_sending_and_writes_every_answer_received(tmp_path: Path) -> None:
    bench = bench_of(40)
    judge = ComparativeJudge(bench, JudgeSettings(model="m"))
    stop: list[Any] = []

    class Slow(ScriptedBackend):
        async def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
            if sum(self.calls.values()) >= 10 and stop:
                stop.pop()("interrupted")  # the signal arrives while this batch is in flight
            out = await super().generate(requests)
            await asyncio.sleep(0.05)
            return out

    backend = Slow(bench)
    cache = ScoreCache(tmp_path)
    cfg = SchedulerConfig(max_in_flight=4, batch_size=2, flush_seconds=60, grace_seconds=2.0,
                          progress_seconds=60)
    report = run(judge, backend, cache, cfg, on_start=stop.append)
    sent_before = sum(backend.calls.values())
    assert report.stop_kind == "interrupted" and not report.complete
    assert report.completed == sent_before  # answers in flight at the interrupt were kept
    assert report.completed + report.not_started == report.items and report.lost == 0
    # Written despite a flush interval longer than the run: the final flush holds them all.
    done = ScoreCache(tmp_path).completed_keys(bench.identity, judge.identity)
    items = judge.items(range(bench.n_scenarios), 1)
    assert sum(all(k in done for k in it.row_keys) for it in items) == report.completed > 0
    rerun = ScriptedBackend(bench)
    second = run(judge, rerun, cache)
    assert sum(rerun.calls.values()) == report.not_started and second.complete


def test_two_schedulers_on_one_cache_with_claims_send_each_item_once(tmp_path: Path) -> None:
    from pluralign.engine.store.claims import Claims

    bench = bench_of(30)
    judge = ComparativeJudge(bench, JudgeSettings(model="m"))
    items = judge.items(range(bench.n_scenarios), 1)
    sent: Counter[str] = Counter()

    class Shared(ScriptedBackend):
        async def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
            for r in requests:
                sent[r.id] += 1
            await asyncio.sleep(0.02)
            return await super().generate(requests)

    async def both() -> list[Any]:
        cfg = SchedulerConfig(max_in_flight=4, batch_size=2, flush_seconds=0.05,
                              progress_seconds=0.2, claim_poll_seconds=0.05)
        runs = [run_schedule(judge, items, Shared(bench), ScoreCache(tmp_path), cfg,
                             benchmark=bench.identity, log=None, claims=Claims(tmp_path))
                for _ in range(2)]
        return list(await asyncio.gather(*runs))

    a, b = asyncio.run(both())
    assert max(sent.values()) == 1 and len(sent) == len(items)
    assert a.completed + b.completed == len(items)
    assert a.elsewhere + b.elsewhere + a.completed + b.completed >= len(items)
    assert a.complete and b.complete and a.bought_twice == b.bought_twice == 0
    assert not list((tmp_path / ".claims").glob("*.claim"))


def test_a_claim_of_a_dead_process_is_taken_over(tmp_path: Path) -> None:
    from pluralign.engine.store.claims import Claims

    mine, other = Claims(tmp_path), Claims(tmp_path)
    assert other.try_claim("k") and not mine.try_claim("k") and mine.claimed_elsewhere("k")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    path = tmp_path / ".claims" / "k.claim"
    info = json.loads(path.read_text())
    path.write_text(json.dumps({**info, "owner": "gone", "pid": int(dead.stdout)}))
    assert mine.try_claim("k")  # its owner is dead: taken over
    stale = Claims(tmp_path, lease_seconds=0.0)
    assert stale.try_claim("k")  # a lease that ran out is stale too


class CountingCache(ScoreCache):
    """A score cache that counts the reads of its completed keys."""

    reads = 0

    def completed_keys(self, benchmark: str | None = None, scorer: str | None = None) -> set[str]:
        self.reads += 1
        return super().completed_keys(benchmark, scorer)


def test_the_cache_is_read_once_when_no_other_process_writes(tmp_path: Path) -> None:
    from pluralign.engine.store.claims import Claims

    bench = bench_of(20)
    judge = ComparativeJudge(bench, JudgeSettings(model="m"))
    cache = CountingCache(tmp_path)
    report = run(judge, ScriptedBackend(bench), cache, claims=Claims(tmp_path))
    assert report.complete and report.completed == report.items > 0
    assert len(cache.parts()) > 1  # several writes of its own: none of them read back
    assert cache.reads == 1


def test_an_item_another_process_stored_meanwhile_is_not_sent(tmp_path: Path) -> None:
    """A part written by someone else after the run planned is seen before its items are sent
    (the keys kept in memory are read again when a part this run did not write appears)."""
    from pluralign.engine.store.claims import Claims

    bench = bench_of(8)
    judge = ComparativeJudge(bench, JudgeSettings(model="m"))
    items = judge.items(range(bench.n_scenarios), 1)
    last = items[-1]
    answer = label_answerer(bench, noise=0.05)

    def elsewhere(req: GenerationRequest, n: int) -> None:
        if req.id == items[0].key:  # the first send: another writer stores the last item
            rows = judge.parse(last, GenerationResult(last.key, samples=(
                Sample(answer(body_of(judge.request(last)))),), usage=Usage(1, 1)))
            ScoreCache(tmp_path).append(rows)
        return None

    backend = ScriptedBackend(bench, elsewhere)
    cfg = replace(FAST, max_in_flight=1, batch_size=1)
    cache = CountingCache(tmp_path)
    report = run(judge, backend, cache, cfg, claims=Claims(tmp_path))
    assert report.complete and report.elsewhere == 1 and report.completed == len(items) - 1
    assert last.key not in backend.calls and backend.calls[items[0].key] == 1
    assert cache.reads >= 2  # read again once the other part appeared
