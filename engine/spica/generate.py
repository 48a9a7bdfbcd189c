"""Generation jobs through any backend: response-class answers that grow a bank from raw prompts,
and aligned outputs per (query, group, prompt setup).

Generation is one more task of the scheduler (:mod:`pluralign.engine.run.scheduler`), which serves
every LLM job: items are keyed by content (model + request fingerprint), deduplicated, looked up
in the generation cache, and only the missing ones are sent, with the scheduler's retries, send
budget, dead-endpoint abort, interrupts and progress. Every item ends with exactly one outcome
(texts or a failure reason). The backend is built from a factory only when something must be
sent, so a fully cached rerun never even opens a connection.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, TextIO

from pluralign.engine.errors import GenerationInterrupted as GenerationInterrupted
from pluralign.engine.judges.base import AnswerError, ItemKind, WorkItem, usage_meta
from pluralign.engine.run.backend import (
    Backend,
    Failure,
    FailureKind,
    GenerationRequest,
    GenerationResult,
    Message,
)
from pluralign.engine.run.scheduler import (
    STDERR,
    OnStart,
    SchedulerConfig,
    ScheduleReport,
    StatusSink,
    run_schedule,
)
from pluralign.engine.run.signals import Interrupts
from pluralign.engine.spica.bank import ScenarioBank, make_bank
from pluralign.engine.spica.prompts import AlignmentPrompt, build_prompt
from pluralign.engine.spica.retrieval import Retriever, Weights
from pluralign.engine.store.claims import Claims
from pluralign.engine.store.generations import CachedGeneration, GenerationCache, work_key
from pluralign.schemas.spica import BankMeta, BankScenario, ResponseClass

CLASS_PROMPTS: dict[str, str] = {
    "refusal": "You are a careful assistant. Whatever the user asks, politely decline to answer, "
               "say briefly why, and suggest a better place to ask.",
    "high-level": "You are an assistant. Answer with objective facts only, briefly and at a high "
                  "level. Give no opinions, advice or recommendations, even when asked.",
    "specific": "You are an assistant. Answer with detailed, specific, objective facts only and "
                "cite sources. Give no opinions, advice or recommendations, even when asked. "
                "Avoid vague generalities.",
    "multi-perspective": "You are a thoughtful assistant. People hold different values about "
                         "what is appropriate here. Describe the main values at stake and, for "
                         "each, the answer someone holding it would prefer, with specifics.",
    "opinionated": "You are a direct assistant. Give the single most helpful answer or "
                   "recommendation you can, take a clear position and argue for it "
                   "confidently, without hedging.",
}
"""System prompts that produce each default response class (our own wording of SPICA A.7.1)."""

BackendFactory = Callable[[], Backend]

DEFAULT_CONFIG = SchedulerConfig(batch_size=16, max_in_flight=64)
"""Generation's scheduling: batches of 16 requests, four batches in flight."""


def class_prompt(cls: ResponseClass) -> str:
    """The system prompt that elicits responses of ``cls``."""
    if cls.name in CLASS_PROMPTS:
        return CLASS_PROMPTS[cls.name]
    return f"You are an assistant. Respond to the user in this way: {cls.strategy or cls.name}."


def _item(model: str, task: str, messages: tuple[Message, ...], labels: dict[str, str],
          temperature: float, seed: int | None, max_tokens: int, position: int,
          sample: int) -> WorkItem:
    req = GenerationRequest("", messages, temperature=temperature, seed=seed,
                            max_tokens=max_tokens)
    key = work_key(model, req)
    return WorkItem(key, "generation", position, sample, row_keys=(key,),
                    request=replace(req, id=key), task=task, labels=labels)


def class_response_items(
    model: str, prompts: Sequence[tuple[str, str]], classes: Sequence[ResponseClass],
    per_class: int = 3, temperature: float = 0.7, max_tokens: int = 512,
) -> list[WorkItem]:
    """``per_class`` samples (seeds 0..n-1) per (prompt, class); prompts are (id, text)."""
    return [
        _item(model, "class-response",
              (Message("system", class_prompt(c)), Message("user", text)),
              {"scenario": sid, "class": c.name, "sample": str(i)}, temperature, i, max_tokens,
              pi, i)
        for pi, (sid, text) in enumerate(prompts) for c in classes for i in range(per_class)
    ]


def aligned_items(
    model: str, prompts: Sequence[tuple[str, AlignmentPrompt]], temperature: float = 0.0,
    max_tokens: int = 1024,
) -> list[WorkItem]:
    """One item per (query id, prompt) — the prompt carries its group and setup."""
    return [
        _item(model, "aligned", p.messages, {"query": qid, "group": p.group, "setup": p.setup},
              temperature, None, max_tokens, pi, 0)
        for pi, (qid, p) in enumerate(prompts)
    ]


class GenerationTask:
    """Generation as a scheduler task: the item's prepared request goes out as is, and its
    answer (or failure) becomes one generation-cache record, as a row."""

    name = "generation"
    kind: ItemKind = "generation"

    def __init__(self, model: str) -> None:
        self.model = model
        """Model identity (already part of every item key)."""
        self.identity = model
        """What progress lines and cache lookups name the run by."""

    def request(self, item: WorkItem) -> GenerationRequest:
        if item.request is None:
            raise ValueError(f"work item {item.key} carries no request")
        return item.request

    def _row(self, item: WorkItem, texts: tuple[str, ...], error: str | None,
             meta: str) -> dict[str, object]:
        fingerprint = item.request.fingerprint() if item.request is not None else ""
        return {"key": item.key, "task": item.task or "", "model": self.model,
                "request": fingerprint, "texts": texts, "error": error, "meta": meta}

    def parse(self, item: WorkItem, result: GenerationResult) -> list[dict[str, object]]:
        if not result.samples:
            raise AnswerError("no samples in the answer")
        texts = tuple(s.text for s in result.samples)
        if not all(isinstance(t, str) for t in texts):
            raise AnswerError("answer is not text")
        return [self._row(item, texts, None, usage_meta(result))]

    def failure_rows(self, item: WorkItem, reason: str) -> list[dict[str, object]]:
        return [self._row(item, (), reason, "")]

    def describe(self) -> dict[str, object]:
        return {"name": self.name, "identity": self.identity, "model": self.model}


def _record(row: Mapping[str, Any]) -> CachedGeneration:
    return CachedGeneration(row["key"], row["task"], row["model"], row["request"],
                            tuple(row["texts"]), row["error"], row["meta"])


class _GenerationStore:
    """The scheduler's result store over a :class:`GenerationCache` (in memory without one).

    Completed keys are the stored successes among this run's keys (a stored failure is sent
    again). The first lookup (the scheduler's plan) reads the cached outcomes with their texts
    and keeps them for the report; later ones (before each write) read keys only. Every record
    written is kept too.
    """

    def __init__(self, cache: GenerationCache | None, keys: Sequence[str]) -> None:
        self.cache = cache
        self.keys = frozenset(keys)
        self.first: dict[str, CachedGeneration] | None = None
        self.written: dict[str, CachedGeneration] = {}

    def completed_keys(self, benchmark: str | None = None,
                       scorer: str | None = None) -> set[str]:
        mine = {k for k, rec in self.written.items() if rec.ok}
        if self.cache is None:
            return mine
        if self.first is None:
            self.first = self.cache.lookup(self.keys)
            return set(self.first) | mine
        return (self.cache.completed_keys() & self.keys) | mine

    def append(self, records: Sequence[Mapping[str, Any]]) -> None:
        rows = [_record(r) for r in records]
        if self.cache is not None:
            self.cache.append(rows)
        for rec in rows:
            self.written[rec.key] = rec


class _LazyBackend:
    """The factory's backend, built on the first send. A factory that raises stops the run
    (``stop``, from the scheduler's ``on_start``) before anything is recorded; its error is
    kept for the caller to raise, and it is not called again."""

    def __init__(self, factory: BackendFactory) -> None:
        self.factory = factory
        self.backend: Backend | None = None
        self.error: Exception | None = None
        self.stop: Callable[[str], None] | None = None
        self.draining = False

    def drain(self) -> None:
        """Send nothing more: batches handed over from now on fail as not sent, and so do the
        requests of a batch in flight the backend has not sent yet, where it can drain."""
        self.draining = True
        drain = getattr(self.backend, "drain", None)  # optional: API clients have it
        if drain is not None:
            drain()

    async def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        if self.draining:
            return [GenerationResult(r.id, failure=Failure(FailureKind.FATAL_REPLICA,
                                                           "interrupted: not sent"),
                                     attempts=0) for r in requests]
        if self.backend is None and self.error is None:
            try:
                self.backend = self.factory()
            except Exception as e:  # raised again by run_items_async once the run is over
                self.error = e
                if self.stop is not None:
                    self.stop("the backend could not be started")
        if self.backend is None:
            reason = f"could not start the backend: {type(self.error).__name__}: {self.error}"
            return [GenerationResult(r.id, failure=Failure(FailureKind.FATAL_REPLICA, reason),
                                     attempts=0) for r in requests]
        return list(await self.backend.generate(requests))

    async def close(self) -> None:
        if self.backend is not None:
            await self.backend.close()


@dataclass
class GenerationReport:
    """What a job did; ``outcomes`` has one entry per distinct key."""

    outcomes: dict[str, CachedGeneration] = field(default_factory=dict)
    """Key -> texts or failure (``not sent: <reason>`` where the run stopped first)."""
    cached: int = 0
    """Distinct keys answered from the cache."""
    duplicates: int = 0
    """Items that shared a key with an earlier item (sent once)."""
    sent: int = 0
    """Requests handed to the backend, retries included."""
    failed: int = 0
    """Distinct keys that ended as failures (the ones not sent included)."""
    not_sent: int = 0
    """Distinct keys never answered because the run stopped early (a rerun sends them)."""
    schedule: ScheduleReport | None = None
    """The scheduler's report (tokens, retries, stop reason); set by every run."""

    @property
    def stopped(self) -> str | None:
        """Why the run stopped early (budget, interrupt, dead endpoint), else None."""
        return self.schedule.stopped if self.schedule is not None else None

    def texts(self, item: WorkItem) -> tuple[str, ...] | None:
        out = self.outcomes.get(item.key)
        return out.texts if out is not None and out.ok else None


def _check_items(items: Sequence[WorkItem]) -> None:
    for it in items:
        if it.kind != "generation" or it.request is None:
            raise ValueError(f"work item {it.key}: not a generation item (kind {it.kind!r}, "
                             f"request {'missing' if it.request is None else 'set'})")
        if it.request.id != it.key or it.row_keys != (it.key,):
            raise ValueError(f"work item {it.key}: its request id and row keys must be its key")


def _config(config: SchedulerConfig | None, batch_size: int | None,
            concurrency: int | None) -> SchedulerConfig:
    """``config`` (default :data:`DEFAULT_CONFIG`) with ``batch_size`` requests per backend
    call and ``concurrency`` calls in flight, where given (each keeps the config's other)."""
    cfg = config or DEFAULT_CONFIG
    if batch_size is None and concurrency is None:
        return cfg
    calls = concurrency if concurrency is not None else max(1, cfg.max_in_flight // cfg.batch_size)
    size = batch_size if batch_size is not None else cfg.batch_size
    return replace(cfg, batch_size=size, max_in_flight=calls * size)


async def run_items_async(
    items: Sequence[WorkItem], backend_factory: BackendFactory, model: str,
    cache: GenerationCache | None = None, batch_size: int | None = None,
    concurrency: int | None = None, config: SchedulerConfig | None = None, *,
    log: TextIO | None = STDERR, status: StatusSink | None = None,
    on_start: OnStart | None = None, drains: list[Callable[[], object]] | None = None,
) -> GenerationReport:
    """Answer every item: cached ones from ``cache``, the rest through one backend instance,
    scheduled by :func:`~pluralign.engine.run.scheduler.run_schedule` under ``config`` (retries,
    budgets, interrupts; ``batch_size`` and ``concurrency`` override its batching). Runs on one
    cache claim their items (:class:`~pluralign.engine.store.claims.Claims`), so concurrent runs never
    buy the same generation twice. Without a cache, answers live in the report only.
    ``on_start`` is the scheduler's (it receives the function that interrupts the run);
    the backend's ``drain`` is appended to ``drains`` (an interrupt calls them: nothing more
    is sent, not even the rest of a batch already handed over)."""
    _check_items(items)
    keys = list(dict.fromkeys(it.key for it in items))
    store = _GenerationStore(cache, keys)
    backend = _LazyBackend(backend_factory)
    if drains is not None:
        drains.append(backend.drain)

    def started(stop: Callable[[str], None]) -> None:
        backend.stop = stop
        if on_start is not None:
            on_start(stop)

    try:
        schedule = await run_schedule(GenerationTask(model), items, backend, store,
                                      _config(config, batch_size, concurrency), log=log,
                                      status=status, on_start=started,
                                      claims=Claims(cache.root) if cache is not None else None)
    finally:
        await backend.close()
    if backend.error is not None:
        raise backend.error
    report = GenerationReport(cached=schedule.cached, duplicates=schedule.duplicates,
                              sent=schedule.requests, schedule=schedule)
    found = dict(store.first or {})
    if schedule.elsewhere and cache is not None:  # answered by a concurrent run meanwhile
        found.update(cache.lookup(k for k in keys if k not in found and k not in store.written))
    by_key = {it.key: it for it in items}
    for key in keys:
        rec = store.written.get(key) or found.get(key)
        if rec is None:  # the run stopped before answering it
            it = by_key[key]
            fingerprint = it.request.fingerprint() if it.request is not None else ""
            rec = CachedGeneration(key, it.task or "", model, fingerprint, (),
                                   f"not sent: {schedule.stopped or 'the run stopped'}")
            report.not_sent += 1
        report.outcomes[key] = rec
        report.failed += 0 if rec.ok else 1
    return report


def run_items(
    items: Sequence[WorkItem], backend_factory: BackendFactory, model: str,
    cache: GenerationCache | None = None, batch_size: int | None = None,
    concurrency: int | None = None, config: SchedulerConfig | None = None, *,
    log: TextIO | None = STDERR, interrupts: Interrupts | None = None,
) -> GenerationReport:
    """Synchronous wrapper of :func:`run_items_async` (for the CLI and scripts). Inside a
    command, SIGINT and SIGTERM stop the run cleanly through ``interrupts`` (default: one that
    stops the scheduler and sends nothing more through this run's backend): the first stops
    sending, awaits the answers in flight and stores every one; the second exits at once."""

    async def main() -> GenerationReport:
        taken = interrupts if interrupts is not None else Interrupts(log)
        with taken.installed():
            return await run_items_async(items, backend_factory, model, cache, batch_size,
                                         concurrency, config, log=log, on_start=taken.attach,
                                         drains=taken.drains)

    return asyncio.run(main())


def _complete(report: GenerationReport) -> GenerationReport:
    """``report``, unless the run was interrupted (then :class:`GenerationInterrupted`)."""
    if report.schedule is not None and report.schedule.stop_kind == "interrupted":
        raise GenerationInterrupted(report)
    return report


def grow_bank(
    meta: BankMeta, prompts: Sequence[tuple[str, str]], backend_factory: BackendFactory,
    model: str, cache: GenerationCache | None = None, per_class: int = 3,
    split: str = "train", temperature: float = 0.7, max_tokens: int = 512, *,
    config: SchedulerConfig | None = None, log: TextIO | None = STDERR,
    interrupts: Interrupts | None = None,
) -> tuple[ScenarioBank, GenerationReport]:
    """A bank (no ratings yet) whose scenarios are ``prompts`` with ``per_class`` generated
    responses per class; a class whose samples all failed keeps fewer texts. An interrupted
    run raises :class:`GenerationInterrupted` instead of building a partial bank (signals:
    ``interrupts``, see :func:`run_items`)."""
    items = class_response_items(model, prompts, meta.classes, per_class, temperature,
                                 max_tokens)
    report = _complete(run_items(items, backend_factory, model, cache, config=config, log=log,
                                 interrupts=interrupts))
    texts: dict[str, dict[str, list[str]]] = {sid: {c.name: [] for c in meta.classes}
                                              for sid, _ in prompts}
    for it in items:
        got = report.texts(it)
        if got:
            texts[it.labels["scenario"]][it.labels["class"]].append(got[0])
    scenarios = [
        BankScenario(sid, text, {c: tuple(t) for c, t in texts[sid].items()}, (), split)
        for sid, text in prompts
    ]
    return make_bank(meta, scenarios, source="generated"), report


@dataclass(frozen=True)
class AlignedOutput:
    """One aligned answer (or its failure) for a (query, group, setup)."""

    query: str
    group: str
    setup: str
    retrieved: tuple[str, ...]
    """Bank scenario ids shown (empty for control)."""
    text: str | None
    error: str | None
    key: str


def aligned_outputs(
    retriever: Retriever, weights: Mapping[str, Weights] | None,
    queries: Sequence[tuple[str, str]], groups: Sequence[str], setups: Sequence[str], k: int,
    backend_factory: BackendFactory, model: str, cache: GenerationCache | None = None,
    max_tokens: int = 1024, *, config: SchedulerConfig | None = None,
    log: TextIO | None = STDERR, interrupts: Interrupts | None = None,
) -> tuple[list[AlignedOutput], GenerationReport]:
    """Aligned outputs per (query, group, setup); retrieval is SPICA's where ``weights`` has
    the group, else similarity only. Control prompts are the same for every group, so they
    are sent once (deduplicated by key). An interrupted run raises
    :class:`GenerationInterrupted`."""
    texts = [t for _, t in queries]
    dist = retriever.distance(texts)
    planned: list[tuple[str, AlignmentPrompt, tuple[str, ...]]] = []
    for g in groups:
        w = (weights or {}).get(g)
        idx = retriever.retrieve(texts, g, k, w, dist)
        for qi, (qid, q) in enumerate(queries):
            ids = tuple(retriever.bank.ids[int(j)] for j in idx[qi])
            for setup in setups:
                p = build_prompt(retriever.bank, q, g, setup, idx[qi])
                planned.append((qid, p, () if setup == "control" else ids))
    items = aligned_items(model, [(qid, p) for qid, p, _ in planned], max_tokens=max_tokens)
    report = _complete(run_items(items, backend_factory, model, cache, config=config, log=log,
                                 interrupts=interrupts))
    rows = []
    for (qid, p, ids), it in zip(planned, items, strict=True):
        out = report.outcomes.get(it.key)
        text = out.texts[0] if out is not None and out.ok and out.texts else None
        err = None if text is not None else (out.error if out is not None else "not run")
        rows.append(AlignedOutput(qid, p.group, p.setup, ids, text, err, it.key))
    return rows, report
