"""Content-addressed cache of generations: a part store (``engine/store/parts.py``) in one folder.

Each write adds one new part (temporary name, then rename), so concurrent or interrupted runs
never corrupt what is there. A key is the hash of the model identity and every request field
that changes the answer; the ``model`` and ``request`` (fingerprint) columns hold both, so every
stored key is checked against them on its part's first read. A part of another layout version
is refused, and generated texts are redacted of registered secrets before they are stored.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from pluralign.engine.errors import InputError
from pluralign.engine.jsontypes import UntrustedJSON
from pluralign.engine.run.backend import GenerationRequest
from pluralign.engine.store.hashing import digest
from pluralign.engine.store.parts import PartLayout, PartStore
from pluralign.schemas.spica import GENERATION_KIND, GENERATION_SCHEMA


def work_key(model: str, request: GenerationRequest) -> str:
    """Cache key: SHA-256 (32 hex) of the model identity and the request's fingerprint.

    The fingerprint covers messages, JSON schema, n, temperature, seed and max_tokens; the
    request id is deliberately left out so equal work shares one entry.
    """
    return stored_key(model, request.fingerprint())


def stored_key(model: str, fingerprint: str) -> str:
    """:func:`work_key` from the stored columns: the model identity and request fingerprint."""
    return digest([model, fingerprint], 32)


GENERATION_LAYOUT = PartLayout(
    kind=GENERATION_KIND, schema=GENERATION_SCHEMA, key_fields=("model", "request"),
    key_of=stored_key, index_columns=("key", "task", "model", "request", "error"),
    what="generation-cache part", fix="use a fresh cache folder")
"""Generation parts: keys re-hashed from (model, request); texts and meta read on demand."""


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
    """Folder of ``part-*.parquet`` files under the latest-wins rule of ``engine/store/parts.py``.

    Also a scheduler ``ResultStore``: :meth:`append` takes schema rows as mappings, and
    :meth:`completed_keys` lists the keys with a stored success.
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        """The cache folder (created on first write)."""
        self._store = PartStore(self.root, GENERATION_LAYOUT)

    def parts(self) -> list[Path]:
        """The visible part files, oldest first."""
        return self._store.parts()

    def part_names(self) -> frozenset[str]:
        """Names of the visible parts, from one directory listing (see
        :meth:`PartStore.part_names`): the scheduler re-reads :meth:`completed_keys` only
        when they differ from what it read and wrote."""
        return self._store.part_names()

    def load(self) -> dict[str, CachedGeneration]:
        """Every stored outcome by key (successes are never replaced by later failures)."""
        return {r.key: r for r in _records(self._store.latest())}

    def lookup(self, keys: Iterable[str]) -> dict[str, CachedGeneration]:
        """Stored successes for ``keys`` (failures are not returned: they get retried)."""
        wanted = pa.array(sorted(set(keys)), pa.string())
        with self._store.lock:
            ok, _ = self._store.resolve()
            hits = self._store.with_text(ok.filter(pc.is_in(ok["key"], value_set=wanted)))
        return {r.key: r for r in _records(hits.select(GENERATION_SCHEMA.names))}

    def completed_keys(self, benchmark: str | None = None, scorer: str | None = None) -> set[str]:
        """Keys with a stored success. ``benchmark`` and ``scorer`` are accepted for the
        scheduler's ``ResultStore`` protocol and narrow nothing: a key already covers the model
        and the request, so a key from another model can never match a wanted one."""
        ok, _ = self._store.resolve()
        return set(ok["key"].to_pylist())

    def append(self, records: Iterable[CachedGeneration | Mapping[str, object]]) -> Path | None:
        """Store ``records`` (outcomes, or rows of ``GENERATION_SCHEMA`` as mappings, ``key``
        optional) as one new part; returns its path (None if nothing to store). Bad rows raise
        InputError naming them before anything is written."""
        rows = [_checked_row(r, i) for i, r in enumerate(records)]
        if not rows:
            return None
        table = pa.Table.from_pylist(rows, schema=GENERATION_SCHEMA)
        return self._store.append(table, keys_checked=True)


def _records(table: pa.Table) -> list[CachedGeneration]:
    return [CachedGeneration(row["key"], row["task"], row["model"], row["request"],
                             tuple(row["texts"] or ()), row["error"], row["meta"] or "")
            for row in table.to_pylist()]


def _checked_row(obj: CachedGeneration | Mapping[str, object], pos: int) -> dict[str, object]:
    if isinstance(obj, CachedGeneration):
        raw: Mapping[str, object] = {"key": obj.key, "task": obj.task, "model": obj.model,
                                     "request": obj.request, "texts": list(obj.texts),
                                     "error": obj.error, "meta": obj.meta}
    elif isinstance(obj, Mapping):
        raw = obj
    else:
        raise InputError(f"not a generation record: {type(obj).__name__}", record=pos)
    row: dict[str, UntrustedJSON] = {f.name: raw.get(f.name) for f in GENERATION_SCHEMA}
    for f in ("task", "model", "request"):
        if not isinstance(row[f], str) or not row[f]:
            raise InputError("must be a non-empty string", record=pos, field=f)
    texts = row["texts"]
    if texts is None:
        texts = ()
    if isinstance(texts, str) or not isinstance(texts, Sequence) or not all(
            isinstance(t, str) for t in texts):
        raise InputError("must be a list of strings", record=pos, field="texts")
    row["texts"] = list(texts)
    if row["error"] is not None and (not isinstance(row["error"], str) or not row["error"]):
        raise InputError("must be a non-empty string or None", record=pos, field="error")
    key = stored_key(row["model"], row["request"])
    if row["key"] not in (None, key):
        raise InputError("key does not match the model and request fingerprint", record=pos,
                         field="key", hint="build keys with engine.spica.gencache.work_key")
    row["key"] = key
    return row
