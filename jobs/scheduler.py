"""The scheduler: send each uncached work item once, write one output per item to the cache.

It removes duplicate items and items already in the cache (content-addressed keys), keeps a
bounded number of requests in flight over a backend or a pool of actors, retries what the
backend classifies as retryable, writes results in batches, reports progress, and stops cleanly
at a token or cost budget. A crashed run resumes by rerunning: completed items are in the cache.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, TextIO

from pluralign.engine.backend import FailureKind, GenerationRequest, GenerationResult
from pluralign.engine.judges.base import AnswerError, Judge, WorkItem


class ResultStore(Protocol):
    """Where outputs go: the score cache or the choice cache."""

    def append(self, records: Sequence[Mapping[str, Any]]) -> Any: ...

    def completed_keys(
        self, benchmark: str | None = None, scorer: str | None = None
    ) -> set[str]: ...


class Dispatcher(Protocol):
    """A backend or a pool of them: one result per request, in order."""

    async def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]: ...


class StatusSink(Protocol):
    """Job status published elsewhere (Redis), e.g. ``pluralign.actors.ratelimit.RedisStatus``."""

    async def publish(self, fields: Mapping[str, Any]) -> None: ...


@dataclass(frozen=True)
class SchedulerConfig:
    """How hard to push and when to stop."""

    max_in_flight: int = 32
    """Requests in flight at once over the whole pool."""
    batch_size: int = 4
    """Requests per backend call (a pool spreads calls over actors by in-flight count)."""
    flush_rows: int = 256
    """Rows buffered before a cache write."""
    flush_seconds: float = 2.0
    """Longest time a finished row waits in memory before it is written."""
    max_attempts: int = 3
    """Times the scheduler sends one item (the backend retries inside each attempt too)."""
    retry_backoff: float = 0.5
    """Base delay before re-sending an item, seconds; doubles per attempt, full jitter."""
    token_budget: int | None = None
    """Stop sending new items once this many tokens (prompt + completion) were used."""
    cost_budget: float | None = None
    """Stop sending new items once the estimated cost reaches this (same unit as prices)."""
    price_prompt_per_1k: float = 0.0
    """Cost of 1,000 prompt tokens, for ``cost_budget``."""
    price_completion_per_1k: float = 0.0
    """Cost of 1,000 completion tokens, for ``cost_budget``."""
    progress_seconds: float = 5.0
    """Seconds between progress lines (and status updates)."""
    abort_after_fatal: int = 50
    """Stop when this many FATAL_REPLICA results arrive in a row with no success in between
    (a missing key or a dead endpoint): the rest is left unsent instead of recorded as failed."""
    secrets: tuple[str, ...] = field(default=(), repr=False)
    """Strings (API keys) scrubbed from every recorded error text; never printed."""

    def __post_init__(self) -> None:
        if self.max_in_flight < 1 or self.batch_size < 1 or self.max_attempts < 1:
            raise ValueError("max_in_flight, batch_size and max_attempts must be >= 1")


@dataclass
class ScheduleReport:
    """What a run did; ``lost`` and ``duplicated`` must be 0."""

    scorer: str
    items: int = 0
    """Distinct work items asked for."""
    duplicates: int = 0
    """Items dropped because an equal item (same key) was already listed."""
    cached: int = 0
    """Items already complete in the cache (not sent)."""
    completed: int = 0
    """Items answered and written this run."""
    failed: int = 0
    """Items written as failure records (retries ran out, or fatal for the item)."""
    not_started: int = 0
    """Items left unsent because a budget stopped the run (a rerun sends them)."""
    requests: int = 0
    """Requests sent to the backend, scheduler retries included."""
    retries: int = 0
    """Scheduler-level re-sends."""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    stopped: str | None = None
    """Why the run stopped early (``token budget`` / ``cost budget``), else None."""
    elapsed: float = 0.0
    lost: int = 0
    """Items sent that produced no output (must be 0)."""
    duplicated: int = 0
    """Items that produced more than one output (must be 0)."""
    failures: dict[str, int] = field(default_factory=dict)
    """Failure reasons of failed items, counted by kind."""

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["tokens"] = self.tokens
        return out


@dataclass(frozen=True)
class Plan:
    """Items to send after removing duplicates and what the cache already holds."""

    pending: list[WorkItem]
    items: int
    duplicates: int
    cached: int


def plan(items: Sequence[WorkItem], completed: set[str]) -> Plan:
    """Deduplicate by key (first wins) and drop items whose rows are all in ``completed``."""
    seen: set[str] = set()
    unique: list[WorkItem] = []
    for it in items:
        if it.key not in seen:
            seen.add(it.key)
            unique.append(it)
    pending = [it for it in unique if not all(k in completed for k in it.row_keys)]
    return Plan(pending, len(unique), len(items) - len(unique), len(unique) - len(pending))


def redact(text: str, secrets: Sequence[str]) -> str:
    """``text`` with every secret replaced (API keys must never reach a log or a cache)."""
    for s in secrets:
        if s:
            text = text.replace(s, "[redacted]")
    return text


def _fmt_seconds(s: float) -> str:
    if s != s or s == float("inf"):
        return "?"
    h, rem = divmod(round(s), 3600)
    m, sec = divmod(rem, 60)
    return f"{h}h{m:02d}m{sec:02d}s" if h else f"{m}m{sec:02d}s"


class _Run:
    """State of one scheduling run (one asyncio task group)."""

    def __init__(self, judge: Judge, pending: list[WorkItem], backend: Dispatcher,
                 store: ResultStore, config: SchedulerConfig, report: ScheduleReport,
                 status: StatusSink | None, log: TextIO | None) -> None:
        self.judge, self.backend, self.store, self.cfg = judge, backend, store, config
        self.report, self.status, self.log = report, status, log
        self.queue: asyncio.Queue[WorkItem | None] = asyncio.Queue()
        for it in pending:
            self.queue.put_nowait(it)
        self.total = len(pending)
        self.outstanding = len(pending)
        self.attempts: dict[str, int] = {}
        self.done: set[str] = set()
        self.buffer: list[Mapping[str, Any]] = []
        self.last_flush = time.monotonic()
        self.write_lock = asyncio.Lock()
        self.stopping: str | None = None
        self.fatal_streak = 0
        self.started = time.monotonic()
        self.finished = asyncio.Event()
        if not pending:
            self.finished.set()

    # -- bookkeeping ------------------------------------------------------------------------
    def _settle(self, item: WorkItem, rows: Sequence[Mapping[str, Any]] | None, *,
                failed: str | None = None) -> None:
        """Record the one output of ``item`` (rows, a failure, or none when not started)."""
        if item.key in self.done:
            self.report.duplicated += 1
            return
        self.done.add(item.key)
        if rows is not None:
            self.buffer.extend(rows)
            if failed is None:
                self.report.completed += 1
            else:
                self.report.failed += 1
                self.report.failures[failed] = self.report.failures.get(failed, 0) + 1
        else:
            self.report.not_started += 1
        self.outstanding -= 1
        if self.outstanding == 0:
            self.finished.set()

    def _account(self, result: GenerationResult) -> None:
        self.report.prompt_tokens += result.usage.prompt_tokens
        self.report.completion_tokens += result.usage.completion_tokens
        cfg = self.cfg
        self.report.cost = (self.report.prompt_tokens * cfg.price_prompt_per_1k
                            + self.report.completion_tokens * cfg.price_completion_per_1k) / 1000
        if cfg.token_budget is not None and self.report.tokens >= cfg.token_budget:
            self.stopping = self.stopping or "token budget"
        if cfg.cost_budget is not None and self.report.cost >= cfg.cost_budget:
            self.stopping = self.stopping or "cost budget"

    # -- outcomes ---------------------------------------------------------------------------
    def _retry_or_fail(self, item: WorkItem, kind: str, message: str,
                       retry_after: float | None = None) -> None:
        tries = self.attempts.get(item.key, 0)
        if tries < self.cfg.max_attempts:
            self.report.retries += 1
            ceiling = self.cfg.retry_backoff * (2 ** (tries - 1))
            delay = max(retry_after or 0.0, random.uniform(0.0, ceiling))
            asyncio.get_running_loop().call_later(delay, self.queue.put_nowait, item)
            return
        reason = redact(f"{kind}: {message}", self.cfg.secrets)[:500]
        self._settle(item, self.judge.failure_rows(item, reason), failed=kind)

    def _handle(self, item: WorkItem, result: GenerationResult) -> None:
        self._account(result)
        failure = result.failure
        if failure is not None and failure.kind is FailureKind.FATAL_REPLICA:
            self.fatal_streak += 1
            if self.fatal_streak >= self.cfg.abort_after_fatal and not self.stopping:
                self.stopping = redact(f"backend failing: {failure.message}",
                                       self.cfg.secrets)[:300]
        elif failure is None:
            self.fatal_streak = 0
        if failure is None:
            try:
                rows = self.judge.parse(item, result)
            except AnswerError as e:
                self._retry_or_fail(item, FailureKind.BAD_ANSWER.value, str(e))
                return
            self._settle(item, rows)
        elif failure.kind is FailureKind.FATAL_ITEM:
            self.attempts[item.key] = self.cfg.max_attempts
            self._retry_or_fail(item, failure.kind.value, failure.message)
        else:
            self._retry_or_fail(item, failure.kind.value, failure.message, failure.retry_after)

    # -- workers ----------------------------------------------------------------------------
    async def _next_batch(self) -> list[WorkItem] | None:
        first = await self.queue.get()
        if first is None:
            return None
        batch = [first]
        while len(batch) < self.cfg.batch_size:
            try:
                nxt = self.queue.get_nowait()
            except asyncio.QueueEmpty:
                break
            if nxt is None:  # keep the stop signal for the next worker
                self.queue.put_nowait(None)
                break
            batch.append(nxt)
        return batch

    async def worker(self) -> None:
        while True:
            batch = await self._next_batch()
            if batch is None:
                return
            if self.stopping:
                for it in batch:
                    self._settle(it, None)
                continue
            await self._send(batch)
            await self._maybe_flush()

    async def _send(self, batch: list[WorkItem]) -> None:
        requests, sendable = [], []
        for it in batch:
            self.attempts[it.key] = self.attempts.get(it.key, 0) + 1
            try:
                requests.append(self.judge.request(it))
            except Exception as e:  # a prompt that cannot be built is fatal for that item only
                self.attempts[it.key] = self.cfg.max_attempts
                self._retry_or_fail(it, "request", f"{type(e).__name__}: {e}")
                continue
            sendable.append(it)
        batch = sendable
        if not batch:
            return
        self.report.requests += len(requests)
        try:
            results = await self.backend.generate(requests)
            if len(results) != len(requests):
                raise RuntimeError(f"backend returned {len(results)} results for "
                                   f"{len(requests)} requests")
        except asyncio.CancelledError:
            raise
        except Exception as e:  # a dead actor or a broken pool: every item is retried
            for it in batch:
                self._retry_or_fail(it, "dispatch", f"{type(e).__name__}: {e}")
            return
        by_id = {r.id: r for r in results}
        for it, req, res in zip(batch, requests, results, strict=True):
            self._handle(it, by_id.get(req.id, res))

    # -- writing and progress ---------------------------------------------------------------
    async def _maybe_flush(self, force: bool = False) -> None:
        due = time.monotonic() - self.last_flush >= self.cfg.flush_seconds
        if self.buffer and (force or due or len(self.buffer) >= self.cfg.flush_rows):
            async with self.write_lock:
                rows, self.buffer = self.buffer, []
                self.last_flush = time.monotonic()
                if rows:
                    await asyncio.to_thread(self.store.append, rows)

    async def ticker(self) -> None:
        while not self.finished.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.finished.wait(), self.cfg.progress_seconds)
            if self.finished.is_set():
                return  # the final line is printed by run_schedule
            await self._maybe_flush()
            await self.progress()

    def progress_fields(self) -> dict[str, Any]:
        r = self.report
        elapsed = time.monotonic() - self.started
        settled = r.completed + r.failed
        rate = settled / elapsed if elapsed > 0 else 0.0
        remaining = self.total - settled - r.not_started
        eta = remaining / rate if rate > 0 else float("inf")
        return {
            "scorer": r.scorer, "total": self.total, "done": settled, "completed": r.completed,
            "failed": r.failed, "cached": r.cached, "rate": round(rate, 3),
            "eta_s": None if eta == float("inf") else round(eta, 1),
            "tokens": r.tokens, "cost": round(r.cost, 6), "requests": r.requests,
            "stopped": self.stopping, "state": "running",
        }

    async def progress(self, final: bool = False) -> None:
        f = self.progress_fields()
        if final:
            f["state"] = "stopped" if self.stopping else "done"
        if self.log is not None:
            pct = 100.0 * f["done"] / self.total if self.total else 100.0
            eta = _fmt_seconds(f["eta_s"] if f["eta_s"] is not None else float("inf"))
            cached = f", {f['cached']} cached" if f["cached"] else ""
            print(f"[{f['scorer']}] {f['done']}/{self.total} items ({pct:.1f}%){cached}, "
                  f"{f['failed']} failed, {f['rate']:.2f} items/s, ETA {eta}, "
                  f"{f['tokens']} tokens" + (f", stopping: {self.stopping}"
                                             if self.stopping else ""),
                  file=self.log, flush=True)
        if self.status is not None:
            try:
                await self.status.publish(f)
            except Exception as e:  # status is advisory: never stop scoring for it
                if self.log is not None:
                    print(f"status update failed: {type(e).__name__}", file=self.log)


async def run_schedule(
    judge: Judge,
    items: Sequence[WorkItem],
    backend: Dispatcher,
    store: ResultStore,
    config: SchedulerConfig | None = None,
    *,
    benchmark: str | None = None,
    status: StatusSink | None = None,
    log: TextIO | None = sys.stderr,
) -> ScheduleReport:
    """Send every item not yet in ``store`` through ``backend``; write one output per item.

    ``benchmark`` (the benchmark identity) narrows the cache lookup of completed keys.
    """
    cfg = config or SchedulerConfig()
    completed = await asyncio.to_thread(store.completed_keys, benchmark, judge.identity)
    p = plan(items, completed)
    report = ScheduleReport(judge.identity, items=p.items, duplicates=p.duplicates,
                            cached=p.cached)
    run = _Run(judge, p.pending, backend, store, cfg, report, status, log)
    n_workers = max(1, min(len(p.pending), -(-cfg.max_in_flight // cfg.batch_size)))
    workers = [asyncio.create_task(run.worker()) for _ in range(n_workers)]
    ticker = asyncio.create_task(run.ticker())
    finished = asyncio.create_task(run.finished.wait())
    try:
        # A worker only ends early by raising (e.g. the cache cannot be written): surface it.
        done, _ = await asyncio.wait([finished, *workers], return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if task is not finished and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
    finally:
        finished.cancel()
        for _ in workers:
            run.queue.put_nowait(None)
        await asyncio.gather(*workers, return_exceptions=True)
        ticker.cancel()
        await asyncio.gather(ticker, return_exceptions=True)
        await run._maybe_flush(force=True)
    report.stopped = run.stopping
    report.elapsed = time.monotonic() - run.started
    report.lost = len(p.pending) - len(run.done)
    await run.progress(final=True)
    return report
