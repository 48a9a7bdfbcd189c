"""The choice cache: which response a prompt-aligned (or unaligned) judge picked, per
(scenario, target, sample). It lives in ``<cache root>/choices/`` beside the score cache, as a
part store (``engine/store/parts.py``): append-only versioned Parquet parts, one latest-wins rule,
every key checked against its fields.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pluralign.engine.align.consistency import majority
from pluralign.engine.data.benchmark import Benchmark
from pluralign.engine.errors import InputError
from pluralign.engine.jsontypes import UntrustedJSON
from pluralign.engine.store.hashing import digest
from pluralign.engine.store.parts import PartLayout, PartStore
from pluralign.schemas.arrow import with_version

CHOICE_KIND = "choices"

CHOICE_SCHEMA = with_version(
    pa.schema(
        [
            pa.field("key", pa.string(), nullable=False),
            pa.field("benchmark", pa.string(), nullable=False),
            pa.field("scenario", pa.string(), nullable=False),
            pa.field("target", pa.string(), nullable=False),
            pa.field("scorer", pa.string(), nullable=False),
            pa.field("sample", pa.int32(), nullable=False),
            pa.field("choice", pa.int32()),
            pa.field("reasoning", pa.string()),
            pa.field("error", pa.string()),
            pa.field("meta", pa.string()),
        ]
    ),
    CHOICE_KIND,
)
"""One row per (scenario, target, sample) answer, or per failed item (``error`` set, no choice).
``target`` is the canonical target JSON; ``""`` for the target-free unaligned judge."""


def choice_key(benchmark: str, scenario: str, target: str, scorer: str, sample: int) -> str:
    """Content address of one choice row."""
    return digest(["choice", benchmark, scenario, target, scorer, int(sample)], 32)


_KEY_FIELDS = ("benchmark", "scenario", "target", "scorer", "sample")

CHOICE_LAYOUT = PartLayout(
    kind=CHOICE_KIND, schema=CHOICE_SCHEMA, key_fields=_KEY_FIELDS, key_of=choice_key,
    index_columns=("key", *_KEY_FIELDS, "choice", "error"), filters=("benchmark", "scorer"),
    what="choice-cache part",
    fix="move the old cache aside or rescore into a new `cache` folder")
"""Choice parts: keys re-hashed from their five fields; reasoning and meta read on demand."""


class ChoiceCache:
    """Append-only Parquet parts under ``root/choices``."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        """The cache directory shared with the score cache."""
        self.dir = self.root / CHOICE_KIND
        """Where the choice parts live."""
        self._store = PartStore(self.dir, CHOICE_LAYOUT)

    def append(self, rows: Sequence[Mapping[str, object]]) -> Path | None:
        """Write ``rows`` (of :data:`CHOICE_SCHEMA`; ``key`` optional) as one new part,
        atomically; returns its path (None for no rows). Bad rows raise before anything is
        written."""
        if not rows:
            return None
        checked = [_checked_row(r, i) for i, r in enumerate(rows)]
        table = pa.Table.from_pylist(checked, schema=CHOICE_SCHEMA)
        return self._store.append(table, keys_checked=True)

    def parts(self) -> list[Path]:
        """The visible part files, oldest first."""
        return self._store.parts()

    def part_names(self) -> frozenset[str]:
        """Names of the visible parts, from one directory listing (see
        :meth:`PartStore.part_names`): the scheduler re-reads :meth:`completed_keys` only
        when they differ from what it read and wrote."""
        return self._store.part_names()

    def read(self, benchmark: str | None = None, scorer: str | None = None) -> pa.Table:
        """The winning row per key (the latest success, else the latest failure), optionally of
        one benchmark and scorer, every column, in write order; refuses other schema versions."""
        return self._store.latest(benchmark, scorer)

    def completed_keys(self, benchmark: str | None = None, scorer: str | None = None) -> set[str]:
        """Keys with a successful answer (failed items are not complete: a rerun retries them)."""
        ok, _ = self._store.resolve(benchmark, scorer)
        return set(ok["key"].to_pylist())

    def choices(
        self, bench: Benchmark, scorer: str, targets: Sequence[str], samples: int
    ) -> np.ndarray:
        """int64 (S, T): majority choice over samples 0..samples-1 per scenario and target;
        -1 where no sample succeeded. Ties in the vote go to the lowest response index."""
        ok, _ = self._store.resolve(bench.identity, scorer)
        ok = ok.filter(pc.and_(pc.less(ok["sample"], samples), pc.is_valid(ok["choice"])))
        unique = list(dict.fromkeys(targets))
        ids = pa.array([sc.id for sc in bench.scenarios], pa.string())
        s = np.asarray(pc.fill_null(pc.index_in(ok["scenario"], value_set=ids), -1))
        t = np.asarray(pc.fill_null(pc.index_in(ok["target"], value_set=pa.array(
            unique, pa.string())), -1))
        keep = (s >= 0) & (t >= 0)
        sample = np.asarray(ok["sample"], dtype=np.int64)[keep]
        choice = np.asarray(ok["choice"], dtype=np.int64)[keep]
        s, t = s[keep], t[keep]
        votes: dict[tuple[int, int], list[int | None]] = {}
        for i in np.lexsort((sample, t, s)).tolist():  # each vote list in sample order
            votes.setdefault((int(s[i]), int(t[i])), []).append(int(choice[i]))
        per_unique = np.full((bench.n_scenarios, len(unique)), -1, dtype=np.int64)
        for (si, ti), picks in votes.items():
            m = majority(picks)
            if m is not None:
                per_unique[si, ti] = m
        col = {u: j for j, u in enumerate(unique)}
        return per_unique[:, np.asarray([col[x] for x in targets], dtype=np.int64)]


def _checked_row(raw: Mapping[str, object], pos: int) -> dict[str, object]:
    row: dict[str, UntrustedJSON] = {f.name: raw.get(f.name) for f in CHOICE_SCHEMA}
    for f in ("benchmark", "scenario", "scorer"):
        if not isinstance(row[f], str) or not row[f]:
            raise InputError("must be a non-empty string", record=pos, field=f)
    if not isinstance(row["target"], str):
        raise InputError("must be a string ('' for no target)", record=pos, field="target")
    if not _is_int(row["sample"]) or row["sample"] < 0:
        raise InputError(f"must be an integer >= 0, got {row['sample']!r}", record=pos,
                         field="sample")
    if row["choice"] is not None and not _is_int(row["choice"]):
        raise InputError(f"must be an integer or None, got {row['choice']!r}", record=pos,
                         field="choice")
    if row["error"] is not None and (not isinstance(row["error"], str) or not row["error"]):
        raise InputError("must be a non-empty string or None", record=pos, field="error")
    key = choice_key(*(row[f] for f in _KEY_FIELDS))
    if row["key"] not in (None, key):
        raise InputError("key does not match the key fields", record=pos, field="key",
                         hint="build keys with engine.judges.choices.choice_key")
    row["key"] = key
    return row


def _is_int(v: object) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)

