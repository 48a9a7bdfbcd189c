"""The run context every job shares: where the score cache lives, the benchmark splits a job
reads, progress lines, and the one writer of result files (atomic, carrying the run
manifest)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pyarrow as pa

from pluralign.engine.data.benchmark import Benchmark
from pluralign.engine.data.sources import load_benchmark
from pluralign.engine.errors import InputError
from pluralign.engine.run.progress import note as progress
from pluralign.engine.store.files import require_memory, write_json, write_parquet
from pluralign.engine.store.manifest import current, with_manifest

__all__ = ["SAMPLE_BYTES", "cache_dir", "check_samples", "load_splits", "note_manifest",
           "progress", "scorer_options", "write_json_atomic", "write_parquet_atomic"]

SAMPLE_BYTES = 1024
"""Bytes per (response, attribute, sample) while a run holds its work items or cached
samples (measured: about 850 per comparative item of one scenario's responses, 480 per
per-response item)."""


def cache_dir(arg: str | os.PathLike[str] | None) -> Path:
    """The score cache folder: ``arg``, else ``$PLURALIGN_CACHE``, else the user cache dir."""
    if arg:
        return Path(arg)
    if os.environ.get("PLURALIGN_CACHE"):
        return Path(os.environ["PLURALIGN_CACHE"])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "pluralign" / "scores"


def load_splits(benchmark: str, split: str = "eval", data: str | None = None, *,
                limit: int | None = None, train_split: str | None = None
                ) -> tuple[Benchmark, Benchmark | None]:
    """The evaluated split (its first ``limit`` scenarios) and, when ``train_split`` is given,
    the training split, which must differ from the evaluated one."""
    bench = load_benchmark(benchmark, split, data)
    if limit is not None:
        if limit < 1:
            raise InputError("`limit` must be at least 1", field="limit")
        bench = bench.subset(limit)
    train = None
    if train_split is not None:
        if train_split == split:
            raise InputError("the training split must differ from the evaluated split",
                             field="train_split", hint="evaluation splits are never for tuning")
        train = load_benchmark(benchmark, train_split, data)
    return bench, train


def check_samples(bench: Benchmark, samples: int | None, *, field: str = "samples") -> None:
    """Refuse, before any work, a sample count whose work items or cached samples would not
    fit in memory (like a synthetic benchmark's size), naming ``field`` and the need."""
    if samples is None or samples <= 1:
        return
    need = float(bench.n_responses) * len(bench.attributes) * samples * SAMPLE_BYTES
    require_memory(need, f"{samples:,} samples of {bench.n_responses:,} responses x "
                   f"{len(bench.attributes)} attributes", field=field, hint="use fewer samples")


def write_json_atomic(path: Path, data: Any) -> None:
    """Write a JSON report; a report object gets the run manifest under ``manifest``."""
    m = current()
    if m is not None and isinstance(data, dict):
        data = {**data, "manifest": m.as_dict()}
    write_json(path, data)


def write_parquet_atomic(path: Path, table: pa.Table) -> None:
    """Write a Parquet table with the run manifest in its schema metadata."""
    write_parquet(with_manifest(table, current()), path)


def note_manifest(bench: Benchmark | None = None, train: Benchmark | None = None,
                  scorer: dict[str, Any] | None = None,
                  counts: dict[str, Any] | None = None) -> None:
    """Record the benchmark (with its data files' checksums), the decoded scorer settings and
    the counts in the run manifest that result files carry."""
    m = current()
    if m is None:
        return
    if bench is not None:
        files = [b.source for b in (bench, train) if b is not None and b.source]
        m.note_benchmark(bench.identity, bench.split, bench.n_scenarios, files)
        if train is not None:
            m.benchmark["train_split"] = train.split
    if scorer is not None:
        m.note_scorer(scorer)
    if counts is not None:
        m.note_counts(counts)
    m.hosts = _ray_hosts()


def _ray_hosts() -> int:
    """Ray nodes alive when Ray is running in this process, else 1."""
    ray = sys.modules.get("ray")
    try:
        if ray is not None and ray.is_initialized():
            return max(1, sum(1 for n in ray.nodes() if n.get("Alive")))
    except Exception:  # a failing status call must not fail the report
        return 1
    return 1


def scorer_options(scorer: str, *, seed: int = 0, value: float = 0.5) -> dict[str, Any]:
    """The keyword options of the model-free scorer ``scorer`` names: the random scorer's
    ``seed``, the constant scorer's ``value``; no other takes one."""
    name = scorer.partition(":")[0]
    if name == "random":
        return {"seed": seed}
    if name == "constant":
        return {"value": value}
    return {}
