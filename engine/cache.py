"""The score cache: every attribute score computed, as append-only Parquet parts keyed by content.

A row's key hashes (benchmark, scenario, response, attribute, scorer identity, sample). Each
append writes one new part under a temporary name and renames it; existing parts are never
rewritten, so concurrent appenders from many processes cannot clobber each other.
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pluralign.engine.benchmark import Benchmark
from pluralign.engine.errors import InputError, PluralignError
from pluralign.engine.files import require_layout
from pluralign.engine.hashing import canonical_json, settings_digest, text_digest
from pluralign.engine.manifest import current as current_manifest
from pluralign.engine.manifest import environment_secrets, scrub
from pluralign.schemas.arrow import SCORE_SCHEMA
from pluralign.schemas.records import ScoreRecord

CACHE_KIND = "scores"
"""The ``pluralign.kind`` every score part carries."""
PART_GLOB = "part-*.parquet"
_TMP_PREFIX = ".tmp-"
_INDEX_COLUMNS = (
    "key", "benchmark", "scenario", "response", "attribute", "scorer", "sample", "score", "error",
)
_TEXT_COLUMNS = ("reasoning", "meta")
_KEY_FIELDS = ("benchmark", "scenario", "response", "attribute", "scorer", "sample")

Samples = int | Sequence[int] | None
"""Which sample indices to use: the first n (int), these ones (sequence), or all (None)."""


class CacheCorruptError(PluralignError):
    """A cache part cannot be read, or is not what it claims (another schema, keys that do not
    match their fields); the message names the file and what is wrong."""


# ---------------------------------------------------------------------------- secrets

_SECRETS: set[str] = set()
_SECRETS_LOCK = threading.Lock()
REDACTED = "[redacted]"
"""What a registered secret is replaced by in every stored text."""


def register_secret(value: str | None) -> None:
    """Register a secret (an API key) that must never be stored: every text column of every
    row written to a cache of this process is redacted of it. Backends register their keys."""
    if value and len(value) >= 4:  # a 1-3 character "key" would shred ordinary text
        with _SECRETS_LOCK:
            _SECRETS.add(value)


def _secrets() -> list[str]:
    # Registered keys plus credential-named environment values (a driver that never opened a
    # backend itself still knows the key its actors read).
    with _SECRETS_LOCK:
        found = _SECRETS | set(environment_secrets())
    return sorted(found, key=len, reverse=True)  # longest first: no partial leftovers


def redact_secrets(text: str | None, secrets: Sequence[str] | None = None) -> str | None:
    """``text`` with every registered secret replaced by :data:`REDACTED`."""
    if not text:
        return text
    for s in _secrets() if secrets is None else secrets:
        if s in text:
            text = text.replace(s, REDACTED)
    return text


def redact_table(table: pa.Table, keep: Sequence[str] = ()) -> pa.Table:
    """Every string column except ``keep`` (the key fields) redacted of registered secrets."""
    secrets = _secrets()
    if not secrets:
        return table
    for i, f in enumerate(table.schema):
        if f.name in keep or not pa.types.is_string(f.type):
            continue
        col = table.column(i)
        values = col.to_pylist()
        cleaned = [redact_secrets(v, secrets) for v in values]
        if cleaned != values:
            table = table.set_column(i, f, pa.array(cleaned, f.type))
    return table


# ---------------------------------------------------------------------------- keys


_quote = json.encoder.encode_basestring  # type: ignore[attr-defined]
"""JSON string literal without ASCII escaping, as ``json.dumps(s, ensure_ascii=False)``."""


def scorer_identity(name: str, settings: Mapping[str, Any]) -> str:
    """``name#hash``: the hash covers every setting that changes the scorer's answers."""
    return f"{name}#{settings_digest(settings)}"


def score_key(
    benchmark: str, scenario: str, response: int, attribute: str, scorer: str, sample: int
) -> str:
    """Content address of one score row: SHA-256 hex of exactly the key fields."""
    # The canonical_json text of the six fields (keys sorted), built directly: this runs once
    # per cached row, and the generic walk costs several times more.
    q = _quote
    text = (
        f'{{"attribute":{q(attribute)},"benchmark":{q(benchmark)},"response":{int(response)},'
        f'"sample":{int(sample)},"scenario":{q(scenario)},"scorer":{q(scorer)}}}'
    )
    return text_digest(text)


@dataclass(frozen=True)
class ScoreFailure:
    """An item that produced no score: stored as a row with ``error`` set and no score."""

    benchmark: str
    """Benchmark identity."""
    scenario: str
    """Scenario id."""
    response: int
    """Response index within the scenario."""
    attribute: str
    """Attribute name."""
    scorer: str
    """Scorer identity."""
    sample: int
    """Sample index."""
    error: str
    """Why it failed (never containing secrets)."""
    meta: Mapping[str, str] = field(default_factory=dict)
    """Free-form provenance; never part of the key."""


# ---------------------------------------------------------------------------- rows


def _row_of(obj: ScoreRecord | ScoreFailure | Mapping[str, Any], pos: int) -> dict[str, Any]:
    if isinstance(obj, ScoreRecord):
        raw: dict[str, Any] = {f: getattr(obj, f) for f in _KEY_FIELDS}
        raw.update(score=obj.score, reasoning=obj.reasoning or None, error=None, meta=obj.meta)
    elif isinstance(obj, ScoreFailure):
        raw = {f: getattr(obj, f) for f in _KEY_FIELDS}
        raw.update(score=None, reasoning=None, error=obj.error, meta=obj.meta)
    elif isinstance(obj, Mapping):
        raw = dict(obj)
    else:
        raise InputError(f"not a score record: {type(obj).__name__}", record=pos)
    return _checked_row(raw, pos)


def _checked_row(raw: dict[str, Any], pos: int) -> dict[str, Any]:
    for f in ("benchmark", "scenario", "attribute", "scorer"):
        if not isinstance(raw.get(f), str) or not raw[f]:
            raise InputError("must be a non-empty string", record=pos, field=f)
    for f in ("response", "sample"):
        v = raw.get(f)
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
            raise InputError(f"must be an integer >= 0, got {v!r}", record=pos, field=f)
    score, error = raw.get("score"), raw.get("error")
    if error is not None and (not isinstance(error, str) or not error):
        raise InputError("must be a non-empty string or None", record=pos, field="error")
    if (score is None) == (error is None):
        raise InputError("a row has either a score or an error, not both or neither",
                         record=pos, field="score")
    if score is not None and (isinstance(score, bool) or not isinstance(score, (int, float))
                              or not math.isfinite(score)):
        raise InputError(f"score {score!r} is not a finite number", record=pos, field="score")
    key = score_key(*(raw[f] for f in _KEY_FIELDS))
    if raw.get("key") not in (None, key):
        raise InputError("key does not match the key fields", record=pos, field="key",
                         hint="build keys with engine.cache.score_key")
    meta = raw.get("meta")
    return {
        "key": key, **{f: raw[f] for f in _KEY_FIELDS},
        "response": int(raw["response"]), "sample": int(raw["sample"]),
        "score": None if score is None else float(score),
        "reasoning": raw.get("reasoning") or None, "error": error,
        "meta": canonical_json(meta) if isinstance(meta, Mapping) and meta else (meta or None),
    }


def _rows_table(rows: Sequence[dict[str, Any]]) -> pa.Table:
    cols = {f.name: [r[f.name] for r in rows] for f in SCORE_SCHEMA}
    return pa.table(cols, schema=SCORE_SCHEMA)


# ---------------------------------------------------------------------------- parts


def _new_part_name(stamp: int | None = None) -> str:
    # Sorting part names sorts by creation time: the order that decides "latest wins".
    ts = time.time_ns() if stamp is None else stamp
    return f"part-{ts:020d}-{os.getpid():07d}-{uuid.uuid4().hex[:12]}.parquet"


SCORER_META_KEY = b"pluralign.scorers"
"""Part metadata: JSON {scorer identity: decoded settings} of the scorers whose rows it holds."""


def _with_scorer_settings(table: pa.Table, settings: Mapping[str, Any] | None = None) -> pa.Table:
    """Attach ``settings`` ({identity: settings}); by default the running command's scorer
    settings for every scorer in ``table``."""
    if settings is None:
        m = current_manifest()
        if m is None or not m.scorer:
            return table
        decoded = scrub(m.scorer, _secrets())
        settings = {sc: decoded for sc in set(table["scorer"].to_pylist())}
    if not settings:
        return table
    meta = dict(table.schema.metadata or {})
    meta[SCORER_META_KEY] = json.dumps(settings, sort_keys=True, default=str).encode()
    return table.replace_schema_metadata(meta)


def _stamp_of(name: str) -> int:
    try:
        return int(name.split("-")[1])
    except (IndexError, ValueError):
        return 0  # not one of our names: treat as oldest


def _write_part(root: Path, table: pa.Table, name: str) -> Path:
    """Write ``table`` to ``root/name`` atomically: a temporary file renamed into place."""
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f"{_TMP_PREFIX}{name}.tmp"
    try:
        pq.write_table(table, tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, root / name)
    finally:
        tmp.unlink(missing_ok=True)
    return root / name


def _check_schema(path: Path) -> None:
    try:
        schema = pq.read_schema(path)
    except FileNotFoundError:
        raise  # compacted away meanwhile: the caller skips it
    except (pa.ArrowException, OSError) as e:
        raise CacheCorruptError(
            f"{path}: not a readable score-cache part ({e}); move it out of the cache directory"
        ) from None
    require_layout(schema, CACHE_KIND, path,
                   "move the old cache aside or score into a new cache directory")
    problem = schema_mismatch(schema)
    if problem:
        raise CacheCorruptError(f"{path}: not a score-cache part: {problem}; "
                                "move it out of the cache directory")


def schema_mismatch(schema: pa.Schema) -> str | None:
    """What differs between ``schema`` and :data:`SCORE_SCHEMA` (names, order, types), or None."""
    want = [(f.name, f.type) for f in SCORE_SCHEMA]
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


def key_mismatches(table: pa.Table) -> np.ndarray:
    """Row positions of ``table`` whose ``key`` is not the hash of its key fields."""
    cols = [table[f].to_pylist() for f in ("key", *_KEY_FIELDS)]
    bad = [i for i, (k, *fields) in enumerate(zip(*cols, strict=True))
           if k != score_key(*fields)]
    return np.asarray(bad, dtype=np.int64)


def _check_keys(path: Path, table: pa.Table) -> None:
    bad = key_mismatches(table)
    if bad.size:
        raise CacheCorruptError(
            f"{path}: {bad.size} of {table.num_rows} rows have a key that does not match their "
            f"fields (first: row {int(bad[0])}); move the part out of the cache directory "
            "(`pluralign cache verify` lists every bad part)")


def _read_columns(path: Path, columns: Sequence[str]) -> pa.Table:
    try:
        return pq.read_table(path, columns=list(columns))
    except FileNotFoundError:
        raise
    except (pa.ArrowException, OSError) as e:
        raise CacheCorruptError(
            f"{path}: not a readable score-cache part ({e}); move it out of the cache directory"
        ) from None


# ---------------------------------------------------------------------------- index


class _Index:
    """In-memory key columns of every part of one cache directory, refreshed on new parts."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.lock = threading.RLock()
        self.parts: dict[str, pa.Table] = {}
        self.table: pa.Table | None = None
        self.part_of = np.zeros(0, dtype=np.int64)
        self.row_of = np.zeros(0, dtype=np.int64)
        self.names: list[str] = []
        self.version = 0
        self.resolved: dict[tuple[str | None, str | None], tuple[int, pa.Table, pa.Table]] = {}
        self._rebuild()

    def listing(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.glob(PART_GLOB) if p.is_file())

    def refresh(self) -> None:
        with self.lock:
            names = self.listing()
            if names == self.names:
                return
            for n in set(self.parts) - set(names):
                del self.parts[n]  # removed by a compaction elsewhere
            for n in names:
                if n not in self.parts:
                    path = self.root / n
                    try:
                        _check_schema(path)
                        table = _read_columns(path, _INDEX_COLUMNS)
                        _check_keys(path, table)  # once per part, at its first read
                        self.parts[n] = table
                    except FileNotFoundError:
                        continue  # compacted away between listing and reading
            self._rebuild()

    def add(self, name: str, table: pa.Table) -> None:
        with self.lock:
            self.parts[name] = table.select(list(_INDEX_COLUMNS))
            self._rebuild()

    def _rebuild(self) -> None:
        self.names = sorted(self.parts)
        tables = [self.parts[n] for n in self.names]
        sizes = np.array([t.num_rows for t in tables], dtype=np.int64)
        self.table = (pa.concat_tables(tables) if tables
                      else SCORE_SCHEMA.empty_table().select(list(_INDEX_COLUMNS)))
        self.part_of = np.repeat(np.arange(len(tables), dtype=np.int64), sizes)
        starts = np.cumsum(sizes) - sizes
        self.row_of = np.arange(int(sizes.sum()), dtype=np.int64) - np.repeat(starts, sizes)
        self.version += 1
        self.resolved.clear()

    def resolve(self, benchmark: str | None, scorer: str | None) -> tuple[pa.Table, pa.Table]:
        """(successes, failures): the latest success per key; the latest failure per key that
        has no success. Each table has the index columns plus ``_pos`` (global row)."""
        self.refresh()
        with self.lock:
            hit = self.resolved.get((benchmark, scorer))
            if hit is not None and hit[0] == self.version:
                return hit[1], hit[2]
            assert self.table is not None
            table = self.table.append_column("_pos", pa.array(np.arange(self.table.num_rows)))
            mask = None
            if benchmark is not None:
                mask = pc.equal(table["benchmark"], benchmark)
            if scorer is not None:
                m = pc.equal(table["scorer"], scorer)
                mask = m if mask is None else pc.and_(mask, m)
            if mask is not None:
                table = table.filter(mask)
            ok, bad = _latest_per_key(table)
            self.resolved[(benchmark, scorer)] = (self.version, ok, bad)
            return ok, bad


def _latest_per_key(table: pa.Table) -> tuple[pa.Table, pa.Table]:
    # Rows are in part-name order (creation time), so the last occurrence is the latest.
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


_INDEXES: dict[Path, _Index] = {}
_INDEXES_LOCK = threading.Lock()


def _index_for(root: Path) -> _Index:
    with _INDEXES_LOCK:
        key = root.resolve()
        if key not in _INDEXES:
            _INDEXES[key] = _Index(root)
        return _INDEXES[key]


# ---------------------------------------------------------------------------- the cache


class ScoreCache:
    """A directory of score parts. Opening it checks every part's schema version."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        """The cache directory (created on the first append)."""
        if self.root.exists() and not self.root.is_dir():
            raise InputError("the score cache must be a directory", file=self.root)
        self._index = _index_for(self.root)
        self._index.refresh()

    def parts(self) -> list[Path]:
        """The visible part files, oldest first."""
        return [self.root / n for n in self._index.listing()]

    def append(
        self,
        records: Iterable[ScoreRecord | ScoreFailure | Mapping[str, Any]],
        failures: Iterable[ScoreFailure] = (),
    ) -> Path | None:
        """Write ``records`` and ``failures`` as ONE new part; None when both are empty.

        A mapping is a row of :data:`pluralign.schemas.arrow.SCORE_SCHEMA` (``key`` optional; a failure
        has ``error`` set and ``score`` None). Bad rows raise before anything is written.
        """
        items = [*records, *failures]
        if not items:
            return None
        table = _rows_table([_row_of(r, i) for i, r in enumerate(items)])
        table = _with_scorer_settings(redact_table(table, keep=("key", *_KEY_FIELDS)))
        name = _new_part_name()
        path = _write_part(self.root, table, name)
        self._index.add(name, table)
        return path

    def completed_keys(self, benchmark: str | None = None, scorer: str | None = None) -> set[str]:
        """Keys with a successful score (a failed item is not complete: a rerun retries it)."""
        ok, _ = self._index.resolve(benchmark, scorer)
        return set(ok["key"].to_pylist())

    def failed(self, benchmark: str | None = None, scorer: str | None = None) -> pa.Table:
        """The latest failure of each key that never succeeded (key columns and ``error``)."""
        _, bad = self._index.resolve(benchmark, scorer)
        return bad.drop_columns(["_pos", "score"])

    def read(self, benchmark: str, scorer: str, *, text: bool = False) -> pa.Table:
        """The latest successful row per key of one benchmark and scorer, in write order.

        ``text=True`` adds the ``reasoning`` and ``meta`` columns (read from disk on demand).
        """
        ok, _ = self._index.resolve(benchmark, scorer)
        out = ok.drop_columns(["_pos", "error"])
        if not text:
            return out
        with self._index.lock:
            return _with_text(out, self._index, np.asarray(ok["_pos"]))

    def predictions(self, bench: Benchmark, scorer: str, samples: Samples = None) -> np.ndarray:
        """float64 (N, A): mean score over the chosen samples; NaN where none is cached."""
        sums, counts = self._accumulate(bench, scorer, samples)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)

    def missing(
        self, bench: Benchmark, scorer: str, samples: int | Sequence[int] = 1
    ) -> list[tuple[str, int, str, int]]:
        """(scenario id, response, attribute, sample) of every score not cached yet."""
        wanted = list(range(samples)) if isinstance(samples, int) else sorted(set(samples))
        present = self._presence(bench, scorer, wanted)
        ids = [s.id for s in bench.scenarios]
        out = []
        for row, a, j in np.argwhere(~present):
            s = int(bench.scenario_of[row])
            out.append((ids[s], int(bench.response_index[row]), bench.attributes[a], wanted[j]))
        return out

    def compact(self) -> Path | None:
        """Merge every visible part into one (latest success per key, plus unresolved
        failures), written atomically before the merged parts are removed."""
        self._index.refresh()
        with self._index.lock:
            ok, bad = self._index.resolve(None, None)
            names = list(self._index.names)
            if len(names) < 2:
                return None
            pos = np.sort(np.concatenate([np.asarray(ok["_pos"]), np.asarray(bad["_pos"])]))
            assert self._index.table is not None
            full = _with_text(self._index.table.take(pa.array(pos)), self._index, pos)
            table = full.select([f.name for f in SCORE_SCHEMA]).cast(SCORE_SCHEMA)
            table = _with_scorer_settings(
                table, _stored_settings([self.root / n for n in names]))
            # Keep the oldest merged stamp so parts appended meanwhile still sort as newer.
            name = _new_part_name(min(_stamp_of(n) for n in names))
            path = _write_part(self.root, table, name)
            for n in names:
                (self.root / n).unlink(missing_ok=True)
            self._index.refresh()
            return path

    # -- internals ---------------------------------------------------------------------
    def _located(self, bench: Benchmark, scorer: str) -> tuple[np.ndarray, ...]:
        """(flat response row, attribute column, sample, score) of every cached success."""
        ok, _ = self._index.resolve(bench.identity, scorer)
        ids = pa.array([s.id for s in bench.scenarios], pa.string())
        sidx = pc.index_in(ok["scenario"], value_set=ids).to_numpy(zero_copy_only=False)
        aidx = pc.index_in(ok["attribute"], value_set=pa.array(list(bench.attributes))
                           ).to_numpy(zero_copy_only=False)
        resp = np.asarray(ok["response"], dtype=np.int64)
        sample = np.asarray(ok["sample"], dtype=np.int64)
        score = np.asarray(ok["score"], dtype=np.float64)
        known = ~(np.isnan(sidx.astype(np.float64)) | np.isnan(aidx.astype(np.float64)))
        s = np.nan_to_num(sidx.astype(np.float64)).astype(np.int64)
        counts = np.diff(bench.offsets)
        known &= resp < counts[s]  # a response index the benchmark does not have
        row = bench.offsets[s] + resp
        a = np.nan_to_num(aidx.astype(np.float64)).astype(np.int64)
        return row[known], a[known], sample[known], score[known]

    def _accumulate(
        self, bench: Benchmark, scorer: str, samples: Samples
    ) -> tuple[np.ndarray, np.ndarray]:
        row, a, sample, score = self._located(bench, scorer)
        keep = _sample_mask(sample, samples)
        shape = (bench.n_responses, len(bench.attributes))
        flat = row[keep] * shape[1] + a[keep]
        sums = np.bincount(flat, weights=score[keep], minlength=shape[0] * shape[1])
        counts = np.bincount(flat, minlength=shape[0] * shape[1])
        return sums.reshape(shape), counts.reshape(shape)

    def _presence(self, bench: Benchmark, scorer: str, wanted: list[int]) -> np.ndarray:
        row, a, sample, _ = self._located(bench, scorer)
        present = np.zeros((bench.n_responses, len(bench.attributes), len(wanted)), dtype=bool)
        col = {s: j for j, s in enumerate(wanted)}
        j = np.array([col.get(int(x), -1) for x in sample], dtype=np.int64)
        keep = j >= 0
        present[row[keep], a[keep], j[keep]] = True
        return present


def _sample_mask(sample: np.ndarray, samples: Samples) -> np.ndarray:
    if samples is None:
        return np.ones(sample.shape, dtype=bool)
    if isinstance(samples, (int, np.integer)):
        if samples < 1:
            raise InputError(f"samples must be at least 1, got {samples}", field="samples")
        return sample < int(samples)
    return np.isin(sample, np.asarray(list(samples), dtype=np.int64))


def _with_text(table: pa.Table, index: _Index, pos: np.ndarray) -> pa.Table:
    """``table`` (rows at global positions ``pos``) plus reasoning and meta read from disk."""
    cols: dict[str, list[Any]] = {c: [None] * len(pos) for c in _TEXT_COLUMNS}
    parts = index.part_of[pos]
    for p in np.unique(parts):
        where = np.flatnonzero(parts == p)
        text = _read_columns(index.root / index.names[int(p)], _TEXT_COLUMNS)
        picked = text.take(pa.array(index.row_of[pos[where]]))
        for c in _TEXT_COLUMNS:
            values = picked[c].to_pylist()
            for i, v in zip(where.tolist(), values, strict=True):
                cols[c][i] = v
    for c in _TEXT_COLUMNS:
        table = table.append_column(c, pa.array(cols[c], pa.string()))
    return table


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
    """What ``verify`` found about one cache directory."""

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
        return [p for p in self.parts if p.problem is not None]


def _part_problem(path: Path) -> tuple[int, str | None]:
    try:
        _check_schema(path)
        table = _read_columns(path, _INDEX_COLUMNS)
        _check_keys(path, table)
    except (CacheCorruptError, PluralignError) as e:
        return 0, str(e).removeprefix(f"{path}: ")
    return table.num_rows, None


def verify(root: str | os.PathLike[str]) -> CacheCheck:
    """Check every part of a cache (exact schema, every row's key against its fields) and list
    leftover temporary files; reads each part once, changes nothing."""
    d = Path(root)
    names = sorted(p.name for p in d.glob(PART_GLOB) if p.is_file()) if d.is_dir() else []
    checks = []
    for n in names:
        rows, problem = _part_problem(d / n)
        checks.append(PartCheck(d / n, rows, problem))
    temps = sorted(p for p in d.glob(f"{_TMP_PREFIX}*.tmp") if p.is_file()) if d.is_dir() else []
    rows = sum(c.rows for c in checks if c.problem is None)
    superseded = 0
    if not any(c.problem for c in checks) and checks:
        ok, bad = _index_for(d).resolve(None, None)
        superseded = rows - ok.num_rows - bad.num_rows
    return CacheCheck(checks, temps, rows, superseded)


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


def gc(root: str | os.PathLike[str], *, min_age: float = 600.0) -> GCReport:
    """Remove temporary files older than ``min_age`` seconds (writes killed midway; younger ones
    may belong to a live writer), drop superseded duplicate rows and compact into one part.

    Refuses (CacheCorruptError naming the parts) when a part cannot be trusted: move it out
    first, so that nothing of unknown origin is merged into the cache.
    """
    check = verify(root)
    if check.bad:
        first = check.bad[0]
        raise CacheCorruptError(
            f"{first.path}: {first.problem}" + (f" (and {len(check.bad) - 1} more bad parts)"
                                                if len(check.bad) > 1 else "")
            + "; nothing was changed")
    now = time.time()
    removed = []
    for tmp in check.temp_files:
        try:
            if now - tmp.stat().st_mtime >= min_age:
                tmp.unlink()
                removed.append(tmp)
        except FileNotFoundError:
            continue  # its writer finished or another gc took it
    parts_before = len(check.parts)
    if parts_before:
        ScoreCache(root).compact()
    after = verify(root)
    return GCReport(removed, check.rows, after.rows, parts_before, len(after.parts))


@dataclass
class ScorerSummary:
    """What a cache holds for one (benchmark, scorer)."""

    benchmark: str
    """Benchmark identity."""
    scorer: str
    """Scorer identity."""
    complete: int
    """Keys with a successful score."""
    failed: int
    """Keys whose latest row is a failure and that never succeeded."""
    scenarios: int
    """Distinct scenarios with any row."""
    attributes: tuple[str, ...]
    """Attributes with any row."""
    samples: int
    """Distinct sample indices."""
    settings: dict[str, Any] | None
    """The scorer settings stored with its parts (None when written without a manifest)."""


def summarize(root: str | os.PathLike[str]) -> list[ScorerSummary]:
    """One summary per (benchmark, scorer) in the cache, sorted."""
    cache = ScoreCache(root)
    ok, bad = cache._index.resolve(None, None)
    both = pa.concat_tables([ok.select(["benchmark", "scorer", "scenario", "attribute",
                                        "sample"]),
                             bad.select(["benchmark", "scorer", "scenario", "attribute",
                                         "sample"])])
    settings = _stored_settings(cache.parts())
    out = []
    pairs = sorted(set(zip(both["benchmark"].to_pylist(), both["scorer"].to_pylist(),
                           strict=True)))
    okp = Counter(zip(ok["benchmark"].to_pylist(), ok["scorer"].to_pylist(), strict=True))
    badp = Counter(zip(bad["benchmark"].to_pylist(), bad["scorer"].to_pylist(), strict=True))
    for b, sc in pairs:
        mask = pc.and_(pc.equal(both["benchmark"], b), pc.equal(both["scorer"], sc))
        sub = both.filter(mask)
        out.append(ScorerSummary(
            b, sc, okp[(b, sc)], badp[(b, sc)],
            len(set(sub["scenario"].to_pylist())),
            tuple(sorted(set(sub["attribute"].to_pylist()))),
            len(set(sub["sample"].to_pylist())), settings.get(sc)))
    return out


def _stored_settings(parts: Sequence[Path]) -> dict[str, dict[str, Any]]:
    """{scorer identity: settings} over ``parts``; the newest part's settings win."""
    found: dict[str, dict[str, Any]] = {}
    for path in parts:
        try:
            raw = (pq.read_schema(path).metadata or {}).get(SCORER_META_KEY)
        except (pa.ArrowException, OSError):
            continue
        if raw is not None:
            found.update(json.loads(raw))
    return found
