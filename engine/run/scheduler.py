"""The scheduler: send each uncached work item once, write one output per item to the cache.

It serves every LLM job, each a :class:`~pluralign.engine.judges.base.Task`: the judges (score
and choice caches) and SPICA generation (the generation cache). It removes duplicate items and
items already in the cache (content-addressed keys), keeps a bounded number of requests in
flight over a backend or a pool of actors, retries what the backend classifies as retryable
within one send budget per item (shared with the backend's own retries), writes results at
least every ``flush_seconds``, reports progress (a bar where someone watches standard error,
else text lines), and stops cleanly at a token or cost budget, on a dead endpoint, or when
interrupted. With :class:`Claims`, concurrent runs on one cache never send the same item at
once. A crashed run resumes by rerunning: completed items are in the cache. A full disk loses
no paid answer: sending stops before the cache folder's free-space margin would be crossed,
and answers that cannot be written are held in memory and retried, never dropped silently.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Protocol, TextIO, TypeAlias, TypedDict, cast, runtime_checkable

from pluralign.engine.judges.base import AnswerError, Task, WorkItem
from pluralign.engine.run import progress as progress_bars
from pluralign.engine.run.backend import FailureKind, GenerationRequest, GenerationResult
from pluralign.engine.store.claims import ClaimOwner, Claims
from pluralign.engine.store.redaction import redact as redact
from pluralign.engine.store.space import SpaceGuard, is_disk_full, write_what_fits


class _CurrentStderr:
    """Writes to whatever ``sys.stderr`` is at the time of the write, not at import time
    (pytest and notebooks swap it; a stream captured at import may be closed by then)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


STDERR: TextIO = cast(TextIO, _CurrentStderr())


StopRun: TypeAlias = Callable[[str], None]
"""Interrupts a run: ``stop(reason)``."""
OnStart: TypeAlias = Callable[[StopRun], object]
"""Called once a run starts, with the function that interrupts it."""


class ResultStore(Protocol):
    """Where outputs go: the score cache, the choice cache, or the generation cache."""

    def append(self, records: Sequence[Mapping[str, object]]) -> object: ...

    def completed_keys(
        self, benchmark: str | None = None, scorer: str | None = None
    ) -> set[str]: ...


@runtime_checkable
class ListedStore(Protocol):
    """A store that can say cheaply which parts it holds (a directory listing): the scheduler
    then re-reads :meth:`ResultStore.completed_keys` only when another writer added or removed
    a part, instead of before every batch."""

    def part_names(self) -> frozenset[str]: ...


class _CacheView:
    """The keys this run knows are complete in the store, kept in memory.

    Our own writes are added as they are made. Before each batch (after claiming it) and
    each write the store's part names are listed: the keys are re-read from disk only when a
    part appeared that this run did not write (another process stored rows, maybe the very
    items just claimed here, released since) or one went away (a compaction). A store that
    cannot list its parts is re-read every time. Thread-safe: writes run in a thread."""

    def __init__(self, store: ResultStore, benchmark: str | None, scorer: str) -> None:
        self.store, self.benchmark, self.scorer = store, benchmark, scorer
        self.listed = store if isinstance(store, ListedStore) else None
        self.names: frozenset[str] | None = None
        """The part names the keys reflect (None: not read yet, or not listable)."""
        self.keys: set[str] = set()
        self.mine: set[str] = set()
        """Keys this run stored (kept across re-reads)."""
        self.lock = threading.Lock()

    def stale(self) -> bool:
        """Whether the store must be read again (a listing; no part is read)."""
        if self.listed is None or self.names is None:
            return True
        return self.listed.part_names() != self.names

    def read(self) -> set[str]:
        """Read the completed keys from the store (blocking: call in a thread). The names are
        listed first, so a part written during the read shows as new at the next look."""
        names = self.listed.part_names() if self.listed is not None else None
        keys = self.store.completed_keys(self.benchmark, self.scorer)
        with self.lock:
            keys |= self.mine
            self.keys, self.names = keys, names
        return keys

    def current(self) -> set[str]:
        """The completed keys, read again only when :meth:`stale` (blocking)."""
        return self.read() if self.stale() else self.keys

    def wrote(self, written: object, keys: Sequence[str]) -> None:
        """Our own part ``written`` (its path) holds ``keys`` (successes) now."""
        with self.lock:
            self.mine.update(keys)
            self.keys.update(keys)
            if self.names is not None and isinstance(written, Path):
                self.names = self.names | {written.name}


class Dispatcher(Protocol):
    """A backend or a pool of them: one result per request, in order."""

    async def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]: ...


class Idle:
    """The dispatcher of a run whose items are all cached (a finished sweep starts no actors
    and no Ray): it is never asked to generate, and says so loudly if it is."""

    async def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        raise RuntimeError("nothing should be sent: every item is cached")


class StatusSink(Protocol):
    """Job status published elsewhere (Redis), e.g. ``pluralign.actors.ratelimit.RedisStatus``."""

    async def publish(self, fields: Mapping[str, object]) -> None: ...


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
    """Longest time a finished row waits in memory before it is written: a kill -9 loses at
    most this many seconds of answers (a rerun sends them again)."""
    max_attempts: int = 3
    """Times the scheduler hands one item to the backend (which may retry inside)."""
    max_sends: int = 6
    """Most times one item is sent in total, the backend's retries included: the scheduler
    passes what is left of it with every request (``GenerationRequest.max_sends``)."""
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
    """Seconds between progress lines (and status updates); a progress bar, where one is
    shown instead, appears after this long."""
    abort_after_fatal: int = 3
    """Stop when this many FATAL_REPLICA results arrive in a row with no success in between
    (a refused key, an unreachable endpoint, a dead engine): the rest is left unsent instead of
    recorded as failed."""
    grace_seconds: float = 3.0
    """After an interrupt, how long answers already in flight are awaited before giving up."""
    claim_poll_seconds: float = 0.5
    """How often items claimed by another process are looked at again."""
    secrets: tuple[str, ...] = field(default=(), repr=False)
    """Strings (API keys) scrubbed from every recorded error text; never printed."""
    progress_note: Callable[[], str] | None = field(default=None, repr=False, compare=False)
    """Extra text for each progress line (adaptive concurrency, 429s, waiting), or None."""
    disk_reserve: int = 64 * 1024
    """Bytes of the cache's file system left free beyond the room kept for every answer not
    yet written (in flight or in memory) and one more part: sending stops before a send would
    cross that margin (:class:`~pluralign.engine.store.space.SpaceGuard`)."""
    disk_wait_seconds: float = 30.0
    """When answers already paid for cannot be written (the disk filled up anyway, e.g. by
    another process), how long they are held in memory at the end while the write is retried
    before the run gives up and says how many were not stored."""

    def __post_init__(self) -> None:
        if min(self.max_in_flight, self.batch_size, self.max_attempts, self.max_sends) < 1:
            raise ValueError("max_in_flight, batch_size, max_attempts and max_sends must be >= 1")
        if self.disk_reserve < 0 or not self.disk_wait_seconds >= 0:
            raise ValueError("disk_reserve and disk_wait_seconds must be >= 0")


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
    """Items left unanswered because the run stopped early (a rerun sends them)."""
    elsewhere: int = 0
    """Items another process claimed and completed while this run waited (not sent here)."""
    requests: int = 0
    """Requests handed to the backend, scheduler retries included."""
    sends: int = 0
    """Times items were sent, the backend's own retries included (as backends report them)."""
    retries: int = 0
    """Scheduler-level re-sends."""
    resent: int = 0
    """Sends beyond the first per item (each one may have been paid again)."""
    bought_twice: int = 0
    """Items answered here whose rows were already in the cache when ours were written:
    bought by another process too. A lower bound (the process writing second sees it, the
    first does not); 0 with claims."""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    stopped: str | None = None
    """Why the run stopped early (``token budget``, ``cost budget``, ``interrupted``, or the
    backend's failure), else None."""
    stop_kind: str | None = None
    """``budget``, ``interrupted``, ``backend`` or ``disk`` (the cache's disk is full) when
    the run stopped early."""
    elapsed: float = 0.0
    lost: int = 0
    """Items sent that produced no output (must be 0)."""
    duplicated: int = 0
    """Items that produced more than one output (must be 0)."""
    unstored: int = 0
    """Items answered (paid for) whose rows could not be written, the disk being full even
    after waiting ``disk_wait_seconds``; counted in ``lost`` too (must be 0)."""
    disk_free: int | None = None
    """Bytes free in the cache folder when the run stopped for want of space, else None."""
    failures: dict[str, int] = field(default_factory=dict)
    """Failure reasons of failed items, counted by kind."""
    failure_examples: dict[str, str] = field(default_factory=dict)
    """One failure message per kind (secrets redacted)."""

    @property
    def complete(self) -> bool:
        """Every item asked for has its answer (cached, written here, or by another process)."""
        return self.cached + self.completed + self.elsewhere == self.items and not self.unstored

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def as_dict(self) -> dict[str, object]:
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


def _fmt_seconds(s: float) -> str:
    if s != s or s == float("inf"):
        return "?"
    h, rem = divmod(round(s), 3600)
    m, sec = divmod(rem, 60)
    return f"{h}h{m:02d}m{sec:02d}s" if h else f"{m}m{sec:02d}s"


class ProgressFields(TypedDict):
    """One progress update: printed as a line, and published to the status sink."""

    scorer: str
    total: int
    done: int
    completed: int
    failed: int
    retries: int
    cached: int
    rate: float
    eta_s: float | None
    tokens: int
    cost: float
    requests: int
    stopped: str | None
    state: str


@dataclass(frozen=True)
class _Output:
    """One item's rows waiting in memory to be written."""

    item: WorkItem
    rows: Sequence[Mapping[str, object]]
    failed: bool
    """Failure rows (counted in ``failed``, not ``completed``)."""


class _Run:
    """State of one scheduling run (one asyncio task group)."""

    def __init__(self, judge: Task, pending: list[WorkItem], backend: Dispatcher,
                 store: ResultStore, config: SchedulerConfig, report: ScheduleReport,
                 status: StatusSink | None, log: TextIO | None, claims: Claims | None = None,
                 benchmark: str | None = None, space: SpaceGuard | None = None,
                 view: _CacheView | None = None) -> None:
        self.judge, self.backend, self.store, self.cfg = judge, backend, store, config
        self.report, self.status, self.log = report, status, log
        self.claims, self.benchmark, self.space = claims, benchmark, space
        self.view = view or _CacheView(store, benchmark, judge.identity)
        """What is complete in the cache (read again only when another writer wrote)."""
        self.queue: asyncio.Queue[WorkItem | None] = asyncio.Queue()
        for it in pending:
            self.queue.put_nowait(it)
        self.pending = pending
        self.total = len(pending)
        self.outstanding = len(pending)
        self.attempts: dict[str, int] = {}
        self.sends: dict[str, int] = {}
        self.done: set[str] = set()
        self.buffer: list[_Output] = []
        self.buffer_rows = 0
        self.unwritten: set[str] = set()
        """Items past the free-space check whose rows are not written yet (nor dropped)."""
        self.disk_error: str | None = None
        """The last disk-full error of a write (rows held in memory since), else None."""
        self.flushes: set[asyncio.Future[None]] = set()
        """Flushes under way (shielded from the cancellation of the worker that began one)."""
        self.deferred: dict[str, WorkItem] = {}
        self.waiting_since: float | None = None
        """When items claimed by another process began to wait (None: none waits)."""
        self.waiting_on: dict[str, int] = {}
        """Owners of the claims waited on (``host pid N``) and their items."""
        self.last_flush = time.monotonic()
        self.write_lock = asyncio.Lock()
        self.stopping: str | None = None
        self.stop_kind: str | None = None
        self.interrupted = asyncio.Event()
        self.fatal_streak = 0
        self.started = time.monotonic()
        self.finished = asyncio.Event()
        if not pending:
            self.finished.set()
        self.bar: progress_bars.Bar | None = None
        """The progress bar shown instead of text lines (see :func:`_shows_bar`), or None."""

    def stop(self, reason: str, kind: str) -> None:
        """Send nothing new from now on (the first reason wins)."""
        if self.stopping is None:
            self.stopping, self.stop_kind = reason, kind
        if kind == "interrupted":
            self.interrupted.set()

    # -- bookkeeping ------------------------------------------------------------------------
    def _settle(self, item: WorkItem, rows: Sequence[Mapping[str, object]] | None, *,
                failed: str | None = None, message: str = "", elsewhere: bool = False) -> None:
        """Record the one output of ``item`` (rows, a failure, or none when not answered)."""
        if item.key in self.done:
            self.report.duplicated += 1
            return
        self.done.add(item.key)
        if rows is not None:
            self.buffer.append(_Output(item, rows, failed is not None))
            self.buffer_rows += len(rows)
            if self.bar is not None:
                self.bar.update(1)
            if failed is None:
                self.report.completed += 1
            else:
                self.report.failed += 1
                self.report.failures[failed] = self.report.failures.get(failed, 0) + 1
                self.report.failure_examples.setdefault(failed, message[:300])
        else:
            self.unwritten.discard(item.key)
            if elsewhere:
                self.report.elsewhere += 1
            else:
                self.report.not_started += 1
            if self.claims is not None:
                self.claims.release([item.key])
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
            self.stop("token budget", "budget")
        if cfg.cost_budget is not None and self.report.cost >= cfg.cost_budget:
            self.stop("cost budget", "budget")

    def _count_sends(self, item: WorkItem, n: int) -> None:
        before = self.sends.get(item.key, 0)
        self.sends[item.key] = before + n
        self.report.sends += n
        self.report.resent += max(0, before + n - 1) - max(0, before - 1)

    # -- outcomes ---------------------------------------------------------------------------
    def _retry_or_fail(self, item: WorkItem, kind: str, message: str,
                       retry_after: float | None = None) -> None:
        tries = self.attempts.get(item.key, 0)
        sent = self.sends.get(item.key, 0)
        if tries < self.cfg.max_attempts and sent < self.cfg.max_sends:
            self.report.retries += 1
            ceiling = self.cfg.retry_backoff * (2 ** (tries - 1))
            delay = max(retry_after or 0.0, random.uniform(0.0, ceiling))
            asyncio.get_running_loop().call_later(delay, self.queue.put_nowait, item)
            return
        reason = redact(f"{kind}: {message}", self.cfg.secrets)[:500]
        self._settle(item, self.judge.failure_rows(item, reason), failed=kind, message=reason)

    def _handle(self, item: WorkItem, result: GenerationResult) -> None:
        self._account(result)
        self._count_sends(item, max(0, int(result.attempts)))
        failure = result.failure
        if self.interrupted.is_set() and failure is not None:
            self._settle(item, None)  # not answered before the interrupt: a rerun sends it
            return
        if failure is not None and failure.kind is FailureKind.FATAL_REPLICA:
            self.fatal_streak += 1
            if self.fatal_streak >= self.cfg.abort_after_fatal:
                self.stop(redact(failure.message, self.cfg.secrets)[:300], "backend")
        elif failure is None:
            self.fatal_streak = 0
        if failure is None:
            try:
                rows = self.judge.parse(item, result)
            except AnswerError as e:
                self._retry_or_fail(item, FailureKind.BAD_ANSWER.value, str(e))
                return
            self._settle(item, rows)
        elif failure.kind in (FailureKind.FATAL_ITEM, FailureKind.TRUNCATED):
            self.attempts[item.key] = self.cfg.max_attempts  # resending buys the same answer
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
            batch = [it for it in batch if it.key not in self.done]
            if self.stopping or not await self._room_for(batch):
                for it in batch:
                    self._settle(it, None)
                continue
            if self.claims is not None:
                batch = await self._claim(batch)
            if batch:
                await self._send(batch)
            await self._maybe_flush()

    async def _room_for(self, batch: list[WorkItem]) -> bool:
        """Whether the cache folder keeps its free-space margin with ``batch`` sent too (then
        its items count as unwritten until written); else the run stops sending. Answers in
        memory are written first when that would make room (a written part also tells the
        real size of an answer)."""
        if self.space is None or not batch:
            return True
        for attempt in range(2):
            keys = self.unwritten | {it.key for it in batch}
            if self.space.room_for(len(keys)):
                self.unwritten = keys
                return True
            if attempt == 0 and self.buffer:
                await self._maybe_flush(force=True)
            if self.stopping:
                break
        self.stop("disk full", "disk")
        return False

    async def _claim(self, batch: list[WorkItem]) -> list[WorkItem]:
        """The items of ``batch`` this process now holds and that nobody has completed; the
        others wait (claimed elsewhere) or are settled (completed elsewhere)."""
        assert self.claims is not None
        mine = []
        for i, it in enumerate(batch):
            try:
                claimed = self.claims.try_claim(it.key)
            except OSError as e:
                if not is_disk_full(e):
                    raise
                self._disk_full(e)  # not even a claim fits: send nothing more
                for rest in batch[i:]:
                    self._settle(rest, None)
                break
            if claimed:
                mine.append(it)
            else:
                self.deferred[it.key] = it
        if not mine:
            return mine
        # Look at the cache after claiming: a claim is released only once its rows are stored
        # (read from disk only when a part this run did not write appeared).
        completed = (await asyncio.to_thread(self.view.read) if self.view.stale()
                     else self.view.keys)
        fresh = []
        for it in mine:
            if all(k in completed for k in it.row_keys):
                self._settle(it, None, elsewhere=True)
            else:
                fresh.append(it)
        return fresh

    async def claim_poller(self) -> None:
        """Look again at items another process holds: completed there, or free again."""
        assert self.claims is not None
        while not self.finished.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.finished.wait(), self.cfg.claim_poll_seconds)
            if not self.deferred or self.finished.is_set():
                continue
            if self.stopping:
                for key in list(self.deferred):
                    self._settle(self.deferred.pop(key), None)
                continue
            free = [k for k, it in self.deferred.items()
                    if not self.claims.claimed_elsewhere(k)]
            for key in free:
                self.queue.put_nowait(self.deferred.pop(key))  # _claim reads the cache again
            self._note_waiting()

    def _note_waiting(self) -> None:
        """Remember whose claims the deferred items wait on, and since when."""
        assert self.claims is not None
        if not self.deferred:
            self.waiting_since, self.waiting_on = None, {}
            return
        if self.waiting_since is None:
            self.waiting_since = time.monotonic()
        owners: dict[str, int] = {}
        for key in self.deferred:
            owner = self.claims.owner_of(key) or ClaimOwner("another process", None)
            owners[str(owner)] = owners.get(str(owner), 0) + 1
        self.waiting_on = owners

    def waiting_text(self) -> str:
        """``8 items claimed by host-a pid 1234, waited on for 0m42s (lease 60s)`` while items
        wait on another process's claims (until it stores them, or its lease runs out)."""
        if not self.deferred or self.waiting_since is None or not self.waiting_on:
            return ""
        top = max(self.waiting_on, key=lambda owner: self.waiting_on[owner])
        more = len(self.waiting_on) - 1
        others = f" and {more} more process{'es' if more > 1 else ''}" if more else ""
        lease = f" (lease {self.claims.lease:g}s)" if self.claims is not None else ""
        return (f"{len(self.deferred)} items claimed by {top}{others}, waited on for "
                f"{_fmt_seconds(time.monotonic() - self.waiting_since)}{lease}")

    async def _send(self, batch: list[WorkItem]) -> None:
        requests, sendable = [], []
        for it in batch:
            self.attempts[it.key] = self.attempts.get(it.key, 0) + 1
            left = self.cfg.max_sends - self.sends.get(it.key, 0)
            try:
                requests.append(replace(self.judge.request(it), max_sends=left))
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
            for it in batch:  # given up after the grace period: never answered here
                self._count_sends(it, 1)
                if it.key not in self.done:
                    self._settle(it, None)
            raise
        except Exception as e:  # a dead actor or a broken pool: every item is retried
            for it in batch:
                self._count_sends(it, 1)  # it may have gone out before the worker died
                self._retry_or_fail(it, "dispatch", f"{type(e).__name__}: {e}")
            return
        by_id = {r.id: r for r in results}
        for it, req, res in zip(batch, requests, results, strict=True):
            self._handle(it, by_id.get(req.id, res))

    # -- writing and progress ---------------------------------------------------------------
    async def _maybe_flush(self, force: bool = False) -> None:
        due = time.monotonic() - self.last_flush >= self.cfg.flush_seconds
        if self.buffer and (force or due or self.buffer_rows >= self.cfg.flush_rows):
            # Shielded: a worker cancelled after the grace period must not drop the answers
            # it took out of the buffer (the flush goes on; the last flush awaits it).
            task = asyncio.ensure_future(self._flush())
            self.flushes.add(task)
            task.add_done_callback(self.flushes.discard)
            await asyncio.shield(task)

    async def _flush(self) -> None:
        async with self.write_lock:
            outputs, self.buffer, self.buffer_rows = self.buffer, [], 0
            self.last_flush = time.monotonic()
            if not outputs:
                return
            try:
                left, error = await asyncio.to_thread(write_what_fits, self._write, outputs)
            except BaseException:
                self._hold(outputs)  # paid for: kept for the last flush, which raises again
                raise
            kept = {id(o) for o in left}
            self.unwritten.difference_update(o.item.key for o in outputs if id(o) not in kept)
            if left:  # a full disk: what did not fit stays in memory (a later flush retries)
                self._hold(left)
                assert error is not None
                self._disk_full(error)
            elif self.disk_error is not None:
                self._say(f"the held answers are stored now in {self._folder()}")
                self.disk_error = None

    def _hold(self, outputs: Sequence[_Output]) -> None:
        """Put ``outputs`` back in front of the buffer (they were taken out to be written)."""
        self.buffer[:0] = outputs
        self.buffer_rows += sum(len(o.rows) for o in outputs)

    def _write(self, outputs: Sequence[_Output]) -> None:
        """Append the rows of ``outputs`` as one part (in a thread), count items another
        process bought meanwhile, and release their claims only now that the rows are
        stored."""
        items = [o.item for o in outputs]
        try:
            before = self.view.current()
            twice = sum(1 for it in items if it.row_keys and all(k in before for k in it.row_keys))
        except Exception:  # counting is advisory; the write below is not
            twice = 0
        written = self.store.append([row for o in outputs for row in o.rows])
        self.view.wrote(written, [k for o in outputs if not o.failed for k in o.item.row_keys])
        self.report.bought_twice += twice
        if self.space is not None and isinstance(written, Path):
            self.space.learn(written, len(items))
        if self.claims is not None:
            self.claims.release(it.key for it in items)

    def _folder(self) -> str:
        return str(self.space.folder) if self.space is not None else "the cache folder"

    def _say(self, text: str) -> None:
        if self.log is not None:
            print(f"[{self.report.scorer}] {text}", file=self.log, flush=True)

    def _disk_full(self, error: OSError) -> None:
        """No room to write: send nothing more; say so once (the answers stay in memory)."""
        first = self.disk_error is None
        self.disk_error = redact(f"{type(error).__name__}: {error}", self.cfg.secrets)[:300]
        self.stop("disk full", "disk")
        if first:
            self._say(f"disk full in {self._folder()}: {len(self.buffer)} answers held in "
                       "memory until they can be written; nothing more is sent")

    async def hold_until_written(self) -> None:
        """The last flush: while the disk is full, retry every ``flush_seconds`` for up to
        ``disk_wait_seconds`` (space freed meanwhile stores them); what still cannot be written
        is counted as ``unstored`` (and ``lost``), never dropped silently."""
        await asyncio.gather(*self.flushes, return_exceptions=True)  # errors: raised again below
        await self._maybe_flush(force=True)
        if not self.buffer:
            return
        self._say(f"waiting up to {self.cfg.disk_wait_seconds:g}s for room in "
                   f"{self._folder()} to store {len(self.buffer)} paid answers")
        deadline = time.monotonic() + self.cfg.disk_wait_seconds
        while self.buffer and time.monotonic() < deadline:
            await asyncio.sleep(max(0.05, min(self.cfg.flush_seconds,
                                              deadline - time.monotonic())))
            await self._maybe_flush(force=True)
        for o in self.buffer:  # given up: say exactly how many
            if o.failed:
                self.report.failed -= 1
            else:
                self.report.completed -= 1
            self.report.unstored += 1

    async def ticker(self) -> None:
        tick = min(self.cfg.progress_seconds, self.cfg.flush_seconds)
        last_progress = time.monotonic()
        while not self.finished.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.finished.wait(), tick)
            if self.finished.is_set():
                return  # the final line is printed by run_schedule
            await self._maybe_flush()
            if self.claims is not None:
                self.claims.heartbeat()
            if time.monotonic() - last_progress >= self.cfg.progress_seconds:
                last_progress = time.monotonic()
                await self.progress()

    def progress_fields(self) -> ProgressFields:
        r = self.report
        elapsed = time.monotonic() - self.started
        settled = r.completed + r.failed
        rate = settled / elapsed if elapsed > 0 else 0.0
        remaining = self.total - settled - r.not_started - r.elsewhere
        eta = remaining / rate if rate > 0 else float("inf")
        if self.deferred and remaining <= len(self.deferred):
            eta = float("inf")  # all that is left waits on another process's claims
        return {
            "scorer": r.scorer, "total": self.total, "done": settled, "completed": r.completed,
            "failed": r.failed, "retries": r.resent, "cached": r.cached,
            "rate": round(rate, 3),
            "eta_s": None if eta == float("inf") else round(eta, 1),
            "tokens": r.tokens, "cost": round(r.cost, 6), "requests": r.requests,
            "stopped": self.stopping, "state": "running",
        }

    def _note(self) -> str:
        note = self.cfg.progress_note() if self.cfg.progress_note is not None else ""
        return "".join(f", {n}" for n in (note, self.waiting_text()) if n)

    def postfix(self) -> str:
        """What the bar shows after its counts (tqdm shows rate and ETA itself)."""
        r = self.report
        text = f"{r.failed} failed, {r.resent} retries, {r.tokens} tokens"
        return text + (f", stopping: {self.stopping}" if self.stopping else "") + self._note()

    async def progress(self, final: bool = False) -> None:
        f = self.progress_fields()
        if final:
            f["state"] = "stopped" if self.stopping else "done"
        if self.bar is not None and not final:
            self.bar.set_postfix_str(self.postfix(), refresh=False)
            self.bar.update(0)  # redraws once the bar's delay has passed (refresh would not wait)
        elif self.log is not None:
            pct = 100.0 * f["done"] / self.total if self.total else 100.0
            eta = _fmt_seconds(f["eta_s"] if f["eta_s"] is not None else float("inf"))
            cached = f", {f['cached']} cached" if f["cached"] else ""
            print(f"[{f['scorer']}] {f['done']}/{self.total} items ({pct:.1f}%){cached}, "
                  f"{f['failed']} failed, {f['retries']} retries, {f['rate']:.2f} items/s, "
                  f"ETA {eta}, "
                  f"{f['tokens']} tokens" + (f", stopping: {self.stopping}"
                                             if self.stopping else "") + self._note(),
                  file=self.log, flush=True)
        if self.status is not None:
            try:
                await self.status.publish(f)
            except Exception as e:  # status is advisory: never stop scoring for it
                if self.log is not None:
                    print(f"status update failed: {type(e).__name__}", file=self.log)


def _shows_bar(log: TextIO | None) -> bool:
    """A bar instead of text lines: only where bars are on (a terminal, or
    ``PLURALIGN_PROGRESS=1``) and the log is standard error, where the bar goes; a log file or
    stream keeps the text lines."""
    return (log is STDERR or log is sys.stderr) and progress_bars.enabled()


async def run_schedule(
    judge: Task,
    items: Sequence[WorkItem],
    backend: Dispatcher,
    store: ResultStore,
    config: SchedulerConfig | None = None,
    *,
    benchmark: str | None = None,
    status: StatusSink | None = None,
    log: TextIO | None = STDERR,
    claims: Claims | None = None,
    on_start: OnStart | None = None,
    space: SpaceGuard | None = None,
) -> ScheduleReport:
    """Send every item not yet in ``store`` through ``backend``; write one output per item.

    ``benchmark`` (the benchmark identity) narrows the cache lookup of completed keys. With
    ``claims``, items another process is sending are left to it. ``on_start(stop)`` is called
    once with a function ``stop(reason)`` that interrupts the run (signal handlers use it):
    nothing new is sent, answers in flight are awaited for ``grace_seconds``, every finished
    answer is written, and the report says ``stop_kind == "interrupted"``.

    ``space`` keeps a free-space margin in the cache folder (default: in the folder of
    ``claims``, with ``config.disk_reserve``): sending stops before the margin would be crossed
    (``stop_kind == "disk"``, ``stopped`` names the folder, its free space and the answers
    stored), answers that cannot be written are held and retried, and claims are released on
    every way out.

    Progress goes to ``log`` every ``progress_seconds``: a bar with failures, retries and tokens
    where :func:`_shows_bar` says so, else a text line; the final line is text either way.
    """
    cfg = config or SchedulerConfig()
    if space is None and claims is not None:
        space = SpaceGuard(claims.cache_root, reserve=cfg.disk_reserve)
    view = _CacheView(store, benchmark, judge.identity)
    completed = await asyncio.to_thread(view.read)
    p = plan(items, completed)
    report = ScheduleReport(judge.identity, items=p.items, duplicates=p.duplicates,
                            cached=p.cached)
    run = _Run(judge, p.pending, backend, store, cfg, report, status, log, claims, benchmark,
               space, view)
    if on_start is not None:

        def stop(reason: str = "interrupted") -> None:
            run.stop(reason, "interrupted")

        on_start(stop)
    with contextlib.ExitStack() as shown:
        if p.pending and _shows_bar(log):
            run.bar = shown.enter_context(progress_bars.bar(
                len(p.pending), judge.identity, unit="item", delay=cfg.progress_seconds))
        await _drive(run, cfg, claims)
        run.bar = None  # closed here: the final line below is text
    if run.stop_kind == "disk":
        run.stopping = _disk_full_text(run, report)
        report.disk_free = space.free_now() if space is not None else None
    report.stopped = run.stopping
    report.stop_kind = run.stop_kind
    report.elapsed = time.monotonic() - run.started
    report.lost = len(p.pending) - len(run.done) + report.unstored
    await run.progress(final=True)
    return report


def _disk_full_text(run: _Run, report: ScheduleReport) -> str:
    """The one line of a run stopped by a full disk: folder, free space, answers stored."""
    where = run.space.describe() if run.space is not None else "the cache folder is full"
    text = (f"disk full: {where}; {report.completed + report.failed} answers stored this run, "
            f"{report.unstored} paid answers could not be stored")
    if run.disk_error is not None and report.unstored:
        text += f" ({run.disk_error})"
    return text + "; free space and rerun"


async def _drive(run: _Run, cfg: SchedulerConfig, claims: Claims | None) -> None:
    """Run the workers (and ticker, claim poller) until every item is settled or the run
    stops; then write what is buffered and release the claims."""
    n_workers = max(1, min(len(run.pending), -(-cfg.max_in_flight // cfg.batch_size)))
    workers = [asyncio.create_task(run.worker()) for _ in range(n_workers)]
    helpers = [asyncio.create_task(run.ticker())]
    if claims is not None:
        helpers.append(asyncio.create_task(run.claim_poller()))
    finished = asyncio.create_task(run.finished.wait())
    interrupted = asyncio.create_task(run.interrupted.wait())
    try:
        # A worker only ends early by raising (e.g. the cache cannot be written): surface it.
        done, _ = await asyncio.wait([finished, interrupted, *workers],
                                     return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if task in workers and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
        if run.interrupted.is_set() and not run.finished.is_set():
            for _ in workers:
                run.queue.put_nowait(None)
            # Answers already on their way are paid for: wait a little for them.
            await asyncio.wait(workers, timeout=cfg.grace_seconds)
    finally:
        try:
            await _wind_down(run, workers, helpers, (finished, interrupted))
        finally:
            if claims is not None:  # on every way out: a failed write, a second Ctrl-C
                claims.release_all()


async def _wind_down(run: _Run, workers: list[asyncio.Task[None]],
                     helpers: list[asyncio.Task[None]],
                     waits: tuple[asyncio.Task[bool], ...]) -> None:
    """Stop the workers and helpers, settle what was never answered and write every answer
    received (held while the disk is full)."""
    for wait in waits:
        wait.cancel()
    for _ in workers:
        run.queue.put_nowait(None)
    if run.stopping:
        for w in workers:
            w.cancel()  # only workers still waiting on the backend after the grace period
    await asyncio.gather(*workers, return_exceptions=True)
    for h in helpers:
        h.cancel()
    await asyncio.gather(*helpers, return_exceptions=True)
    if run.stopping:  # retries still scheduled or items still deferred: never answered
        for it in run.pending:
            if it.key not in run.done:
                run._settle(it, None)
    await run.hold_until_written()
