"""The score cache: every attribute score computed, as append-only Parquet parts keyed by content.

A row's key hashes (benchmark, scenario, response, attribute, scorer identity, sample). The
parts, their names, the latest-wins rule, checks on read, secrets redaction, compaction, verify
and gc are those of every part store (``engine/store/parts.py``); this module adds the score rows,
their keys and the score-shaped reads (predictions, missing items, summaries).
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypedDict

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pluralign.engine.data.benchmark import Benchmark
from pluralign.engine.errors import InputError
from pluralign.engine.jsontypes import JSONDict, UntrustedJSON
from pluralign.engine.store import parts
from pluralign.engine.store.hashing import canonical_json, settings_digest, text_digest
from pluralign.engine.store.manifest import current as current_manifest
from pluralign.engine.store.manifest import scrub
from pluralign.engine.store.parts import REDACTED as REDACTED
from pluralign.engine.store.parts import CacheCheck, GCReport, PartLayout, PartStore
from pluralign.engine.store.parts import CacheCorruptError as CacheCorruptError
from pluralign.engine.store.parts import redact_secrets as redact_secrets
from pluralign.engine.store.parts import redact_table as redact_table
from pluralign.engine.store.parts import register_secret as register_secret
from pluralign.schemas.arrow import SCORE_SCHEMA
from pluralign.schemas.records import ScoreRecord

CACHE_KIND = "scores"
"""The ``pluralign.kind`` every score part carries."""
_INDEX_COLUMNS = (
    "key", "benchmark", "scenario", "response", "attribute", "scorer", "sample", "score", "error",
)
_KEY_FIELDS = ("benchmark", "scenario", "response", "attribute", "scorer", "sample")

Samples = int | Sequence[int] | None
"""Which sample indices to use: the first n (int), these ones (sequence), or all (None)."""


# ---------------------------------------------------------------------------- keys


_quote = json.encoder.encode_basestring  # type: ignore[attr-defined]
"""JSON string literal without ASCII escaping, as ``json.dumps(s, ensure_ascii=False)``."""


def scorer_identity(name: str, settings: Mapping[str, object]) -> str:
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


class ScoreRow(TypedDict):
    """One score-cache row as judges and scorers write it (a row of ``SCORE_SCHEMA``)."""

    key: str
    benchmark: str
    scenario: str
    response: int
    attribute: str
    scorer: str
    sample: int
    score: float | None
    reasoning: str | None
    error: str | None
    meta: str


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


def _row_of(obj: ScoreRecord | ScoreFailure | Mapping[str, object],
            pos: int) -> dict[str, object]:
    if isinstance(obj, ScoreRecord):
        raw: dict[str, UntrustedJSON] = {f: getattr(obj, f) for f in _KEY_FIELDS}
        raw.update(score=obj.score, reasoning=obj.reasoning or None, error=None, meta=obj.meta)
    elif isinstance(obj, ScoreFailure):
        raw = {f: getattr(obj, f) for f in _KEY_FIELDS}
        raw.update(score=None, reasoning=None, error=obj.error, meta=obj.meta)
    elif isinstance(obj, Mapping):
        raw = dict(obj)
    else:
        raise InputError(f"not a score record: {type(obj).__name__}", record=pos)
    return _checked_row(raw, pos)


def _checked_row(raw: dict[str, UntrustedJSON], pos: int) -> dict[str, object]:
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


def _rows_table(rows: Sequence[Mapping[str, object]]) -> pa.Table:
    cols = {f.name: [r[f.name] for r in rows] for f in SCORE_SCHEMA}
    return pa.table(cols, schema=SCORE_SCHEMA)


# ---------------------------------------------------------------------------- layout


SCORER_META_KEY = b"pluralign.scorers"
"""Part metadata: JSON {scorer identity: decoded settings} of the scorers whose rows it holds."""


def _with_scorer_settings(table: pa.Table,
                          settings: Mapping[str, object] | None = None) -> pa.Table:
    """Attach ``settings`` ({identity: settings}); by default the running command's scorer
    settings for every scorer in ``table``."""
    if settings is None:
        m = current_manifest()
        if m is None or not m.scorer:
            return table
        decoded = scrub(m.scorer, parts.known_secrets())
        settings = {sc: decoded for sc in set(table["scorer"].to_pylist())}
    if not settings:
        return table
    meta = dict(table.schema.metadata or {})
    meta[SCORER_META_KEY] = json.dumps(settings, sort_keys=True, default=str).encode()
    return table.replace_schema_metadata(meta)


def _merged_settings(table: pa.Table, merged: Sequence[Path]) -> pa.Table:
    """A compacted part keeps the scorer settings its merged parts carried."""
    return _with_scorer_settings(table, _stored_settings(merged))


SCORE_LAYOUT = PartLayout(
    kind=CACHE_KIND, schema=SCORE_SCHEMA, key_fields=_KEY_FIELDS, key_of=score_key,
    index_columns=_INDEX_COLUMNS, filters=("benchmark", "scorer"), what="score-cache part",
    fix="move the old cache aside or score into a new cache directory",
    merged_metadata=_merged_settings)
"""Score parts: keys re-hashed from their six fields; texts (reasoning, meta) read on demand."""


# ---------------------------------------------------------------------------- the cache


class ScoreCache:
    """A directory of score parts. Opening it checks every part's schema version."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        """The cache directory (created on the first append)."""
        if self.root.exists() and not self.root.is_dir():
            raise InputError("the score cache must be a directory", file=self.root)
        self._store = PartStore(self.root, SCORE_LAYOUT)
        self._store.refresh()

    def parts(self) -> list[Path]:
        """The visible part files, oldest first."""
        return self._store.parts()

    def part_names(self) -> frozenset[str]:
        """Names of the visible parts, from one directory listing (see
        :meth:`PartStore.part_names`): the scheduler re-reads :meth:`completed_keys` only
        when they differ from what it read and wrote."""
        return self._store.part_names()

    def append(
        self,
        records: Iterable[ScoreRecord | ScoreFailure | Mapping[str, object]],
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
        return self._store.append(_with_scorer_settings(table), keys_checked=True)

    def completed_keys(self, benchmark: str | None = None, scorer: str | None = None) -> set[str]:
        """Keys with a successful score (a failed item is not complete: a rerun retries it)."""
        ok, _ = self._store.resolve(benchmark, scorer)
        return set(ok["key"].to_pylist())

    def failed(self, benchmark: str | None = None, scorer: str | None = None) -> pa.Table:
        """The latest failure of each key that never succeeded (key columns and ``error``)."""
        _, bad = self._store.resolve(benchmark, scorer)
        return bad.drop_columns(["_pos", "score"])

    def read(self, benchmark: str, scorer: str, *, text: bool = False) -> pa.Table:
        """The latest successful row per key of one benchmark and scorer, in write order.

        ``text=True`` adds the ``reasoning`` and ``meta`` columns (read from disk on demand).
        """
        with self._store.lock:
            ok, _ = self._store.resolve(benchmark, scorer)
            if text:
                ok = self._store.with_text(ok)
        return ok.drop_columns(["_pos", "error"])

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
        return self._store.compact()

    # -- internals ---------------------------------------------------------------------
    def _located(self, bench: Benchmark, scorer: str) -> tuple[np.ndarray, ...]:
        """(flat response row, attribute column, sample, score) of every cached success."""
        ok, _ = self._store.resolve(bench.identity, scorer)
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


# ---------------------------------------------------------------------------- maintenance


def verify(root: str | os.PathLike[str]) -> CacheCheck:
    """Check every score part (exact schema, every row's key against its fields) and list
    leftover temporary files; reads each part once, changes nothing."""
    return parts.verify(root, SCORE_LAYOUT)


def gc(root: str | os.PathLike[str], *, min_age: float = 600.0) -> GCReport:
    """Remove stale temporary files and superseded rows of a score cache, compacting it into one
    part; refuses (changing nothing) while any part cannot be trusted. See :func:`parts.gc`."""
    return parts.gc(root, SCORE_LAYOUT, min_age=min_age)


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
    settings: JSONDict | None
    """The scorer settings stored with its parts (None when written without a manifest)."""


def summarize(root: str | os.PathLike[str]) -> list[ScorerSummary]:
    """One summary per (benchmark, scorer) in the cache, sorted."""
    cache = ScoreCache(root)
    ok, bad = cache._store.resolve()
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


def _stored_settings(paths: Sequence[Path]) -> dict[str, JSONDict]:
    """{scorer identity: settings} over ``paths`` (oldest first); the newest part's settings win."""
    found: dict[str, JSONDict] = {}
    for path in paths:
        try:
            raw = (pq.read_schema(path).metadata or {}).get(SCORER_META_KEY)
        except (pa.ArrowException, OSError):
            continue
        if raw is not None:
            found.update(json.loads(raw))
    return found
