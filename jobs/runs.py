"""Run folders read back: a sweep's summary, its benchmark reloaded and its scores read from
the cache, and the one check that runs are comparable before anything combines them.

``compare``, ``view``, ``report``, ``pareto`` and :func:`pluralign.decisions` all read runs
through here, so they refuse the same mismatches with the same line.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pluralign.engine.data.benchmark import Benchmark
from pluralign.engine.errors import InputError
from pluralign.engine.judges import CHOICE_JUDGES
from pluralign.engine.store.cache import ScoreCache
from pluralign.engine.store.files import read_json
from pluralign.jobs.runtime import cache_dir, load_splits

__all__ = ["SweepRun", "check_comparable", "identity_of", "load_sweep", "read_summary"]

IDENTITY_FIELDS = ("benchmark", "split", "scenarios")
"""What two runs must share to be put side by side: benchmark identity, split, scenario count
(a run with ``--limit`` keeps the identity of the full benchmark, so the count tells them
apart)."""


def read_summary(path: Path) -> dict[str, Any]:
    """A run folder's summary.json as a dict; one clear line when it is missing or not an
    object."""
    f = path / "summary.json" if path.is_dir() else path
    if not f.is_file():
        raise InputError("no summary.json here (is this a run folder?)", file=path)
    summary = read_json(f)
    if not isinstance(summary, dict):
        raise InputError(f"summary.json holds a {type(summary).__name__}, not an object",
                         file=f)
    return summary


def identity_of(summary: Mapping[str, Any]) -> tuple[str, str, int | None] | None:
    """(benchmark identity, split, scenarios) a summary declares; None when it declares no
    benchmark (a SPICA evaluation)."""
    bench = summary.get("benchmark")
    if not isinstance(bench, str):
        return None
    scenarios = summary.get("scenarios")
    n = scenarios if isinstance(scenarios, int) and not isinstance(scenarios, bool) else None
    return bench, str(summary.get("split", "")), n


def check_comparable(runs: Sequence[tuple[str, Mapping[str, Any]]]) -> None:
    """Refuse, in one line naming the mismatch, runs (name, summary) that differ in benchmark
    identity, split or scenarios. Runs that declare no benchmark are left out of the check, and
    a field only one of two runs declares (a jury's summary names no split) is not compared."""
    declared = [(name, ident) for name, s in runs if (ident := identity_of(s)) is not None]
    if len(declared) < 2:
        return
    first_name, first = declared[0]
    for name, ident in declared[1:]:
        for what, a, b in zip(IDENTITY_FIELDS, first, ident, strict=True):
            if a not in ("", None) and b not in ("", None) and a != b:  # both declare it
                raise InputError(
                    f"{name} is not comparable with {first_name}: {what} {b} vs {a}",
                    hint="compare runs of the same benchmark identity, split and scenarios")


@dataclass
class SweepRun:
    """A sweep's run folder with its benchmark and cached scores loaded."""

    path: Path
    """The run folder."""
    label: str
    """Its name as shown (the folder name, made unique by the caller)."""
    summary: dict[str, Any]
    """summary.json."""
    bench: Benchmark
    """The evaluated split, reloaded (its identity checked against the summary)."""
    scorer: str
    """The scorer's cache identity."""
    cache: Path
    """The score cache read."""
    predictions: np.ndarray | None = field(default=None, repr=False)
    """float64 (N, A) mean cached score per response and attribute; None for a judge that
    picks responses itself (its choices are in per_scenario.parquet)."""

    @property
    def is_choice_run(self) -> bool:
        """The judge picks responses itself (prompt-aligned, unaligned): no predictions."""
        return self.scorer.split("#")[0] in CHOICE_JUDGES


def _argv_value(argv: Sequence[str], flag: str) -> str | None:
    for i, a in enumerate(argv):
        if a == flag and i + 1 < len(argv):
            return str(argv[i + 1])
        if a.startswith(flag + "="):
            return a.split("=", 1)[1]
    return None


def _benchmark_spec(summary: Mapping[str, Any]) -> tuple[str, str | None]:
    """(benchmark name or spec, data folder) the run was started with, from its manifest."""
    manifest = summary.get("manifest")
    argv = manifest.get("argv") if isinstance(manifest, dict) else None
    argv = [str(a) for a in argv] if isinstance(argv, list) else []
    spec = _argv_value(argv, "--benchmark")
    if spec is None:
        spec = str(summary.get("benchmark", "helpsteer2")).split("/")[0]
    return spec, _argv_value(argv, "--data")


def load_sweep(path: str | os.PathLike[str], *, cache: str | os.PathLike[str] | None = None,
               data: str | None = None, label: str | None = None,
               predictions: bool = True) -> SweepRun:
    """Read a sweep folder, reload its benchmark split (``data`` or the folder the run named)
    and, with ``predictions``, its cached scores from ``cache`` (default: the cache the run
    named, when it still exists, else the default cache)."""
    p = Path(path)
    summary = read_summary(p)
    ident = identity_of(summary)
    scorer = summary.get("scorer")
    if ident is None or not isinstance(scorer, str) or not isinstance(summary.get("sets"), list):
        raise InputError("not a sweep's summary (no 'benchmark', 'scorer' or 'sets')",
                         file=p / "summary.json", hint="pass folders written by pluralign sweep")
    spec, run_data = _benchmark_spec(summary)
    bench, _ = load_splits(spec, ident[1] or "eval", data or run_data, limit=ident[2])
    if bench.identity != ident[0] or (ident[2] is not None and bench.n_scenarios != ident[2]):
        raise InputError(f"the benchmark loaded now is {bench.identity} "
                         f"({bench.n_scenarios} scenarios), the run scored {ident[0]} "
                         f"({ident[2]} scenarios)", file=p / "summary.json", field="benchmark",
                         hint="pass the data folder the run used (--data)")
    root = _cache_root(summary, cache)
    run = SweepRun(p, label or p.name, summary, bench, scorer, root)
    if predictions and not run.is_choice_run:
        preds = ScoreCache(root).predictions(bench, scorer)
        missing = int(np.isnan(preds).any(axis=1).sum())
        if missing:
            raise InputError(f"the cache holds no complete scores of {scorer} "
                             f"({missing} of {bench.n_responses} responses missing)",
                             file=str(root), hint="pass the run's cache folder (--cache)")
        run.predictions = preds
    return run


def _cache_root(summary: Mapping[str, Any], cache: str | os.PathLike[str] | None) -> Path:
    if cache is not None:
        return Path(cache)
    manifest = summary.get("manifest")
    argv = manifest.get("argv") if isinstance(manifest, dict) else None
    named = _argv_value([str(a) for a in argv], "--cache") if isinstance(argv, list) else None
    if named and Path(named).is_dir():
        return Path(named)
    return cache_dir(None)
