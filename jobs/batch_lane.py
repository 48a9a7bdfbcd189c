"""The lanes an LLM run sends through: online (the scheduler), a provider's Batch API, or auto
(batches first, online for what a batch could not answer).

The batch lane never pays twice. Only uncached items that no other process holds go into a
batch; each batch's items are written to the batch journal in the cache folder before anything
is uploaded, its input file id before the batch is created, and its id as soon as the provider
names it, so a rerun after a kill -9 at any point reattaches (finding a batch whose creation
was cut off by its input file) instead of submitting again; an online run on the same cache
leaves those items alone. Results go through the cache's one part store as each batch is
downloaded. Items a batch could not answer (expired, cancelled, a 5xx, a bad answer) go to the
next batch, or online with ``auto``; a Ctrl-C leaves submitted batches running and says how to
reattach (or ``cancel_batches`` cancels them and keeps what they finished).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from pluralign.actors.backends.api_client import APIClientConfig
from pluralign.actors.backends.batch_anthropic import AnthropicBatchClient, is_anthropic
from pluralign.actors.backends.batch_journal import BATCHES_DIR, BatchEntry, BatchJournal
from pluralign.actors.backends.batch_openai import (
    MAX_BYTES,
    MAX_REQUESTS,
    BatchAPIError,
    BatchClient,
    BatchView,
    OpenAIBatchClient,
    split_lines,
)
from pluralign.engine.errors import InputError, ScoringInterrupted
from pluralign.engine.judges.base import AnswerError, Task, WorkItem
from pluralign.engine.run.backend import FailureKind, GenerationRequest, GenerationResult
from pluralign.engine.run.scheduler import ResultStore, ScheduleReport, plan
from pluralign.engine.store.claims import Claims
from pluralign.engine.store.manifest import endpoint_host
from pluralign.jobs.configs import LLMConfig
from pluralign.jobs.prefix_order import prefix_order

Online = Callable[[Sequence[WorkItem]], Awaitable[ScheduleReport]]
"""Runs the online lane (the scheduler) over some items."""

_FINAL = (FailureKind.FATAL_ITEM, FailureKind.TRUNCATED)
"""Failures that buy the same answer again: recorded, never resent."""


@dataclass
class BatchLaneReport:
    """What the batch lane did."""

    created: int = 0
    """Batches created at the provider by this run."""
    reattached: int = 0
    """Batches found open in the journal and followed to the end by this run."""
    items_per_batch: list[int] = field(default_factory=list)
    submitted: int = 0
    """Items put into batches created by this run."""
    completed: int = 0
    failed: int = 0
    leftover: list[WorkItem] = field(default_factory=list)
    """Items no batch answered (for the online lane with ``auto``)."""
    states: Counter[str] = field(default_factory=Counter)
    """Final status of each batch followed."""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    left_running: list[str] = field(default_factory=list)
    """Batch ids left running at the provider (interrupted)."""
    failures: dict[str, int] = field(default_factory=dict)
    failure_examples: dict[str, str] = field(default_factory=dict)


class BatchLane:
    """Sends a task's items through a provider Batch API and writes what comes back."""

    def __init__(self, task: Task, store: ResultStore, client: BatchClient,
                 cache_root: Path, *, benchmark: str | None, endpoint: str, model: str,
                 poll_seconds: float = 30.0, log: TextIO | None = None,
                 max_requests: int = MAX_REQUESTS, max_bytes: int = MAX_BYTES,
                 rounds: int = 3) -> None:
        self.task, self.store, self.client = task, store, client
        self.journal = BatchJournal(cache_root)
        self.claims = Claims(cache_root, lease_seconds=max(60.0, 4 * poll_seconds))
        self.benchmark, self.endpoint, self.model = benchmark, endpoint, model
        self.poll, self.log = poll_seconds, log
        self.max_requests, self.max_bytes, self.rounds = max_requests, max_bytes, rounds
        self.report = BatchLaneReport()
        self.items: dict[str, WorkItem] = {}
        self.active: dict[str, BatchEntry] = {}
        self.status: dict[str, str] = {}
        self.split_again = False
        """A batch was refused as too large (requests or bytes): split smaller and resend."""

    def say(self, text: str) -> None:
        if self.log is not None:
            print(text, file=self.log, flush=True)

    # -- the run ------------------------------------------------------------------------
    async def run(self, items: Sequence[WorkItem], *, submit: bool = True,
                  cancel: bool = False) -> BatchLaneReport:
        """Reattach to this task's open batches (cancelling them with ``cancel``), then send
        the uncached items nobody holds (unless ``submit`` is off), until every batch is
        collected; up to ``rounds`` batches per item."""
        completed = self.store.completed_keys(self.benchmark, self.task.identity)
        p = plan(items, completed)
        self.items = {it.key: it for it in items}
        try:
            await self._reattach(cancel)
            todo = [it for it in p.pending if it.key not in self.journal.open_keys()]
            rounds = self.rounds if submit and not cancel else 0
            used = splits = 0
            while todo and used < rounds:
                mine = [it for it in todo if self.claims.try_claim(it.key)]
                if mine:
                    await self._submit(mine)
                if not self.active:
                    todo = []  # held by other processes: theirs to answer
                    break
                self.split_again = False
                todo = await self._follow()
                if self.split_again and splits < 20:
                    splits += 1  # refused as too large: nothing ran, split and go again
                    continue
                used += 1
                if todo and used < rounds:
                    self.say(f"[batch] {len(todo)} items unanswered: into the next batch")
            if self.active:
                todo += await self._follow()
            self.report.leftover = todo
            return self.report
        except (asyncio.CancelledError, KeyboardInterrupt):
            self._left_running()
            raise ScoringInterrupted() from None
        finally:
            self.claims.release_all()
            await self.client.close()

    def _left_running(self) -> None:
        running = [e.batch_id or e.local_id for e in self.active.values()]
        self.report.left_running = running
        if running:
            self.say(f"[batch] interrupted: {len(running)} batch(es) left running at the "
                     f"provider ({', '.join(running)}); run the same command again to reattach "
                     "and collect them (nothing is submitted twice), or add --cancel-batches "
                     "to cancel them")

    async def _reattach(self, cancel: bool) -> None:
        self.journal.forget_preparing(older_than=self.claims.lease)
        for entry in self.journal.open_entries(self.task.identity):
            if not set(entry.keys) <= self.items.keys():
                self.say(f"[batch] batch {entry.batch_id or entry.local_id} carries items this "
                         "run does not ask for: rerun the command that created it to collect it")
                continue
            if not self.claims.try_claim(f"batch-{entry.local_id}"):
                continue  # another live process follows it
            self.say(f"[batch] reattaching to {entry.batch_id or entry.local_id} "
                     f"({len(entry.keys)} items, {entry.step})")
            self.report.reattached += 1
            entry = await self._ensure_created(entry)
            if entry.open and cancel and entry.batch_id:
                view = await self.client.cancel(entry.batch_id)
                self.say(f"[batch] cancelling {entry.batch_id} ({view.status}): what it "
                         "finished is kept")
            if entry.open:
                self.active[entry.local_id] = entry

    async def _ensure_created(self, entry: BatchEntry) -> BatchEntry:
        """Bring an ``uploaded`` or ``creating`` entry to ``submitted``: a batch the provider
        already made from its input file is found, never created twice."""
        if entry.step == "creating" and entry.input_file_id:
            found = await self.client.find(entry.input_file_id, since=entry.created - 60)
            if found is not None:
                return self.journal.step(entry, "submitted", batch_id=found.id,
                                         status=found.status)
        if entry.step in ("uploaded", "creating") and entry.input_file_id:
            return await self._create(entry)
        return entry

    async def _create(self, entry: BatchEntry) -> BatchEntry:
        file_id = entry.input_file_id
        assert file_id is not None
        entry = self.journal.step(entry, "creating")
        try:
            view = await self.client.create(file_id,
                                            {"pluralign_batch": entry.local_id})
        except BatchAPIError as e:
            if e.status is not None and 400 <= e.status < 500 and e.status != 429:
                self.say(f"[batch] the provider refused a batch: {e}")
                return self.journal.step(entry, "cancelled", status=f"refused: {e}"[:200])
            raise
        self.report.created += 1
        return self.journal.step(entry, "submitted", batch_id=view.id, status=view.status)

    async def _submit(self, items: Sequence[WorkItem]) -> None:
        lines, reqs = [], []
        for it in items:
            try:
                req = self.task.request(it)
            except Exception as e:  # a prompt that cannot be built fails that item only
                self._write_failures([it], f"request: {type(e).__name__}: {e}")
                continue
            reqs.append((it, req))
            lines.append(self.client.line(req, it.key))
        for group in split_lines(lines, max_requests=self.max_requests,
                                 max_bytes=self.max_bytes):
            keys = [reqs[i][0].key for i in group]
            entry = self.journal.new(provider=self.client.provider, endpoint=self.endpoint,
                                     model=self.model, scorer=self.task.identity, keys=keys)
            self.claims.try_claim(f"batch-{entry.local_id}")
            file_id = await self.client.upload([lines[i] for i in group], entry.local_id)
            entry = self.journal.step(entry, "uploaded", input_file_id=file_id)
            entry = await self._create(entry)
            if entry.open:
                self.active[entry.local_id] = entry
                self.report.submitted += len(keys)
                self.report.items_per_batch.append(len(keys))

    async def _follow(self) -> list[WorkItem]:
        """Poll the active batches (backoff up to 10x the poll interval) and collect each
        as it ends; the items they did not answer."""
        leftover: list[WorkItem] = []
        wait = self.poll
        while self.active:
            changed = False
            for local_id, entry in list(self.active.items()):
                assert entry.batch_id is not None
                view = await self.client.get(entry.batch_id)
                if view.status != entry.status:
                    changed = True
                    entry = self.active[local_id] = self.journal.step(
                        entry, entry.step, status=view.status)
                self.status[local_id] = view.status
                if view.terminal:
                    leftover += await self._collect(entry, view)
                    del self.active[local_id]
            self.claims.heartbeat()
            if changed:
                self._progress()
                wait = self.poll
            if self.active:
                await asyncio.sleep(wait)
                # Grow, but stay well inside the claims' lease (the heartbeat is per round).
                wait = min(10 * self.poll, self.claims.lease / 3, wait * 1.5)
        return leftover

    def _progress(self) -> None:
        states = Counter(self.status.values())
        r = self.report
        self.say("[batch] " + ", ".join(f"{n} {s}" for s, n in sorted(states.items())) +
                 f"; {r.completed} items written, {r.failed} failed")

    # -- collecting ---------------------------------------------------------------------
    async def _collect(self, entry: BatchEntry, view: BatchView) -> list[WorkItem]:
        items = [self.items[k] for k in entry.keys if k in self.items]
        requests: dict[str, GenerationRequest] = {}
        for it in items:
            with contextlib.suppress(Exception):
                requests[it.key] = self.task.request(it)
        results: dict[str, GenerationResult] = {}
        for file_id in (view.output_file_id, view.error_file_id):
            if file_id:
                results.update(self.client.results(await self.client.content(file_id),
                                                   requests))
        if view.status == "failed":
            self.say(f"[batch] {view.id} failed at the provider: {view.errors or 'no reason'}")
            if "too_many" in view.errors or "size" in view.errors or "large" in view.errors:
                self.max_requests = max(1, len(items) // 2)  # split smaller next time
                self.split_again = True
        stored = await asyncio.to_thread(store_results, self.task, items, results, self.store)
        done, leftover = stored.done, stored.leftover
        r = self.report
        r.completed, r.failed = r.completed + stored.completed, r.failed + stored.failed
        r.prompt_tokens += stored.prompt_tokens
        r.completion_tokens += stored.completion_tokens
        for kind, n in stored.failures.items():
            r.failures[kind] = r.failures.get(kind, 0) + n
        for kind, text in stored.failure_examples.items():
            r.failure_examples.setdefault(kind, text)
        self.claims.release(it.key for it in done)
        self.journal.step(entry, "collected", status=view.status)
        self.claims.release([f"batch-{entry.local_id}"])
        self.report.states[view.status] += 1
        self.say(f"[batch] {view.id} {view.status}: {len(done)} of {len(entry.keys)} items "
                 f"written, {len(leftover)} to send again")
        return leftover

    def _write_failures(self, items: Sequence[WorkItem], reason: str) -> None:
        rows = [r for it in items for r in self.task.failure_rows(it, reason[:500])]
        if rows:
            self.store.append(rows)
        self.report.failed += len(items)


@dataclass
class Stored:
    """What :func:`store_results` wrote and what is left to send again."""

    done: list[WorkItem] = field(default_factory=list)
    leftover: list[WorkItem] = field(default_factory=list)
    completed: int = 0
    failed: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    failures: dict[str, int] = field(default_factory=dict)
    failure_examples: dict[str, str] = field(default_factory=dict)

    def count(self, kind: str, message: str) -> None:
        self.failures[kind] = self.failures.get(kind, 0) + 1
        self.failure_examples.setdefault(kind, message[:300])


def store_results(task: Task, items: Sequence[WorkItem],
                  results: Mapping[str, GenerationResult], store: ResultStore) -> Stored:
    """Write the rows of a batch's results (by item key) through ``store``, one part: answers
    as the task parses them, final failures (too long, cut at max_tokens) as failure rows;
    items without a result, or with one worth sending again, are the leftover."""
    out = Stored()
    rows: list[Mapping[str, object]] = []
    for it in items:
        res = results.get(it.key)
        if res is None:
            out.leftover.append(it)
            continue
        out.prompt_tokens += res.usage.prompt_tokens
        out.completion_tokens += res.usage.completion_tokens
        if res.failure is None:
            try:
                rows += task.parse(it, res)
            except AnswerError as e:
                out.count(FailureKind.BAD_ANSWER.value, str(e))
                out.leftover.append(it)
                continue
            out.done.append(it)
            out.completed += 1
            continue
        out.count(res.failure.kind.value, res.failure.message)
        if res.failure.kind in _FINAL:
            rows += task.failure_rows(it, f"{res.failure.kind.value}: "
                                          f"{res.failure.message}"[:500])
            out.done.append(it)
            out.failed += 1
        else:
            out.leftover.append(it)
    if rows:
        store.append(rows)
    return out


# ------------------------------------------------------------------------- lanes


def _as_schedule(lane: BatchLaneReport, task: Task, items: Sequence[WorkItem],
                 cached: int, started: float, prices: tuple[float, float]) -> ScheduleReport:
    report = ScheduleReport(task.identity, items=len({it.key for it in items}), cached=cached,
                            completed=lane.completed, failed=lane.failed,
                            requests=lane.submitted, sends=lane.submitted,
                            prompt_tokens=lane.prompt_tokens,
                            completion_tokens=lane.completion_tokens,
                            failures=dict(lane.failures),
                            failure_examples=dict(lane.failure_examples))
    report.cost = (lane.prompt_tokens * prices[0] + lane.completion_tokens * prices[1]) / 1000
    report.not_started = report.items - report.cached - report.completed - report.failed
    report.elapsed = time.monotonic() - started
    return report


def _merge(first: ScheduleReport, online: ScheduleReport) -> ScheduleReport:
    """The batch lane's report with the online lane's counts for its leftovers added."""
    for name in ("completed", "failed", "requests", "sends", "retries", "resent",
                 "prompt_tokens", "completion_tokens", "elsewhere"):
        setattr(first, name, getattr(first, name) + getattr(online, name))
    first.cost += online.cost
    first.not_started = online.not_started
    first.stopped, first.stop_kind = online.stopped, online.stop_kind
    for kind, n in online.failures.items():
        first.failures[kind] = first.failures.get(kind, 0) + n
    first.failure_examples.update(online.failure_examples)
    first.elapsed += online.elapsed
    return first


async def run_lanes(task: Task, items: Sequence[WorkItem], config: LLMConfig,
                    store: ResultStore, *, benchmark: str | None, online: Online,
                    client_config: APIClientConfig | None,
                    log: TextIO | None) -> ScheduleReport:
    """Send ``items`` through ``config.lane``: online (``online``), batch, or auto."""
    root = getattr(store, "root", None)
    if config.backend == "vllm":
        items = prefix_order(task, items)  # shared prefixes back to back: prefix-cache hits
    if config.lane == "online" and not config.cancel_batches:
        held = BatchJournal(root).open_keys(task.identity) if root is not None else set()
        waiting = [it for it in items if it.key in held]
        if not waiting:
            return await online(items)
        completed = store.completed_keys(benchmark, task.identity)
        waiting = [it for it in waiting if not all(k in completed for k in it.row_keys)]
        if log is not None and waiting:
            print(f"{len(waiting)} items are in batches still open at the provider: they are "
                  "not sent again (--lane batch reattaches and collects them)", file=log)
        report = await online([it for it in items if it.key not in held])
        report.items += len(waiting)
        report.not_started += len(waiting)
        return report
    if config.backend != "openai" or client_config is None:
        raise InputError("the batch lane needs an HTTP endpoint with a Batch API",
                         field="lane", hint="vLLM replicas answer online (`lane=online`)")
    if root is None:
        raise InputError("the batch lane needs a cache folder (its journal lives there)",
                         field="cache")
    started = time.monotonic()
    client: BatchClient = (
        AnthropicBatchClient(client_config, Path(root) / BATCHES_DIR)
        if is_anthropic(client_config.model, client_config.base_url)
        else OpenAIBatchClient(client_config))
    lane = BatchLane(task, store, client, Path(root),
                     benchmark=benchmark, endpoint=endpoint_host(client_config.base_url) or "",
                     model=client_config.model, poll_seconds=float(config.batch_poll_seconds),
                     log=log, rounds=1 if config.lane == "auto" else 3)
    cached = plan(items, store.completed_keys(benchmark, task.identity)).cached
    result = await lane.run(items, cancel=config.cancel_batches)
    prices = (float(config.price_prompt or 0.0) / 2, float(config.price_completion or 0.0) / 2)
    report = _as_schedule(result, task, items, cached, started, prices)
    if config.lane == "auto" and result.leftover and not config.cancel_batches:
        if log is not None:
            print(f"[batch] {len(result.leftover)} items no batch answered: sending them online",
                  file=log)
        report = _merge(report, await online(result.leftover))
    return report
