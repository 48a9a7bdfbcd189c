"""Generation jobs through any backend: response-class answers that grow a bank from raw prompts,
and aligned outputs per (query, group, prompt setup).

Work items are keyed by content (model + request fingerprint), deduplicated, looked up in the
generation cache, and only the missing ones are sent; every item ends with exactly one outcome
(texts or a failure reason). The backend is built from a factory only when something must be
sent, so a fully cached rerun never even opens a connection.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from pluralign.engine.backend import (
    Backend,
    Failure,
    FailureKind,
    GenerationRequest,
    GenerationResult,
    Message,
)
from pluralign.engine.spica.bank import ScenarioBank, make_bank
from pluralign.engine.spica.gencache import CachedGeneration, GenerationCache, work_key
from pluralign.engine.spica.prompts import AlignmentPrompt, build_prompt
from pluralign.engine.spica.retrieval import Retriever, Weights
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
"""System prompts that produce each default response class (our own wording of seed 000 A.7.1)."""

BackendFactory = Callable[[], Backend]


@dataclass(frozen=True)
class WorkItem:
    """One request to answer, with what it is for."""

    task: str
    """``class-response`` or ``aligned``."""
    request: GenerationRequest
    """The request (its id is the item's key)."""
    labels: Mapping[str, str]
    """What the answer belongs to (scenario/class/sample, or query/group/setup)."""


def class_prompt(cls: ResponseClass) -> str:
    """The system prompt that elicits responses of ``cls``."""
    if cls.name in CLASS_PROMPTS:
        return CLASS_PROMPTS[cls.name]
    return f"You are an assistant. Respond to the user in this way: {cls.strategy or cls.name}."


def _item(model: str, task: str, messages: tuple[Message, ...], labels: dict[str, str],
          temperature: float, seed: int | None, max_tokens: int) -> WorkItem:
    req = GenerationRequest("", messages, temperature=temperature, seed=seed,
                            max_tokens=max_tokens)
    key = work_key(model, req)
    return WorkItem(task, GenerationRequest(key, messages, temperature=temperature, seed=seed,
                                            max_tokens=max_tokens), labels)


def class_response_items(
    model: str, prompts: Sequence[tuple[str, str]], classes: Sequence[ResponseClass],
    per_class: int = 3, temperature: float = 0.7, max_tokens: int = 512,
) -> list[WorkItem]:
    """``per_class`` samples (seeds 0..n-1) per (prompt, class); prompts are (id, text)."""
    return [
        _item(model, "class-response",
              (Message("system", class_prompt(c)), Message("user", text)),
              {"scenario": sid, "class": c.name, "sample": str(i)}, temperature, i, max_tokens)
        for sid, text in prompts for c in classes for i in range(per_class)
    ]


def aligned_items(
    model: str, prompts: Sequence[tuple[str, AlignmentPrompt]], temperature: float = 0.0,
    max_tokens: int = 1024,
) -> list[WorkItem]:
    """One item per (query id, prompt) — the prompt carries its group and setup."""
    return [
        _item(model, "aligned", p.messages, {"query": qid, "group": p.group, "setup": p.setup},
              temperature, None, max_tokens)
        for qid, p in prompts
    ]


@dataclass
class GenerationReport:
    """What a job did; ``outcomes`` has one entry per distinct key."""

    outcomes: dict[str, CachedGeneration] = field(default_factory=dict)
    """Key -> texts or failure."""
    cached: int = 0
    """Distinct keys answered from the cache."""
    duplicates: int = 0
    """Items that shared a key with an earlier item (sent once)."""
    sent: int = 0
    """Requests handed to the backend, retries included."""
    failed: int = 0
    """Distinct keys that ended as failures."""

    def texts(self, item: WorkItem) -> tuple[str, ...] | None:
        out = self.outcomes.get(item.request.id)
        return out.texts if out is not None and out.ok else None


@dataclass(frozen=True)
class RetryPolicy:
    """How the runner acts on the backend's failure kinds."""

    max_attempts: int = 3
    """Tries per item for transient failures and bad answers."""
    backoff: float = 0.5
    """Seconds before the first retry; doubles each time."""
    max_wait: float = 30.0
    """Cap on any single wait, rate-limit hints included."""


async def _generate(backend: Backend, batch: list[WorkItem]) -> list[GenerationResult]:
    """The backend's answers; a backend that raises (against the protocol) or answers the
    wrong number of items turns into transient failures, so one bad batch never stops a job."""
    try:
        results = list(await backend.generate([it.request for it in batch]))
    except Exception as e:  # any backend bug becomes a recorded failure
        reason = f"backend raised {type(e).__name__}: {e}"
    else:
        if len(results) == len(batch):
            return results
        reason = f"backend returned {len(results)} results for {len(batch)} requests"
    return [GenerationResult(it.request.id, failure=Failure(FailureKind.TRANSIENT, reason))
            for it in batch]


async def _send(
    backend: Backend, items: list[WorkItem], policy: RetryPolicy, report: GenerationReport,
) -> dict[str, GenerationResult]:
    """Send a batch with retries; returns the final result per key."""
    pending = {it.request.id: it for it in items}
    final: dict[str, GenerationResult] = {}
    attempt = 0
    while pending:
        attempt += 1
        batch = list(pending.values())
        report.sent += len(batch)
        results = await _generate(backend, batch)
        wait = 0.0
        for it, res in zip(batch, results, strict=True):
            f = res.failure
            retry = f is not None and attempt < policy.max_attempts and f.kind in (
                FailureKind.RATE_LIMITED, FailureKind.TRANSIENT, FailureKind.BAD_ANSWER)
            if retry and f is not None:
                hint = f.retry_after if f.kind is FailureKind.RATE_LIMITED else None
                wait = max(wait, hint or policy.backoff * 2 ** (attempt - 1))
                continue
            final[it.request.id] = res
            del pending[it.request.id]
        if pending:
            await asyncio.sleep(min(wait, policy.max_wait))
    return final


def _record(item: WorkItem, model: str, res: GenerationResult) -> CachedGeneration:
    meta = json.dumps({"attempts": res.attempts, "prompt_tokens": res.usage.prompt_tokens,
                       "completion_tokens": res.usage.completion_tokens})
    if res.failure is not None:
        err = f"{res.failure.kind.value}: {res.failure.message}"
        return CachedGeneration(item.request.id, item.task, model, item.request.fingerprint(),
                                (), err, meta)
    texts = tuple(s.text for s in res.samples)
    return CachedGeneration(item.request.id, item.task, model, item.request.fingerprint(),
                            texts, None, meta)


async def run_items_async(
    items: Sequence[WorkItem], backend_factory: BackendFactory, model: str,
    cache: GenerationCache | None = None, batch_size: int = 16, concurrency: int = 4,
    policy: RetryPolicy | None = None,
) -> GenerationReport:
    """Answer every item: cached ones from ``cache``, the rest through one backend instance."""
    report = GenerationReport()
    unique: dict[str, WorkItem] = {}
    for it in items:
        if it.request.id in unique:
            report.duplicates += 1
        else:
            unique[it.request.id] = it
    hits = cache.lookup(unique) if cache is not None else {}
    report.cached = len(hits)
    report.outcomes.update(hits)
    todo = [it for k, it in unique.items() if k not in hits]
    if not todo:
        return report
    backend = backend_factory()
    gate = asyncio.Semaphore(max(1, concurrency))
    pol = policy or RetryPolicy()

    async def one(batch: list[WorkItem]) -> None:
        async with gate:
            results = await _send(backend, batch, pol, report)
        records = [_record(it, model, results[it.request.id]) for it in batch]
        if cache is not None:
            cache.append(records)  # one part per batch: finished work survives a crash
        for r in records:
            report.outcomes[r.key] = r
            report.failed += 0 if r.ok else 1

    try:
        batches = [todo[i:i + batch_size] for i in range(0, len(todo), max(1, batch_size))]
        await asyncio.gather(*(one(b) for b in batches))
    finally:
        await backend.close()
    return report


def run_items(
    items: Sequence[WorkItem], backend_factory: BackendFactory, model: str,
    cache: GenerationCache | None = None, batch_size: int = 16, concurrency: int = 4,
    policy: RetryPolicy | None = None,
) -> GenerationReport:
    """Synchronous wrapper of :func:`run_items_async` (for the CLI and scripts)."""
    return asyncio.run(run_items_async(items, backend_factory, model, cache, batch_size,
                                       concurrency, policy))


def grow_bank(
    meta: BankMeta, prompts: Sequence[tuple[str, str]], backend_factory: BackendFactory,
    model: str, cache: GenerationCache | None = None, per_class: int = 3,
    split: str = "train", temperature: float = 0.7, max_tokens: int = 512,
) -> tuple[ScenarioBank, GenerationReport]:
    """A bank (no ratings yet) whose scenarios are ``prompts`` with ``per_class`` generated
    responses per class; a class whose samples all failed keeps fewer texts."""
    items = class_response_items(model, prompts, meta.classes, per_class, temperature,
                                 max_tokens)
    report = run_items(items, backend_factory, model, cache)
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
    max_tokens: int = 1024,
) -> tuple[list[AlignedOutput], GenerationReport]:
    """Aligned outputs per (query, group, setup); retrieval is SPICA's where ``weights`` has
    the group, else similarity only. Control prompts are the same for every group, so they
    are sent once (deduplicated by key)."""
    texts = [t for _, t in queries]
    dist = retriever.distance(texts)
    plan: list[tuple[str, AlignmentPrompt, tuple[str, ...]]] = []
    for g in groups:
        w = (weights or {}).get(g)
        idx = retriever.retrieve(texts, g, k, w, dist)
        for qi, (qid, q) in enumerate(queries):
            ids = tuple(retriever.bank.ids[int(j)] for j in idx[qi])
            for setup in setups:
                p = build_prompt(retriever.bank, q, g, setup, idx[qi])
                plan.append((qid, p, () if setup == "control" else ids))
    items = aligned_items(model, [(qid, p) for qid, p, _ in plan], max_tokens=max_tokens)
    report = run_items(items, backend_factory, model, cache)
    rows = []
    for (qid, p, ids), it in zip(plan, items, strict=True):
        out = report.outcomes.get(it.request.id)
        text = out.texts[0] if out is not None and out.ok and out.texts else None
        err = None if text is not None else (out.error if out is not None else "not run")
        rows.append(AlignedOutput(qid, p.group, p.setup, ids, text, err, it.request.id))
    return rows, report
