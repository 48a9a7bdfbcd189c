"""The ``jury`` job: who is served, not only how well on average.

Given the scores of one scorer on a benchmark split, every juror of a group file is aligned to
its own target and each group gets its accuracy, utility, welfare w_α, the share of jurors
above τ, bootstrap intervals, the best-to-worst gap and, unless asked not to, welfare-optimal
against collective choices (the pluralism roadmap, Sorensen et al. 2024, §4.3). File format:
docs/juries.md.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import pyarrow as pa

from pluralign.engine.align.results import columns_table, finite_or_none, rows_table
from pluralign.engine.data.benchmark import Benchmark
from pluralign.engine.pluralism.juries import Jury, load_jury
from pluralign.engine.pluralism.jury_eval import (
    JuryConfig,
    JuryResult,
    SelectionResult,
    evaluate_jury,
    select_welfare_optimal,
)
from pluralign.engine.pluralism.welfare import parse_alphas
from pluralign.engine.store.files import check_output
from pluralign.jobs.api import Scores
from pluralign.jobs.configs import Range
from pluralign.jobs.runtime import progress, write_json_atomic, write_parquet_atomic

__all__ = ["JuryJobConfig", "JuryJobResult", "check_jury", "run_jury"]


MAX_BOOTSTRAP = 100_000
"""Most bootstrap resamples (10**12 was accepted and failed allocating 87 TiB after scoring)."""


@dataclass(frozen=True, kw_only=True)
class JuryJobConfig:
    """What ``pluralign jury`` computes for a group file and where it writes it."""

    groups: str
    """Group file (JSON; see docs/juries.md)."""
    alphas: str | tuple[float, ...] = "0,0.5,1,2,inf"
    """Welfare inequality aversions α ≥ 0, comma-separated in a text (inf: the worst-off
    juror's utility)."""
    tau: float = 0.5
    """Threshold of the share of jurors with utility > tau."""
    utility: Literal["distance", "indicator"] = "distance"
    """Juror utility: the closeness 1 - d/sqrt(k) (distance) or correct/incorrect
    (indicator)."""
    bootstrap: Annotated[int, Range(0, MAX_BOOTSTRAP)] = 1000
    """Bootstrap resamples of scenarios for the intervals (0: none)."""
    confidence: float = 0.95
    """Interval level."""
    bootstrap_seed: int = 0
    """Seed of the bootstrap."""
    selection: bool = True
    """Compare welfare-optimal selection with the collective choice; False (the command
    line's ``--no-selection``) skips it."""
    out: str
    """Folder for summary.json and the Parquet tables."""

    def evaluation(self) -> JuryConfig:
        """The engine's settings (refuses a bad α, utility, level or resample count)."""
        return JuryConfig(alphas=parse_alphas(self.alphas), tau=self.tau, utility=self.utility,
                          n_bootstrap=self.bootstrap, confidence=self.confidence,
                          seed=self.bootstrap_seed)


@dataclass(frozen=True)
class JuryJobResult:
    """What a jury run computed and wrote."""

    bench: Benchmark
    """The evaluated split."""
    identity: str
    """The scorer's cache identity."""
    jury: Jury
    """The jurors of the group file."""
    evaluation: JuryResult
    """Per-group figures (then ``ALL``)."""
    selection: SelectionResult | None
    """Welfare-optimal against collective choices (None with ``selection`` off)."""
    seconds: dict[str, float]
    """Time taken to evaluate and to select."""
    out: Path
    """The folder written: summary.json, groups, jurors, scenarios (and selection) .parquet."""


def check_jury(config: JuryJobConfig, bench: Benchmark | None = None) -> JuryConfig:
    """Refuse, before any work, what would fail late: an output folder that cannot be written
    and bad settings; given the evaluated split, also a group file that does not fit its
    attributes (so nothing is scored for a run that cannot finish)."""
    check_output(config.out)
    evaluation = config.evaluation()
    if bench is not None:
        load_jury(config.groups, bench.attributes, bench.levels)
    return evaluation


def run_jury(config: JuryJobConfig, scores: Scores) -> JuryJobResult:
    """Evaluate the group file's jurors on ``scores`` and write the tables and summary.json
    under ``config.out``."""
    cfg = check_jury(config)
    bench, preds = scores.bench, scores.predictions
    jury = load_jury(config.groups, bench.attributes, bench.levels)
    progress(f"evaluating {jury.n_jurors:,} jurors in {jury.n_groups} groups")
    t0 = time.perf_counter()
    result = evaluate_jury(bench, preds, jury, cfg)
    t_eval = time.perf_counter() - t0
    selection = (select_welfare_optimal(bench, preds, jury, cfg.alphas) if config.selection
                 else None)
    t_select = time.perf_counter() - t0 - t_eval
    seconds = {"evaluate": round(t_eval, 4), "select": round(t_select, 4)}
    out = Path(config.out)
    _write_outputs(out, bench, scores.identity, config.groups, jury, result, selection, seconds)
    return JuryJobResult(bench, scores.identity, jury, result, selection, seconds, out)


def _write_outputs(out: Path, bench: Benchmark, ident: str, groups_file: str, jury: Jury,
                   result: JuryResult, selection: SelectionResult | None,
                   seconds: dict[str, float]) -> None:
    rows = result.rows()
    write_parquet_atomic(out / "groups.parquet", rows_table(rows, "jury_groups"))
    targets = jury.targets()
    write_parquet_atomic(out / "jurors.parquet", columns_table({
        "juror": list(jury.juror_ids),
        "group": [jury.group_names[g] for g in jury.group_of],
        "target": targets.json_all(),
        "weight": jury.weights.tolist(),
        "excluded": jury.empty.tolist(),
        "utility": [finite_or_none(x) for x in result.juror_closeness.tolist()],
        "accuracy": [finite_or_none(x) for x in result.juror_accuracy.tolist()],
    }, "jury_jurors"))
    write_parquet_atomic(out / "scenarios.parquet", _scenario_table(bench, result))
    summary: dict[str, object] = {
        "benchmark": bench.identity, "scorer": ident, "groups_file": str(groups_file),
        "config": {"alphas": [_alpha_json(a) for a in result.config.alphas],
                   "tau": result.config.tau, "utility": result.config.utility,
                   "bootstrap": result.config.n_bootstrap,
                   "confidence": result.config.confidence, "seed": result.config.seed},
        "jurors": jury.n_jurors, "excluded_empty_target": int(jury.empty.sum()),
        "groups": rows, "gaps": result.gaps(), "seconds": seconds,
    }
    if selection is not None:
        sel = selection.rows()
        write_parquet_atomic(out / "selection.parquet", rows_table(sel, "jury_selection"))
        summary["selection"] = sel
    write_json_atomic(out / "summary.json", summary)


def _alpha_json(a: float) -> float | str:
    return "inf" if math.isinf(a) else a


def _scenario_table(bench: Benchmark, result: JuryResult) -> pa.Table:
    n_s, n_g, _ = result.per_scenario.shape
    cols: dict[str, list[object]] = {
        "scenario": [s.id for s in bench.scenarios for _ in range(n_g)],
        "group": list(result.names) * n_s,
    }
    flat = result.per_scenario.reshape(n_s * n_g, -1)
    for m, name in enumerate(result.metrics):
        cols[name] = [finite_or_none(x) for x in flat[:, m].tolist()]
    return columns_table(cols, "jury_scenarios")
