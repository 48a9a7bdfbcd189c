"""Append-only part stores: one directory of Parquet parts of one kind and one versioned schema.

The score cache (``engine/store/cache.py``), the choice cache (``engine/store/choices.py``) and the
SPICA generation cache (``engine/store/generations.py``) are thin users of :class:`PartStore`; a
:class:`PartLayout` says what one kind of store holds and how its keys are made.

Writing. Each append writes ONE new part, ``part-<time_ns: 20 digits>-<pid: 7 digits>-<12 hex>
.parquet``: first as ``.tmp-<name>.tmp`` beside it, fsynced, then renamed into place, so a reader
never sees half a part and concurrent writers (threads, processes, hosts sharing the folder)
never clobber each other. A part is never rewritten; only compaction replaces parts, by one
merged part written before they are removed. Every string column except the key fields is
redacted of registered secrets before it is written.

Reading. A part is checked at its first read, once: its kind and schema version
(``require_layout``, which raises ``CacheSchemaError``), then its exact column names, order and
types, then every row's key against the fields it hashes; a part failing a check raises
:class:`CacheCorruptError` naming the file and what to do, and nothing of it is used. The key
columns of every part stay in memory (refreshed when new parts appear); the text columns are
read from disk only for the rows asked for.

Latest wins, the one rule for every store:

- parts are ordered by the creation stamp in their name, then by name. Names of other forms
  (written by earlier versions: ``part-<uuid32>.parquet`` choices, ``part-<pid>-<uuid12>
  .parquet`` generations) carry no stamp and count as older than every stamped part, so caches
  written before still read, and anything written now overrides them;
- rows within a part are in row order;
- per key the latest success (``error`` null) wins, and a success is never replaced by a later
  failure (a failed retry must not lose a paid-for answer);
- a failure is reported only for a key with no success, and then its latest one.
"""

from __future__ import annotations

import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pluralign.engine.errors import CacheCorruptError as CacheCorruptError
from pluralign.engine.errors import InputError, PluralignError
from pluralign.engine.store import redaction
from pluralign.engine.store.files import require_layout
from pluralign.engine.store.redaction import REDACTED as REDACTED
from pluralign.engine.store.redaction import known_secrets as known_secrets
from pluralign.engine.store.redaction import redact_secrets as redact_secrets
from pluralign.engine.store.redaction import redact_table as redact_table
from pluralign.engine.store.redaction import register_secret as register_secret

PART_GLOB = "part-*.parquet"
"""Every part file of a store (stamped or of an earlier form)."""
TMP_PREFIX = ".tmp-"
"""Prefix of a part being written; ``gc`` removes stale ones."""
_LEGACY_TMP_GLOB = ".part-*.parquet.*.tmp"  # temporary names of earlier choice/generation writes
_STAMPED = re.compile(r"part-(\d{20})-\d{7,}-[0-9a-f]+\.parquet")


# ---------------------------------------------------------------------------- secrets
# One redactor for the whole engine (engine/store/redaction.py); its names stay importable here.
_SECRETS = redaction._SECRETS  # the registry itself, for code that still reaches for it here


# ---------------------------------------------------------------------------- layouts


@dataclass(frozen=True, eq=False)
class PartLayout:
    """What one kind of store holds: its schema, its key and which columns stay in memory."""

    kind: str
    """The ``pluralign.kind`` every part carries."""
    schema: pa.Schema
    """The exact schema of every part (names, order, types; version metadata attached)."""
    key_fields: tuple[str, ...]
    """The columns the ``key`` column hashes, in ``key_of``'s argument order; never redacted."""
    key_of: Callable[..., str]
    """Recomputes a row's key from its ``key_fields`` values."""
    index_columns: tuple[str, ...]
    """Columns kept in memory: ``key``, ``error``, the key fields, small values. The rest (text)
    is read from disk on demand."""
    filters: tuple[str, ...] = ()
    """Index columns that :meth:`PartStore.resolve` narrows to one value, in argument order."""
    what: str = "cache part"
    """What a part is called in messages (``score-cache part``)."""
    fix: str = "move the old cache aside or use a new cache directory"
    """What to do about a part of another kind or schema version."""
    merged_metadata: Callable[[pa.Table, Sequence[Path]], pa.Table] | None = None
    """Gives a compacted table the metadata of the parts it replaces (None: the schema's)."""

    def __post_init__(self) -> None:
        names = set(self.schema.names)
        need = {"key", "error", *self.key_fields, *self.filters}
        if not need <= set(self.index_columns) or not set(self.index_columns) <= names:
            raise ValueError(f"layout {self.kind!r}: index columns {self.index_columns} must "
                             f"hold key, error, key fields and filters, all in the schema")

    @property
    def text_columns(self) -> tuple[str, ...]:
        """The schema's columns not kept in memory, in schema order."""
        return tuple(n for n in self.schema.names if n not in self.index_columns)


def schema_mismatch(schema: pa.Schema, want_schema: pa.Schema) -> str | None:
    """What differs between ``schema`` and ``want_schema`` (names, order, types), or None."""
    want = [(f.name, f.type) for f in want_schema]
    got = [(f.name, f.type) for f in schema]
    if got == want:
        return None
    names = [n for n, _ in got]
    missing = [n for n, _ in want if n not in names]
    extra = [n for n in names if n not in dict(want)]
    if missing or extra:
        return "columns " + "; ".join(
            x for x in (f"missing {missing}" if missing else "",
                        f"unexpected {extra}" if extra else "") if x)
    types = dict(got)
    for n, t in want:
        if types[n] != t:
            return f"column {n!r} is {types[n]}, expected {t}"
    return f"columns in order {names}, expected {[n for n, _ in want]}"


def key_mismatches(table: pa.Table, layout: PartLayout) -> np.ndarray:
    """Row positions of ``table`` whose ``key`` is not the hash of its key fields."""
    cols = [table[f].to_pylist() for f in ("key", *layout.key_fields)]
    key_of = layout.key_of
    bad = [i for i, (k, *fields) in enumerate(zip(*cols, strict=True)) if k != key_of(*fields)]
    return np.asarray(bad, dtype=np.int64)


# ---------------------------------------------------------------------------- part files


def part_name(stamp: int | None = None) -> str:
    """A new part's name; ``stamp`` (default: now, in ns) orders it among the others."""
    ts = time.time_ns() if stamp is None else stamp
    return f"part-{ts:020d}-{os.getpid():07d}-{uuid.uuid4().hex[:12]}.parquet"


def stamp_of(name: str) -> int | None:
    """The creation stamp in a part's name; None for names of earlier forms."""
    m = _STAMPED.fullmatch(name)
    return int(m.group(1)) if m else None


def part_order(name: str) -> tuple[int, str]:
    """Sort key of the latest-wins order: stamp (unstamped names first), then name."""
    stamp = stamp_of(name)
    return (-1 if stamp is None else stamp, name)


def part_names(root: Path) -> list[str]:
    """Names of the part files in ``root`` (``PART_GLOB``), unordered: one directory listing,
    no stat per file (cheap enough to ask before every batch whether another process wrote)."""
    try:
        with os.scandir(root) as entries:
            return [e.name for e in entries if e.name.startswith("part-")
                    and e.name.endswith(".parquet") and e.is_file()]
    except (FileNotFoundError, NotADirectoryError):
        return []


def list_parts(root: Path) -> list[str]:
    """Names of the part files in ``root``, oldest first."""
    return sorted(part_names(root), key=part_order)


def temp_files(root: Path) -> list[Path]:
    """Temporary files of writes that never finished (or are in progress) in ``root``."""
    if not root.is_dir():
        return []
    found = {*root.glob(f"{TMP_PREFIX}*.tmp"), *root.glob(_LEGACY_TMP_GLOB)}
    return sorted(p for p in found if p.is_file())


def write_part(root: Path, table: pa.Table, stamp: int | None = None) -> Path:
    """Write ``table`` as a new part of ``root`` atomically: a temporary file, fsynced, renamed
    into place (a crash leaves at most a ``.tmp-`` file, never a visible half part)."""
    root.mkdir(parents=True, exist_ok=True)
    name = part_name(stamp)
    tmp = root / f"{TMP_PREFIX}{name}.tmp"
    try:
        pq.write_table(table, tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, root / name)
    finally:
        tmp.unlink(missing_ok=True)
    return root / name


def check_schema(path: Path, layout: PartLayout) -> None:
    """Refuse ``path`` unless it is a readable part of ``layout``'s kind, version and exact
    columns (FileNotFoundError passes through: a part compacted away meanwhile is skipped)."""
    schema = _readable(path, layout, lambda: pq.read_schema(path))
    require_layout(schema, layout.kind, path, layout.fix)
    problem = schema_mismatch(schema, layout.schema)
    if problem:
        raise CacheCorruptError(f"{path}: not a {layout.what}: {problem}; "
                                "move it out of the cache directory")


def check_keys(path: Path, table: pa.Table, layout: PartLayout) -> None:
    """Refuse a part with any row whose key is not the hash of its key fields."""
    bad = key_mismatches(table, layout)
    if bad.size:
        raise CacheCorruptError(
            f"{path}: {bad.size} of {table.num_rows} rows have a key that does not match their "
            f"fields (first: row {int(bad[0])}); move the part out of the cache directory "
            "(`pluralign cache verify` lists every bad part)")


def read_columns(path: Path, columns: Sequence[str], layout: PartLayout) -> pa.Table:
    """``columns`` of one part; an unreadable file raises :class:`CacheCorruptError`."""
    table: pa.Table = _readable(path, layout, lambda: pq.read_table(path, columns=list(columns)))
    return table


_T = TypeVar("_T")


def _readable(path: Path, layout: PartLayout, read: Callable[[], _T]) -> _T:
    """``read()``, with an unreadable file turned into :class:`CacheCorruptError` naming it
    (FileNotFoundError passes through: the caller skips a part compacted away meanwhile)."""
    try:
        return read()
    except FileNotFoundError:
        raise
    except (pa.ArrowException, OSError) as e:
        raise CacheCorruptError(
            f"{path}: not a readable {layout.what} ({e}); move it out of the cache directory"
        ) from None


def read_checked(path: Path, layout: PartLayout) -> pa.Table:
    """The index columns of one part, after every check a first read makes."""
    check_schema(path, layout)
    table = read_columns(path, layout.index_columns, layout)
    check_keys(path, table, layout)
    return table


# ---------------------------------------------------------------------------- index


class _Index:
    """In-memory index columns of every part of one store directory, refreshed on new parts;
    shared by every store object of this process on that directory."""

    def __init__(self, root: Path, layout: PartLayout) -> None:
        self.root = root
        self.layout = layout
        self.lock = threading.RLock()
        self.parts: dict[str, pa.Table] = {}
        self.table: pa.Table = layout.schema.empty_table().select(list(layout.index_columns))
        self.part_of = np.zeros(0, dtype=np.int64)
        self.row_of = np.zeros(0, dtype=np.int64)
        self.names: list[str] = []
        self.version = 0
        self.stale = False
        """Parts were added since the concatenated table was built (it is rebuilt when read:
        a writer appending a part every few hundred rows must not re-concatenate every part
        each time)."""
        self.resolved: dict[tuple[str | None, ...], tuple[int, pa.Table, pa.Table]] = {}

    def refresh(self) -> None:
        with self.lock:
            names = list_parts(self.root)
            if names == self.names and not self.stale:
                return
            for n in set(self.parts) - set(names):
                del self.parts[n]  # removed by a compaction elsewhere
            for n in names:
                if n not in self.parts:
                    try:
                        self.parts[n] = read_checked(self.root / n, self.layout)
                    except FileNotFoundError:
                        continue  # compacted away between listing and reading
            self._rebuild()

    def add(self, name: str, table: pa.Table) -> None:
        with self.lock:
            self.parts[name] = table.select(list(self.layout.index_columns))
            self.stale = True

    def built(self) -> None:
        """Rebuild the concatenated table if parts were added since (hold the lock)."""
        if self.stale:
            self._rebuild()

    def _rebuild(self) -> None:
        self.names = sorted(self.parts, key=part_order)
        tables = [self.parts[n] for n in self.names]
        sizes = np.array([t.num_rows for t in tables], dtype=np.int64)
        self.table = (pa.concat_tables(tables) if tables else
                      self.layout.schema.empty_table().select(list(self.layout.index_columns)))
        self.part_of = np.repeat(np.arange(len(tables), dtype=np.int64), sizes)
        starts = np.cumsum(sizes) - sizes
        self.row_of = np.arange(int(sizes.sum()), dtype=np.int64) - np.repeat(starts, sizes)
        self.version += 1
        self.stale = False
        self.resolved.clear()

    def resolve(self, values: tuple[str | None, ...], *, refresh: bool = True
                ) -> tuple[pa.Table, pa.Table]:
        if refresh:
            self.refresh()
        with self.lock:
            self.built()
            hit = self.resolved.get(values)
            if hit is not None and hit[0] == self.version:
                return hit[1], hit[2]
            table = self.table.append_column("_pos", pa.array(np.arange(self.table.num_rows)))
            mask = None
            for column, value in zip(self.layout.filters, values, strict=False):
                if value is not None:
                    m = pc.equal(table[column], value)
                    mask = m if mask is None else pc.and_(mask, m)
            if mask is not None:
                table = table.filter(mask)
            ok, bad = _latest_per_key(table)
            self.resolved[values] = (self.version, ok, bad)
            return ok, bad

    def text(self, pos: np.ndarray, columns: Sequence[str]) -> dict[str, pa.Array]:
        """``columns`` (not in memory) of the rows at global positions ``pos``, from disk."""
        types = {f.name: f.type for f in self.layout.schema}
        cols: dict[str, list[object]] = {c: [None] * len(pos) for c in columns}
        if len(pos):
            parts = self.part_of[pos]
            for p in np.unique(parts):
                where = np.flatnonzero(parts == p)
                text = read_columns(self.root / self.names[int(p)], columns, self.layout)
                picked = text.take(pa.array(self.row_of[pos[where]]))
                for c in columns:
                    for i, v in zip(where.tolist(), picked[c].to_pylist(), strict=True):
                        cols[c][i] = v
        return {c: pa.array(cols[c], types[c]) for c in columns}


def _latest_per_key(table: pa.Table) -> tuple[pa.Table, pa.Table]:
    # Rows are in latest-wins part order, then row order: the last occurrence is the latest.
    codes = np.asarray(pc.dictionary_encode(table["key"].combine_chunks()).indices)
    success = np.asarray(pc.is_null(table["error"]).to_numpy(zero_copy_only=False), dtype=bool)
    n = len(codes)

    def last_rows(sel: np.ndarray) -> np.ndarray:
        rows = np.flatnonzero(sel)
        if rows.size == 0:
            return rows
        _, first_rev = np.unique(codes[rows][::-1], return_index=True)
        return np.sort(rows[::-1][first_rev])

    ok_rows = last_rows(success)
    done = np.zeros(int(codes.max()) + 1 if n else 0, dtype=bool)
    done[codes[ok_rows]] = True
    bad_rows = last_rows(~success & ~done[codes] if n else success)
    return table.take(pa.array(ok_rows)), table.take(pa.array(bad_rows))


_INDEXES: dict[tuple[Path, str], _Index] = {}
_INDEXES_LOCK = threading.Lock()


def _index_for(root: Path, layout: PartLayout) -> _Index:
    with _INDEXES_LOCK:
        key = (root.resolve(), layout.kind)
        if key not in _INDEXES:
            _INDEXES[key] = _Index(root, layout)
        return _INDEXES[key]


# ---------------------------------------------------------------------------- the store


class PartStore:
    """One directory of append-only parts of one layout (see the module for the rules)."""

    def __init__(self, root: str | os.PathLike[str], layout: PartLayout) -> None:
        self.root = Path(root)
        """The store directory (created on the first append)."""
        self.layout = layout
        """What its parts hold."""
        if self.root.exists() and not self.root.is_dir():
            raise InputError(f"a {layout.kind} cache must be a directory", file=self.root)
        self._index = _index_for(self.root, layout)

    @property
    def lock(self) -> threading.RLock:
        """Held across a :meth:`resolve` and the :meth:`with_text` of its rows, so that no
        refresh in between (another thread's) moves the rows' positions."""
        return self._index.lock

    def parts(self) -> list[Path]:
        """The visible part files, oldest first."""
        return [self.root / n for n in list_parts(self.root)]

    def part_names(self) -> frozenset[str]:
        """Names of the visible parts: one directory listing, nothing read. Equal names mean
        equal contents (a part is never rewritten), so a caller that remembers the names it
        read, plus those of its own appends, knows when another writer added or removed one."""
        return frozenset(part_names(self.root))

    def refresh(self) -> None:
        """Read (and check) parts that appeared since the last look."""
        self._index.refresh()

    def append(self, table: pa.Table, *, keys_checked: bool = False) -> Path | None:
        """Write ``table`` (the layout's schema; metadata kept) as ONE new part, redacted of
        secrets; None when it has no rows. Keys are checked against their fields first unless
        the caller just computed them (``keys_checked``): a bad row raises InputError naming it,
        before anything is written."""
        if table.num_rows == 0:
            return None
        problem = schema_mismatch(table.schema, self.layout.schema)
        if problem:
            raise InputError(f"not a {self.layout.kind} table: {problem}")
        if not keys_checked:
            bad = key_mismatches(table, self.layout)
            if bad.size:
                raise InputError("key does not match the key fields", record=int(bad[0]),
                                 field="key", hint=f"{bad.size} of {table.num_rows} rows")
        table = redact_table(table, keep=("key", *self.layout.key_fields))
        path = write_part(self.root, table)
        self._index.add(path.name, table)
        return path

    def resolve(self, *values: str | None, refresh: bool = True) -> tuple[pa.Table, pa.Table]:
        """(successes, failures) under the latest-wins rule, optionally narrowed to one value of
        each of the layout's ``filters``: the index columns plus ``_pos`` (global row).
        ``refresh=False`` resolves the parts already read, without looking for new ones."""
        if len(values) > len(self.layout.filters):
            raise TypeError(f"{self.layout.kind}: filters are {self.layout.filters}")
        pad = (None,) * (len(self.layout.filters) - len(values))
        return self._index.resolve(tuple(values) + pad, refresh=refresh)

    def with_text(self, table: pa.Table, columns: Sequence[str] | None = None) -> pa.Table:
        """``table`` (rows of :meth:`resolve`, with ``_pos``) plus ``columns`` (default: every
        column not in memory) read from disk. Hold :attr:`lock` across both calls."""
        cols = self.layout.text_columns if columns is None else tuple(columns)
        with self._index.lock:
            text = self._index.text(np.asarray(table["_pos"], dtype=np.int64), cols)
        for c in cols:
            table = table.append_column(c, text[c])
        return table

    def latest(self, *values: str | None, keys: Sequence[str] | None = None,
               refresh: bool = True) -> pa.Table:
        """Every column of the winning row per key (the latest success, else the latest
        failure), in write order; ``keys`` narrows to those keys."""
        with self.lock:
            ok, bad = self.resolve(*values, refresh=refresh)
            both = pa.concat_tables([ok, bad])
            if keys is not None:
                wanted = pa.array(list(keys), pa.string())
                both = both.filter(pc.is_in(both["key"], value_set=wanted))
            both = both.take(pc.sort_indices(both["_pos"]))
            full = self.with_text(both)
        return full.select(self.layout.schema.names).cast(self.layout.schema)

    def compact(self) -> Path | None:
        """Merge every visible part into one (latest success per key, plus the failures of keys
        without one), written atomically before the merged parts are removed; None when there
        is nothing to merge."""
        idx = self._index
        idx.refresh()
        with idx.lock:
            names = list(idx.names)
            if len(names) < 2:
                return None
            table = self.latest(refresh=False)  # exactly the parts named above
            if self.layout.merged_metadata is not None:
                table = self.layout.merged_metadata(table, [self.root / n for n in names])
            # The oldest merged stamp: a part appended meanwhile still sorts as newer.
            stamps = [s for s in map(stamp_of, names) if s is not None]
            path = write_part(self.root, table, min(stamps, default=0))
            for n in names:
                (self.root / n).unlink(missing_ok=True)
            idx.refresh()
            return path


# ---------------------------------------------------------------------------- maintenance


@dataclass
class PartCheck:
    """What ``verify`` found about one part file."""

    path: Path
    """The part."""
    rows: int
    """Rows it holds (0 when unreadable)."""
    problem: str | None = None
    """Why it cannot be trusted; None when it is sound."""


@dataclass
class CacheCheck:
    """What ``verify`` found about one store directory."""

    parts: list[PartCheck]
    """Every visible part, oldest first."""
    temp_files: list[Path]
    """Temporary files left by writes that never finished (or are in progress)."""
    rows: int
    """Rows over the sound parts."""
    superseded: int
    """Rows of sound parts that a later row of the same key replaces (removed by ``gc``)."""

    @property
    def bad(self) -> list[PartCheck]:
        """The parts that cannot be trusted."""
        return [p for p in self.parts if p.problem is not None]


def verify(root: str | os.PathLike[str], layout: PartLayout) -> CacheCheck:
    """Check every part of one store (kind and version, exact schema, every row's key against
    its fields) and list leftover temporary files; reads each part once, changes nothing."""
    d = Path(root)
    checks = []
    for n in list_parts(d):
        try:
            rows, problem = read_checked(d / n, layout).num_rows, None
        except FileNotFoundError:
            continue  # compacted away meanwhile
        except PluralignError as e:
            rows, problem = 0, str(e).removeprefix(f"{d / n}: ")
        checks.append(PartCheck(d / n, rows, problem))
    rows = sum(c.rows for c in checks if c.problem is None)
    superseded = 0
    if checks and not any(c.problem for c in checks):
        ok, bad = PartStore(d, layout).resolve()
        superseded = rows - ok.num_rows - bad.num_rows
    return CacheCheck(checks, temp_files(d), rows, superseded)


@dataclass
class GCReport:
    """What ``gc`` removed."""

    temp_files_removed: list[Path]
    """Stale temporary files deleted."""
    rows_before: int
    """Rows over all parts before compaction."""
    rows_after: int
    """Rows after (latest success per key plus unresolved failures)."""
    parts_before: int
    """Part files before."""
    parts_after: int
    """Part files after."""


def refuse_bad(checks: Sequence[CacheCheck]) -> None:
    """Raise CacheCorruptError naming the first bad part (and how many more) of ``checks``."""
    bad = [p for c in checks for p in c.bad]
    if bad:
        more = f" (and {len(bad) - 1} more bad parts)" if len(bad) > 1 else ""
        raise CacheCorruptError(f"{bad[0].path}: {bad[0].problem}{more}; nothing was changed")


def gc(root: str | os.PathLike[str], layout: PartLayout, *, min_age: float = 600.0,
       check: CacheCheck | None = None) -> GCReport:
    """Remove temporary files older than ``min_age`` seconds (writes killed midway; younger ones
    may belong to a live writer), drop superseded rows and compact into one part.

    Refuses (CacheCorruptError naming the parts, changing nothing) when a part cannot be
    trusted: move it out first, so nothing of unknown origin is merged into the store.
    ``check`` is a :func:`verify` result just made (saves reading every part twice).
    """
    check = verify(root, layout) if check is None else check
    refuse_bad([check])
    now = time.time()
    removed = []
    for tmp in check.temp_files:
        try:
            if now - tmp.stat().st_mtime >= min_age:
                tmp.unlink()
                removed.append(tmp)
        except FileNotFoundError:
            continue  # its writer finished or another gc took it
    if check.parts:
        PartStore(root, layout).compact()
    after = verify(root, layout)
    return GCReport(removed, check.rows, after.rows, len(check.parts), len(after.parts))
