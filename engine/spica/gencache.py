"""Content-addressed cache of generations: a folder of Parquet part files, appended atomically.

Each write adds one new part (temporary name, then rename), so concurrent or interrupted runs
never corrupt what is there. A key is the hash of the model identity and every request field
that changes the answer; a part of another layout version is refused.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pluralign.engine.backend import GenerationRequest
from pluralign.engine.files import require_layout, write_parquet
from pluralign.engine.hashing import digest
from pluralign.schemas.spica import GENERATION_KIND, GENERATION_SCHEMA


def work_key(model: str, request: GenerationRequest) -> str:
    """Cache key: SHA-256 (32 hex) of the model identity and the request's fingerprint.

    The fingerprint covers messages, JSON schema, n, temperature, seed and max_tokens; the
    request id is deliberately left out so equal work shares one entry.
    """
    return digest([model, request.fingerprint()], 32)


@dataclass(frozen=True)
class CachedGeneration:
    """One stored outcome."""

    key: str
    """Content key (see :func:`work_key`)."""
    task: str
    """What the work was: ``class-response`` or ``aligned``."""
    model: str
    """Model identity the answer came from."""
    request: str
    """The request's fingerprint (provenance; the key already covers it)."""
    texts: tuple[str, ...]
    """The samples (empty on failure)."""
    error: str | None
    """Failure reason, or None."""
    meta: str = ""
    """Free-form JSON provenance (attempts, token usage); never part of the key."""

    @property
    def ok(self) -> bool:
        return self.error is None


class GenerationCache:
    """Folder of ``part-*.parquet`` files; later parts win for the same key."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        """The cache folder (created on first write)."""

    def _parts(self) -> list[Path]:
        if not self.root.exists():
            return []
        return sorted(self.root.glob("part-*.parquet"), key=lambda p: (p.stat().st_mtime_ns,
                                                                       p.name))

    def _read(self, path: Path) -> pa.Table:
        table = pq.read_table(path)
        require_layout(table.schema, GENERATION_KIND, path, "use a fresh cache folder")
        return table

    def load(self) -> dict[str, CachedGeneration]:
        """Every stored outcome by key (successes are never replaced by later failures)."""
        out: dict[str, CachedGeneration] = {}
        for part in self._parts():
            for row in self._read(part).to_pylist():
                rec = CachedGeneration(row["key"], row["task"], row["model"], row["request"],
                                       tuple(row["texts"]), row["error"], row["meta"] or "")
                prev = out.get(rec.key)
                if prev is None or not prev.ok or rec.ok:
                    out[rec.key] = rec
        return out

    def lookup(self, keys: Iterable[str]) -> dict[str, CachedGeneration]:
        """Stored successes for ``keys`` (failures are not returned: they get retried)."""
        wanted = set(keys)
        return {k: v for k, v in self.load().items() if k in wanted and v.ok}

    def append(self, records: Iterable[CachedGeneration]) -> Path | None:
        """Store ``records`` as one new part; returns its path (None if nothing to store)."""
        rows = list(records)
        if not rows:
            return None
        cols: Mapping[str, list[object]] = {
            "key": [r.key for r in rows], "task": [r.task for r in rows],
            "model": [r.model for r in rows], "request": [r.request for r in rows],
            "texts": [list(r.texts) for r in rows], "error": [r.error for r in rows],
            "meta": [r.meta for r in rows],
        }
        table = pa.Table.from_pydict(dict(cols), schema=GENERATION_SCHEMA)
        name = f"part-{os.getpid()}-{uuid.uuid4().hex[:12]}.parquet"
        return write_parquet(table, self.root / name)
