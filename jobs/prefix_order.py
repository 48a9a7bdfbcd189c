"""Prefix-aware ordering: requests that share a prompt prefix go one after another, so an engine
with automatic prefix caching (vLLM) computes the shared part once while it is still cached.

Only the order changes: every item keeps its key and request, so no identity and no answer
changes. Items are sorted by the digests of their messages in order (system prompt, then each
message), which puts requests with equal leading messages next to each other, and keeps the
original order among equal prompts (the samples of one prompt stay together).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from pluralign.engine.judges.base import Task, WorkItem
from pluralign.engine.store.hashing import text_digest

_LAST = ("~",)
"""Sort key of an item whose prompt cannot be built (it fails when sent, after the others)."""


def prompt_path(task: Task, item: WorkItem) -> tuple[str, ...]:
    """The digests of ``item``'s messages in order (16 hex each: memory stays small for
    millions of items, where the texts themselves would not)."""
    try:
        req = task.request(item)
    except Exception:
        return _LAST
    return tuple(text_digest(f"{m.role}\n{m.content}", 16) for m in req.messages)


def prefix_order(task: Task, items: Sequence[WorkItem]) -> list[WorkItem]:
    """``items`` reordered so that requests with equal leading messages are consecutive."""
    keyed = sorted(range(len(items)), key=lambda i: (prompt_path(task, items[i]), i))
    return [items[i] for i in keyed]


def shared_prefix_share(task: Task, items: Sequence[WorkItem]) -> float:
    """Share of consecutive request pairs whose first message is equal (1.0: every request
    starts as the one before it did), a quick measure of how an order groups prefixes."""
    paths = [prompt_path(task, it) for it in items]
    pairs = list(itertools.pairwise(paths))
    return sum(1 for a, b in pairs if a[:1] == b[:1]) / len(pairs) if pairs else 1.0
