"""The choice cache: which response a prompt-aligned (or unaligned) judge picked, per
(scenario, target, sample). It lives in ``<cache root>/choices/`` beside the score cache, as
versioned Parquet parts written to a temporary name and renamed (never half-written).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pluralign.engine.benchmark import Benchmark
from pluralign.engine.cache import redact_table
from pluralign.engine.files import require_layout, write_parquet
from pluralign.engine.hashing import digest
from pluralign.engine.judges.consistency import majority
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


class ChoiceCache:
    """Append-only Parquet parts under ``root/choices``."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        """The cache directory shared with the score cache."""
        self.dir = self.root / CHOICE_KIND
        """Where the choice parts live."""

    def append(self, rows: Sequence[Mapping[str, Any]]) -> Path | None:
        """Write ``rows`` as one new part, atomically; returns its path (None for no rows)."""
        if not rows:
            return None
        self.dir.mkdir(parents=True, exist_ok=True)
        table = pa.Table.from_pylist([dict(r) for r in rows], schema=CHOICE_SCHEMA)
        table = redact_table(table, keep=("key", "benchmark", "scenario", "target", "scorer"))
        return write_parquet(table, self.dir / f"part-{uuid.uuid4().hex}.parquet")

    def parts(self) -> list[Path]:
        if not self.dir.is_dir():
            return []
        return sorted(p for p in self.dir.glob("part-*.parquet") if p.is_file())

    def read(self, benchmark: str | None = None, scorer: str | None = None) -> pa.Table:
        """All rows (optionally of one benchmark and scorer); refuses other schema versions."""
        tables = [self._read_part(p) for p in self.parts()]
        if not tables:
            return CHOICE_SCHEMA.empty_table()
        table = pa.concat_tables(tables)
        rows = table.to_pylist()
        keep = [
            r for r in rows
            if (benchmark is None or r["benchmark"] == benchmark)
            and (scorer is None or r["scorer"] == scorer)
        ]
        return pa.Table.from_pylist(keep, schema=CHOICE_SCHEMA)

    def completed_keys(self, benchmark: str | None = None, scorer: str | None = None) -> set[str]:
        """Keys with a successful answer (failed items are not complete: a rerun retries them)."""
        table = self.read(benchmark, scorer)
        return {
            k for k, err in zip(table.column("key").to_pylist(),
                                table.column("error").to_pylist(), strict=True)
            if err is None
        }

    def choices(
        self, bench: Benchmark, scorer: str, targets: Sequence[str], samples: int
    ) -> np.ndarray:
        """int64 (S, T): majority choice over samples 0..samples-1 per scenario and target;
        -1 where no sample succeeded. Ties in the vote go to the lowest response index."""
        votes = self._votes(self.read(bench.identity, scorer).to_pylist(), samples)
        col = {t: j for j, t in enumerate(targets)}
        out = np.full((bench.n_scenarios, len(targets)), -1, dtype=np.int64)
        ids = bench_ids(bench)
        for (scenario, target), picks in votes.items():
            if target in col and scenario in ids:
                m = majority(picks)
                if m is not None:
                    out[bench.index_of(scenario), col[target]] = m
        return out

    @staticmethod
    def _votes(rows: Iterable[Mapping[str, Any]], samples: int) -> dict[tuple[str, str], list[int]]:
        # One vote per (scenario, target, sample): a success wins over an earlier failure row.
        best: dict[tuple[str, str, int], int] = {}
        for r in rows:
            if r["error"] is None and r["choice"] is not None and r["sample"] < samples:
                best[(r["scenario"], r["target"], int(r["sample"]))] = int(r["choice"])
        votes: dict[tuple[str, str], list[int]] = {}
        for (scenario, target, _), choice in sorted(best.items()):
            votes.setdefault((scenario, target), []).append(choice)
        return votes

    def _read_part(self, path: Path) -> pa.Table:
        schema = pq.read_schema(path)
        require_layout(schema, CHOICE_KIND, path,
                       "move the old cache aside or rescore into a new --cache directory")
        return pq.read_table(path, schema=CHOICE_SCHEMA)


def bench_ids(bench: Benchmark) -> frozenset[str]:
    """Scenario ids of a benchmark."""
    return frozenset(sc.id for sc in bench.scenarios)
