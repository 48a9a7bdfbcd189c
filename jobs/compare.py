"""The ``compare`` job: two sweeps of the same scenarios, paired. Per target set, the
difference in accuracy and weighted score with a bootstrap interval over scenarios (each
resample draws the same scenarios for both runs), the share of targets where A beats B, and per
attribute the difference in mean squared error.

Runs that differ in benchmark identity, split or scenarios are refused before any work.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from pluralign.engine.align.paired import (
    PairedSums,
    all_outcomes,
    error_difference,
    interval,
    resample_weights,
)
from pluralign.engine.data.targets import TargetSet, all_targets, from_dicts
from pluralign.engine.errors import InputError
from pluralign.jobs.runs import SweepRun, check_comparable, load_sweep, read_summary
from pluralign.jobs.runtime import write_json_atomic

__all__ = ["CompareConfig", "CompareResult", "SetComparison", "compare", "compare_runs",
           "run_sets"]


@dataclass(frozen=True, kw_only=True)
class CompareConfig:
    """Two sweep runs and how ``pluralign compare`` pairs them."""

    run_a: str
    """The first sweep folder (A)."""
    run_b: str
    """The second sweep folder (B), of the same benchmark, split and scenarios."""
    cache: str | None = None
    """Score cache both runs read (None: the cache each run named, else the default)."""
    data: str | None = None
    """Data folder (None: the one the runs named, then $PLURALIGN_DATA)."""
    bootstrap: int = 1000
    """Bootstrap resamples of the scenarios."""
    seed: int = 0
    """Seed of the resampling."""
    level: float = 0.95
    """Coverage of the percentile intervals."""
    out: str | None = None
    """JSON file to write the comparison to (None: print only)."""


@dataclass(frozen=True)
class SetComparison:
    """One target set, A against B (percent points)."""

    set: str
    """Target set name."""
    targets: int
    """Targets defined (some counted scenario) in both runs."""
    accuracy_a: float
    accuracy_b: float
    accuracy_diff: float
    """Mean accuracy of A minus B over the set's targets."""
    accuracy_lo: float
    accuracy_hi: float
    weighted_a: float
    weighted_b: float
    weighted_diff: float
    """Mean weighted score of A minus B."""
    weighted_lo: float
    weighted_hi: float
    a_beats_b: float
    """Share of targets where A's accuracy is higher than B's."""
    b_beats_a: float
    """Share of targets where B's is higher (the rest tie)."""


@dataclass(frozen=True)
class CompareResult:
    """A paired comparison of two runs."""

    run_a: str
    run_b: str
    scorer_a: str
    scorer_b: str
    benchmark: str
    split: str
    scenarios: int
    bootstrap: int
    seed: int
    level: float
    sets: list[SetComparison]
    attributes: dict[str, dict[str, float]] = field(default_factory=dict)
    """Per attribute: ``mse_a``, ``mse_b``, ``diff`` (A - B), ``lo``, ``hi``."""

    def to_json(self) -> dict[str, Any]:
        return {k: _clean(v) for k, v in asdict(self).items()}


def _clean(v: Any) -> Any:
    if isinstance(v, float):
        return None if math.isnan(v) else round(v, 6)
    if isinstance(v, dict):
        return {k: _clean(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_clean(x) for x in v]
    return v


def run_sets(run: SweepRun) -> list[TargetSet]:
    """The target sets a sweep evaluated, exactly: per_target.parquet's targets by set."""
    table = run.path / "per_target.parquet"
    if not table.is_file():
        raise InputError("no per_target.parquet in the run folder", file=run.path,
                         hint="pass folders written by pluralign sweep")
    cols = pq.read_table(table, columns=["set", "target"]).to_pydict()
    by: dict[str, list[str]] = {}
    for s, t in zip(cols["set"], cols["target"], strict=True):
        by.setdefault(str(s), []).append(str(t))
    attrs = run.bench.attributes
    grid = all_targets(attrs, run.bench.levels)
    sets = []
    for name, texts in by.items():
        try:
            ts = from_dicts(name, attrs, [json.loads(t) for t in texts], source=str(table))
        except json.JSONDecodeError as e:
            raise InputError(f"a target is not JSON ({e})", file=table, field="target") from None
        same = len(ts) == len(grid) and np.array_equal(ts.values, grid.values, equal_nan=True)
        sets.append(TargetSet(name, attrs, grid.values, grid.grid) if same else ts)
    return sets


def compare_runs(a: SweepRun, b: SweepRun, *, bootstrap: int = 1000, seed: int = 0,
                 level: float = 0.95, sets: Sequence[TargetSet] | None = None) -> CompareResult:
    """The paired comparison of two loaded runs over ``sets`` (default: the target sets both
    evaluated)."""
    check_comparable([(str(a.path), a.summary), (str(b.path), b.summary)])
    if a.predictions is None or b.predictions is None:
        raise InputError("compare needs score predictions; a judge that picks responses "
                         "itself is compared through its per_scenario.parquet", field="runs")
    if bootstrap < 1 or not 0 < level < 1:
        raise InputError("`bootstrap` must be >= 1 and `level` in (0, 1)", field="bootstrap")
    weights = resample_weights(a.bench.n_scenarios, bootstrap, seed)
    if sets is None:  # the sets both runs evaluated
        b_names = {s.name for s in run_sets(b)}
        sets = [ts for ts in run_sets(a) if ts.name in b_names]
    rows = [_compare_set(a, b, ts, weights, level) for ts in sets]
    if not rows:
        raise InputError("the runs share no target set", field="runs")
    err = error_difference(a.bench, a.predictions, b.predictions, weights)
    mse_a = ((a.predictions - a.bench.labels) ** 2).mean(axis=0)
    mse_b = ((b.predictions - b.bench.labels) ** 2).mean(axis=0)
    attrs = {}
    for j, name in enumerate(a.bench.attributes):
        lo, hi = interval(err[:, j], level)
        attrs[name] = {"mse_a": float(mse_a[j]), "mse_b": float(mse_b[j]),
                       "diff": float(err[0, j]), "lo": lo, "hi": hi}
    return CompareResult(str(a.path), str(b.path), a.scorer, b.scorer, a.bench.identity,
                         a.bench.split, a.bench.n_scenarios, bootstrap, seed, level, rows, attrs)


def _compare_set(a: SweepRun, b: SweepRun, ts: TargetSet, weights: np.ndarray,
                 level: float) -> SetComparison:
    assert a.predictions is not None and b.predictions is not None
    sums = PairedSums(weights.shape[0])
    for oa, ob in zip(all_outcomes(a.bench, a.predictions, ts),
                      all_outcomes(b.bench, b.predictions, ts), strict=True):
        sums.add(weights, oa, ob)
    m = sums.means()
    acc, w = m["acc_a"] - m["acc_b"], m["w_a"] - m["w_b"]
    n = max(sums.targets, 1)
    return SetComparison(ts.name, sums.targets, float(m["acc_a"][0]), float(m["acc_b"][0]),
                         float(acc[0]), *interval(acc, level), float(m["w_a"][0]),
                         float(m["w_b"][0]), float(w[0]), *interval(w, level),
                         sums.a_wins / n, sums.b_wins / n)


def compare(run_a: str | os.PathLike[str], run_b: str | os.PathLike[str], *,
            cache: str | os.PathLike[str] | None = None, data: str | None = None,
            bootstrap: int = 1000, seed: int = 0, level: float = 0.95) -> CompareResult:
    """Compare two sweep folders of the same scenarios, paired (see the module)."""
    check_comparable([(str(run_a), read_summary(Path(run_a))),
                      (str(run_b), read_summary(Path(run_b)))])  # before loading anything
    a = load_sweep(run_a, cache=cache, data=data)
    b = load_sweep(run_b, cache=cache, data=data)
    return compare_runs(a, b, bootstrap=bootstrap, seed=seed, level=level)


def run_compare(config: CompareConfig) -> CompareResult:
    """The job behind ``pluralign compare``: compare, and write ``config.out`` when given."""
    result = compare(config.run_a, config.run_b, cache=config.cache, data=config.data,
                     bootstrap=config.bootstrap, seed=config.seed, level=config.level)
    if config.out:
        write_json_atomic(Path(config.out), result.to_json())
    return result


def format_table(r: CompareResult) -> str:
    """The comparison as the command line prints it."""
    pct = f"{100 * r.level:g} %"
    lines = [f"A: {r.run_a}  ({r.scorer_a})", f"B: {r.run_b}  ({r.scorer_b})",
             f"{r.benchmark}  split {r.split}  {r.scenarios} scenarios  paired bootstrap "
             f"{r.bootstrap} resamples (seed {r.seed}), {pct} intervals", "",
             f"{'set':<16}{'targets':>8}{'acc A':>8}{'acc B':>8}{'A-B':>8}{'interval':>18}"
             f"{'wtd A':>8}{'wtd B':>8}{'A-B':>8}{'interval':>18}{'A>B':>7}{'B>A':>7}"]
    for s in r.sets:
        lines.append(
            f"{s.set[:15]:<16}{s.targets:>8}{s.accuracy_a:>8.1f}{s.accuracy_b:>8.1f}"
            f"{s.accuracy_diff:>+8.1f}{_iv(s.accuracy_lo, s.accuracy_hi):>18}"
            f"{s.weighted_a:>8.1f}{s.weighted_b:>8.1f}{s.weighted_diff:>+8.1f}"
            f"{_iv(s.weighted_lo, s.weighted_hi):>18}{100 * s.a_beats_b:>6.0f}%"
            f"{100 * s.b_beats_a:>6.0f}%")
    lines += ["", f"{'attribute':<16}{'MSE A':>9}{'MSE B':>9}{'A-B':>9}{'interval':>20}"]
    for name, v in r.attributes.items():
        lines.append(f"{name[:15]:<16}{v['mse_a']:>9.4f}{v['mse_b']:>9.4f}{v['diff']:>+9.4f}"
                     f"{_iv(v['lo'], v['hi'], 4):>20}")
    return "\n".join(lines)


def _iv(lo: float, hi: float, digits: int = 1) -> str:
    if math.isnan(lo):
        return "—"
    return f"[{lo:+.{digits}f}, {hi:+.{digits}f}]"
