"""The batch journal: which provider batches carry which work items, kept in the cache folder.

Each batch gets ``<cache>/.batches/<local id>.json``, written (atomically) *before* each step
that could spend money: before the input file is uploaded, before the batch is created, after
the provider names it. A process killed at any point and started again reads the journal and
reattaches to its batches instead of submitting their items again, whichever process or host
created them (the cache folder is what they share).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Literal

from pluralign.engine.jsontypes import JSONDict
from pluralign.engine.store.claims import Claims

BATCHES_DIR = ".batches"
"""Folder of batch journal entries inside the cache directory (never read as a cache part)."""

Step = Literal["preparing", "uploaded", "creating", "submitted", "collected", "cancelled"]
"""Where a batch is in its life here: ``preparing`` (input not yet uploaded: nothing can have
been spent), ``uploaded`` (input file at the provider), ``creating`` (the create call may have
reached the provider: look it up before creating again), ``submitted`` (the provider named
it), ``collected`` (its results are in the cache), ``cancelled`` (given up on purpose)."""
OPEN_STEPS = frozenset({"uploaded", "creating", "submitted"})
"""Steps whose items may be answered (and paid for) at the provider: never send them again."""


@dataclass(frozen=True)
class BatchEntry:
    """One batch as the journal knows it (no credentials: the endpoint host only)."""

    local_id: str
    """Our name for it (the journal file's stem and the input file's name)."""
    provider: str
    """``openai`` (any OpenAI-compatible Batch API) or ``anthropic``."""
    endpoint: str
    """The endpoint root without credentials (which server to reattach to)."""
    model: str
    """Model the requests ask for."""
    scorer: str
    """Identity of the task whose items these are."""
    keys: tuple[str, ...]
    """Work item keys, each the ``custom_id`` of its request."""
    step: Step = "preparing"
    input_file_id: str | None = None
    """The uploaded JSONL's id at the provider."""
    batch_id: str | None = None
    """The provider's batch id, once known."""
    status: str | None = None
    """The provider's last reported status (validating, in_progress, ...)."""
    created: float = field(default_factory=time.time)
    """When this entry was written first (seconds since the epoch)."""
    updated: float = field(default_factory=time.time)

    @property
    def open(self) -> bool:
        return self.step in OPEN_STEPS


class BatchJournal:
    """The journal entries of one cache directory."""

    def __init__(self, cache_root: str | os.PathLike[str]) -> None:
        self.dir = Path(cache_root) / BATCHES_DIR

    def new(self, *, provider: str, endpoint: str, model: str, scorer: str,
            keys: Sequence[str]) -> BatchEntry:
        """A ``preparing`` entry for ``keys``, written before anything is sent."""
        entry = BatchEntry(f"pluralign-{uuid.uuid4().hex[:16]}", provider, endpoint, model,
                           scorer, tuple(keys))
        self.write(entry)
        return entry

    def write(self, entry: BatchEntry) -> BatchEntry:
        """Store ``entry`` atomically (fsynced: it must outlive a kill -9 or a power cut)."""
        entry = replace(entry, updated=time.time())
        self.dir.mkdir(parents=True, exist_ok=True)
        path = self.dir / f"{entry.local_id}.json"
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        data = asdict(entry)
        data["keys"] = list(entry.keys)
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(data, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        with contextlib.suppress(OSError):  # the rename itself durable where the FS allows
            fd = os.open(self.dir, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        return entry

    def step(self, entry: BatchEntry, step: Step, **changes: object) -> BatchEntry:
        """``entry`` moved to ``step`` (with ``changes``), written."""
        return self.write(replace(entry, step=step, **changes))  # type: ignore[arg-type]

    def entries(self) -> Iterator[BatchEntry]:
        """Every readable entry, oldest first (a torn or foreign file is skipped)."""
        if not self.dir.is_dir():
            return
        found = []
        for path in self.dir.glob("*.json"):
            try:
                raw: JSONDict = json.loads(path.read_text(encoding="utf-8"))
                raw["keys"] = tuple(raw.get("keys") or ())
                found.append(BatchEntry(**raw))  # type: ignore[arg-type]
            except (OSError, ValueError, TypeError):
                continue
        yield from sorted(found, key=lambda e: e.created)

    def open_entries(self, scorer: str | None = None) -> list[BatchEntry]:
        """Entries whose items may be answered at the provider (of one task, if given)."""
        return [e for e in self.entries() if e.open and (scorer is None or e.scorer == scorer)]

    def open_keys(self, scorer: str | None = None) -> set[str]:
        """Item keys carried by open batches: never to be sent again while they are open."""
        return {k for e in self.open_entries(scorer) for k in e.keys}

    def forget_preparing(self, older_than: float = 0.0) -> int:
        """Drop ``preparing`` entries (nothing was uploaded for them) older than this many
        seconds; returns how many."""
        n = 0
        now = time.time()
        for e in self.entries():
            if e.step == "preparing" and now - e.updated >= older_than:
                with contextlib.suppress(FileNotFoundError):
                    (self.dir / f"{e.local_id}.json").unlink()
                    n += 1
        return n


class JournalClaims(Claims):
    """Claims that also count the items of open batches as held elsewhere: an online run never
    sends an item a provider batch may be answering (and billing), even when the process that
    created the batch is gone."""

    def __init__(self, cache_root: Path, *, lease_seconds: float = 60.0,
                 refresh_seconds: float = 2.0, scorer: str | None = None) -> None:
        super().__init__(cache_root, lease_seconds=lease_seconds)
        self.journal = BatchJournal(cache_root)
        self.scorer = scorer
        self._refresh = refresh_seconds
        self._open: set[str] = set()
        self._read_at = -1e18

    def in_batches(self, key: str) -> bool:
        now = time.monotonic()
        if now - self._read_at >= self._refresh:
            self._open = self.journal.open_keys(self.scorer)
            self._read_at = now
        return key in self._open

    def try_claim(self, key: str) -> bool:
        if key not in self.held and self.in_batches(key):
            return False
        return super().try_claim(key)

    def claimed_elsewhere(self, key: str) -> bool:
        return self.in_batches(key) or super().claimed_elsewhere(key)
