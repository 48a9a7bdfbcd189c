"""The ``pareto`` job: the Pareto front of systems across sweep runs and their trade-off
steerability (the pluralism roadmap, Sorensen et al. 2024, §4.1–4.2).

Each run folder is a ``pluralign sweep`` output (``summary.json``, ``per_target.parquet``).
Every target of a sweep is a commensurating function f, the run's model steered to it is M_f,
and f(M_f) is the run's metric on that target (accuracy or weighted score, in [0, 1]). The
steerability score is Σ_f f(M_f) over the targets all runs share, each target counted once
(high, low and the sampled targets are also in ``all``); the front is taken over those targets
(``by="target"``) or over the target sets' means (``by="set"``). Runs of another benchmark
identity, split or scenario count are refused before anything is combined.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow.parquet as pq

from pluralign.engine.align.results import rows_table
from pluralign.engine.errors import InputError
from pluralign.engine.pluralism.pareto import pareto_front
from pluralign.engine.store.files import check_output, read_json
from pluralign.jobs.runs import check_comparable, read_summary
from pluralign.jobs.runtime import write_json_atomic, write_parquet_atomic

__all__ = ["ParetoConfig", "ParetoResult", "ParetoRun", "distinct_targets", "objectives",
           "read_run", "run_pareto", "steerability"]

Metric = Literal["accuracy", "weighted_score"]
TargetKey = tuple[str, str]
"""(target set, target JSON)."""


@dataclass(frozen=True, kw_only=True)
class ParetoConfig:
    """The sweep runs ``pluralign pareto`` compares, on what, and where it writes."""

    runs: tuple[str, ...]
    """Sweep output folders."""
    metric: Metric = "accuracy"
    """Per-target figure f(M_f)."""
    by: Literal["target", "set"] = "target"
    """Objectives of the front: each shared target, or each set's mean."""
    out: str
    """Folder for summary.json and pareto.parquet."""


@dataclass(frozen=True)
class ParetoRun:
    """One run's place: a row of pareto.parquet."""

    run: str
    """The run folder as given."""
    name: str
    """Its folder name and scorer identity."""
    on_front: bool
    """No other run Pareto-improves on it."""
    steerability: float
    """Σ_f f(M_f) over the shared targets."""
    mean: float
    """The mean f(M_f) over them."""
    objectives: list[float]
    """Its value on each objective."""


@dataclass(frozen=True)
class ParetoResult:
    """What a pareto run compared and wrote."""

    runs: list[ParetoRun]
    """One per run, in the order given."""
    objective_names: list[str]
    """``set:target`` per shared target, or the set names."""
    shared_targets: int
    """Distinct targets every run has a figure for (a target in two sets counts once)."""
    out: Path
    """The folder written: summary.json and pareto.parquet."""


def read_run(path: Path, metric: str) -> tuple[str, dict[TargetKey, float]]:
    """(scorer identity, {(set, target JSON): metric / 100}) of one sweep folder."""
    summary, table = path / "summary.json", path / "per_target.parquet"
    for f in (summary, table):
        if not f.is_file():
            raise InputError("not a sweep output folder (no summary.json and "
                             "per_target.parquet)", file=f, hint="run pluralign sweep --out")
    ident = str(read_json(summary).get("scorer", path.name))
    values = {}
    for i, r in enumerate(pq.read_table(table).to_pylist()):
        if metric not in r:
            raise InputError("missing column", file=table, record=i, field=metric)
        if r[metric] is not None:
            values[(str(r["set"]), str(r["target"]))] = float(r[metric]) / 100.0
    return ident, values


def distinct_targets(keys: Sequence[TargetKey]) -> list[TargetKey]:
    """``keys`` with each target once (its first set in sorted order): high, low and sampled
    targets are also in ``all``, and each is one commensurating function."""
    seen: dict[str, TargetKey] = {}
    for k in sorted(keys):
        seen.setdefault(k[1], k)
    return sorted(seen.values())


def objectives(runs: Sequence[dict[TargetKey, float]], by: str) -> tuple[list[str], np.ndarray]:
    """Objective names and the (runs × objectives) table over what every run has."""
    shared = sorted(set.intersection(*(set(r) for r in runs)))
    if not shared:
        raise InputError("the runs share no target with a defined figure", field="runs",
                         hint="sweep the same benchmark and target sets")
    if by == "target":
        once = distinct_targets(shared)
        return [f"{s}:{t}" for s, t in once], np.array([[r[k] for k in once] for r in runs])
    sets = sorted({s for s, _ in shared})
    table = [[float(np.mean([r[k] for k in shared if k[0] == s])) for s in sets] for r in runs]
    return sets, np.array(table)


def steerability(run: dict[TargetKey, float], keys: Sequence[TargetKey]) -> float:
    """Σ_f f(M_f) over ``keys`` (each target one commensurating function)."""
    return float(sum(run[k] for k in keys))


def run_pareto(config: ParetoConfig) -> ParetoResult:
    """Read every run, take the front and each run's steerability; write pareto.parquet and
    summary.json under ``config.out``."""
    check_output(config.out)
    check_comparable([(r, read_summary(Path(r))) for r in config.runs])
    names, runs = [], []
    for r in config.runs:
        ident, values = read_run(Path(r), config.metric)
        names.append(f"{Path(r).name} ({ident})")
        runs.append(values)
    cols, table = objectives(runs, config.by)
    front = pareto_front(table)
    shared = distinct_targets(sorted(set.intersection(*(set(r) for r in runs))))
    rows = []
    for i, n in enumerate(names):
        score = steerability(runs[i], shared)
        rows.append(ParetoRun(config.runs[i], n, bool(front[i]), score, score / len(shared),
                              [float(x) for x in table[i]]))
    out = Path(config.out)
    dicts = [asdict(r) for r in rows]
    write_parquet_atomic(out / "pareto.parquet", rows_table(dicts, "pareto"))
    write_json_atomic(out / "summary.json", {"metric": config.metric, "by": config.by,
                                             "shared_targets": len(shared),
                                             "objective_names": cols, "runs": dicts})
    return ParetoResult(rows, cols, len(shared), out)
