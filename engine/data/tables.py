"""Benchmarks and target sets as versioned Arrow tables (Parquet on disk).

The layouts are the ones in :mod:`schemas.arrow`; reading refuses another schema version or
kind with an error naming the file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pluralign.engine.data.benchmark import Benchmark, make_benchmark
from pluralign.engine.data.targets import TargetSet, from_dicts
from pluralign.engine.errors import InputError
from pluralign.engine.store.files import require_layout, write_parquet
from pluralign.schemas.arrow import (
    BENCHMARK_SCHEMA,
    TARGET_SCHEMA,
)
from pluralign.schemas.records import Scenario


def benchmark_table(bench: Benchmark) -> pa.Table:
    """One row per (scenario, response), with the benchmark's identity in the metadata."""
    cols: dict[str, list[object]] = {f.name: [] for f in BENCHMARK_SCHEMA}
    for sc in bench.scenarios:
        for r, text in enumerate(sc.responses):
            cols["scenario"].append(sc.id)
            cols["prompt"].append(sc.prompt)
            cols["response"].append(r)
            cols["text"].append(text)
            cols["labels"].append(list(sc.labels[r].items()))
            cols["reasonings"].append(
                None if sc.reasonings is None else list(sc.reasonings[r].items())
            )
    meta = dict(BENCHMARK_SCHEMA.metadata or {})
    meta[b"pluralign.benchmark"] = json.dumps({
        "name": bench.name, "split": bench.split, "attributes": list(bench.attributes),
        "levels": list(bench.levels),
    }).encode()
    return pa.table(cols, schema=BENCHMARK_SCHEMA.with_metadata(meta))


def target_table(targets: TargetSet) -> pa.Table:
    """One row per target: canonical JSON text, the value map, and its number of attributes."""
    rows = [targets.target(i) for i in range(len(targets))]
    return pa.table(
        {"target": targets.json_all(), "values": [list(r.items()) for r in rows],
         "n_attributes": targets.n_attributes.astype(np.int32)},
        schema=TARGET_SCHEMA,
    )


def write_table(table: pa.Table, path: str | os.PathLike[str]) -> Path:
    """Write Parquet to a temporary name in the same folder, then rename."""
    return write_parquet(table, path)


def read_table(path: str | os.PathLike[str], kind: str) -> pa.Table:
    """Read a pluralign table, refusing files of another kind or schema version."""
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowInvalid) as e:
        raise InputError(f"not a readable Parquet file: {e}", file=path) from None
    require_layout(table.schema, kind, path, "rebuild it with this version")
    return table


def read_benchmark(path: str | os.PathLike[str]) -> Benchmark:
    """A benchmark written by :func:`benchmark_table`, validated like any other."""
    table = read_table(path, "benchmark")
    meta = json.loads((table.schema.metadata or {}).get(b"pluralign.benchmark", b"{}"))
    if not {"name", "split", "attributes", "levels"} <= set(meta):
        raise InputError("missing the benchmark description in the metadata", file=path)
    rows = table.to_pylist()
    scenarios: list[Scenario] = []
    i = 0
    while i < len(rows):
        sid = rows[i]["scenario"]
        j = i
        while j < len(rows) and rows[j]["scenario"] == sid:
            j += 1
        group = rows[i:j]
        reasonings = None if group[0]["reasonings"] is None else tuple(
            dict(g["reasonings"] or []) for g in group)
        scenarios.append(Scenario(
            sid, group[0]["prompt"], tuple(g["text"] for g in group),
            tuple(dict(g["labels"]) for g in group), reasonings,
        ))
        i = j
    return make_benchmark(meta["name"], meta["split"], meta["attributes"], meta["levels"],
                          scenarios, source=str(path))


def read_targets(path: str | os.PathLike[str], attributes: tuple[str, ...]) -> TargetSet:
    """A target set written by :func:`target_table`."""
    table = read_table(path, "targets")
    dicts = [dict(v) for v in table.column("values").to_pylist()]
    return from_dicts(Path(path).stem, attributes, dicts, source=str(path))
