"""Benchmarks and targets round-trip through versioned Parquet; other versions are refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pluralign.engine.data.synthetic import synthetic_benchmark
from pluralign.engine.data.tables import (
    benchmark_table,
    read_benchmark,
    read_targets,
    target_table,
    write_table,
)
from pluralign.engine.data.targets import all_targets
from pluralign.engine.errors import CacheSchemaError


def test_benchmark_round_trip(tmp_path: Path) -> None:
    bench = synthetic_benchmark(12, (2, 4), 3, 5, seed=9)
    path = write_table(benchmark_table(bench), tmp_path / "b.parquet")
    back = read_benchmark(path)
    assert back.identity == bench.identity
    np.testing.assert_array_equal(back.offsets, bench.offsets)
    assert [p.name for p in tmp_path.iterdir()] == ["b.parquet"]


def test_targets_round_trip(tmp_path: Path) -> None:
    targets = all_targets(("x", "y"), (0.0, 0.5, 1.0))
    back = read_targets(write_table(target_table(targets), tmp_path / "t.parquet"), ("x", "y"))
    assert back.json_all() == targets.json_all()


def test_other_schema_version_is_refused(tmp_path: Path) -> None:
    table = benchmark_table(synthetic_benchmark(3, (2, 2), 2, 3, seed=0))
    meta = dict(table.schema.metadata)
    meta[b"pluralign.schema_version"] = b"0"
    pq.write_table(table.replace_schema_metadata(meta), tmp_path / "old.parquet")
    with pytest.raises(CacheSchemaError, match=r"old\.parquet.*version 0"):
        read_benchmark(tmp_path / "old.parquet")


def test_foreign_table_is_refused(tmp_path: Path) -> None:
    pq.write_table(pa.table({"x": [1]}), tmp_path / "f.parquet")
    with pytest.raises(CacheSchemaError, match=r"f\.parquet"):
        read_benchmark(tmp_path / "f.parquet")


def test_failed_write_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(AttributeError):
        write_table("not a table", tmp_path / "x.parquet")  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []
