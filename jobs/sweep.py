"""The sweep job: score a benchmark through the cache, then re-align target sets.

Scores come from the cache when present; only missing work is computed (or sent to a model).
Every requested target set is then re-aligned from the cached scores, and the run folder gets
``summary.json``, ``per_target.parquet`` and ``per_scenario.parquet`` (each carrying the run
manifest). :func:`run_sweep` takes a typed :class:`SweepConfig`; ``pluralign sweep`` builds one
from its flags, calls it and prints the table.

Five kinds of scorer take four paths: a model-free scorer or an LLM score judge yields
predicted scores, re-aligned for every target; the reward scorer likewise, from a reward
model's heads; prompt-aligned and unaligned judges pick responses themselves (one request per
(scenario, target), so the all-targets sweep is refused for prompt-aligned); and
``predictions:DIR`` imports the research code's per-target runs as picks.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import numpy as np

from pluralign.engine.align.metrics import SetSummary, implicit_bias, regression_quality, summarize
from pluralign.engine.align.per_scenario import per_scenario_table, standard_error
from pluralign.engine.align.realign import (
    AlignResult,
    accuracy_from_choices,
    parse_memory_budget,
)
from pluralign.engine.align.results import finite_or_none, per_target_table
from pluralign.engine.data.benchmark import Benchmark
from pluralign.engine.data.sources import resolve_data_dir
from pluralign.engine.data.target_sets import DEFAULT_SETS, resolve_target_sets
from pluralign.engine.data.targets import TargetSet, concat, from_dicts
from pluralign.engine.errors import InputError
from pluralign.engine.judges import CHOICE_JUDGES, SCORE_JUDGES
from pluralign.engine.scorers.research_runs import import_runs
from pluralign.engine.store.cache import ScoreCache
from pluralign.engine.store.choices import ChoiceCache
from pluralign.engine.store.files import check_output
from pluralign.jobs import api
from pluralign.jobs.configs import (
    MAX_SHARDS,
    LLMConfig,
    Range,
    RewardConfig,
    SplitConfig,
    check_numbers,
)
from pluralign.jobs.llm_scoring import sample_spread
from pluralign.jobs.runtime import (
    cache_dir,
    check_samples,
    load_splits,
    note_manifest,
    progress,
    scorer_options,
    write_json_atomic,
    write_parquet_atomic,
)
from pluralign.jobs.sharded import realign_for_args

Row = tuple[TargetSet, AlignResult]


@dataclass(frozen=True)
class SweepConfig:
    """What one sweep scores, re-aligns and writes."""

    out: str
    """Folder for summary.json and per_target.parquet."""
    splits: SplitConfig = field(default_factory=SplitConfig)
    """The benchmark split, the training split, the data and the cache."""
    scorer: str = "ridge"
    """A scorer of the registry (``pluralign.scorer_names()``) or predictions:PATH."""
    seed: int = 0
    """Seed of the random scorer."""
    value: float = 0.5
    """Value of the constant scorer."""
    targets: tuple[str, ...] = DEFAULT_SETS
    """Target sets: all, sampled, high, low, target JSON files or folders, or inline targets
    ('{"helpfulness": 1}' or helpfulness=1,verbosity=0)."""
    per_scenario_all: bool = False
    """Write per_scenario.parquet rows for the all-targets set too."""
    shards: Annotated[int, Range(1, MAX_SHARDS)] | None = None
    """Re-align as N Ray tasks over blocks of targets (None: automatic above 2e9 responses x
    targets on a sweep already on Ray)."""
    memory_budget: int | str | None = None
    """Memory one re-alignment may hold (512M, 2G, 25%; None: 1/8 of RAM); beyond it targets
    and scenarios are processed in blocks."""
    llm: LLMConfig | None = None
    """The LLM judge's settings (needed for an LLM scorer)."""
    reward: RewardConfig | None = None
    """The reward model's settings (needed for ``reward``)."""

    def __post_init__(self) -> None:
        check_numbers(self)
        if self.memory_budget is not None:
            parse_memory_budget(self.memory_budget)


@dataclass(frozen=True)
class SweepResult:
    """What a sweep computed and wrote."""

    bench: Benchmark
    """The evaluated split."""
    identity: str
    """The scorer's cache identity."""
    summaries: list[SetSummary]
    """Accuracy per target set (and by number of target attributes)."""
    rows: list[Row] = field(repr=False)
    """Each set with its per-target result (the rows of per_target.parquet)."""
    summary: dict[str, Any] = field(repr=False)
    """summary.json as written (without the manifest)."""
    written: list[Path] = field(default_factory=list)
    """The files written into ``out``."""


def _load(s: SplitConfig, need_train: bool) -> tuple[Benchmark, Benchmark | None]:
    return load_splits(s.benchmark, s.split, s.data, limit=s.limit,
                       train_split=s.train_split if need_train else None)


def _runs_path(config: SweepConfig) -> Path | None:
    """The folder of ``predictions:DIR`` (the research code's per-target runs), else None."""
    name, sep, arg = config.scorer.partition(":")
    return Path(arg) if name == "predictions" and sep and Path(arg).is_dir() else None


def run_sweep(config: SweepConfig) -> SweepResult:
    """Score the benchmark split with ``config.scorer`` through the cache, re-align every
    target set and write the run folder. Raises :class:`~pluralign.engine.errors.InputError`
    on bad input before any work, and :class:`~pluralign.engine.errors.IncompleteScoring`
    (after writing a partial summary) when model answers stay missing."""
    check_output(config.out)  # before any work: a bad out must not cost a scoring run
    t0 = time.perf_counter()
    if config.scorer == "reward":
        return _sweep_reward(config, t0)
    if _runs_path(config) is not None and config.scorer.partition(":")[0] == "predictions":
        return _sweep_imported_runs(config, t0)
    llm = config.llm if config.scorer in (*SCORE_JUDGES, *CHOICE_JUDGES) else None
    if llm is None and config.scorer in (*SCORE_JUDGES, *CHOICE_JUDGES):
        raise InputError(f"{config.scorer} is an LLM judge and needs its settings",
                         field="llm", hint="pass `llm=LLMConfig(model=...)`")
    need = api.needs_train(config.scorer, llm)
    bench, train = _load(config.splits, need)
    check_samples(bench, None if llm is None else llm.samples)
    # Resolve targets before scoring: a bad target file should fail in a second, not after.
    sets = resolve_target_sets(config.targets, bench, config.splits.data)
    if config.scorer in CHOICE_JUDGES:
        assert llm is not None
        return _sweep_choices(config, bench, train, llm, sets, t0)
    scores = api.score(bench, config.scorer, train=train, cache=config.splits.cache, config=llm,
                       out=config.out, **scorer_options(config.scorer, seed=config.seed,
                                                      value=config.value))  # never on missing answers
    t_score = time.perf_counter() - t0
    t1 = time.perf_counter()
    summaries, rows = _realign(config, bench, scores.predictions, sets)
    t_align = time.perf_counter() - t1
    _write_per_scenario(config, bench, scores.predictions, sets)
    return _report(config, bench, scores.identity, summaries, rows, {
        "spread_by_attribute": _spread_by_attribute(config, scores),
        "regression": _clean(regression_quality(bench, scores.predictions)),
        "seconds": {"scoring": round(t_score, 3), "realign": round(t_align, 4)},
    })


def _realign(config: SweepConfig, bench: Benchmark, predictions: np.ndarray,
             sets: list[TargetSet]) -> tuple[list[SetSummary], list[Row]]:
    summaries, rows = [], []
    for ts in sets:
        progress(f"re-aligning {len(ts):,} targets ({ts.name})")
        res = realign_for_args(config, bench, predictions, ts, weighted=True)
        summaries.append(summarize(ts.name, res.accuracy, ts.n_attributes, res.weighted,
                                   res.closeness))
        rows.append((ts, res))
    return summaries, rows


def _sweep_reward(config: SweepConfig, t0: float) -> SweepResult:
    """A reward model's heads as attribute scores, then re-alignment."""
    if config.reward is None:
        raise InputError("the reward scorer needs its settings", field="reward",
                         hint="pass `reward=RewardConfig(model=..., attributes=...)`")
    bench, _ = _load(config.splits, False)
    sets = resolve_target_sets(config.targets, bench, config.splits.data)
    scores = api.score(bench, "reward", config=config.reward, cache=config.splits.cache)
    t_score = time.perf_counter() - t0
    summaries, rows = _realign(config, bench, scores.predictions, sets)
    _write_per_scenario(config, bench, scores.predictions, sets)
    return _report(config, bench, scores.identity, summaries, rows, {
        "regression": _clean(regression_quality(bench, scores.predictions)),
        "seconds": {"scoring": round(t_score, 3)}, "reward_counts": scores.report,
    })


def _sweep_imported_runs(config: SweepConfig, t0: float) -> SweepResult:
    """``predictions:DIR``: every run below DIR (one target each; predictions or a selected
    response) goes into the choice cache; accuracy per run target (or per requested set)."""
    path = _runs_path(config)
    assert path is not None
    bench, _ = _load(config.splits, False)
    data = resolve_data_dir(config.splits.data)
    cache = ChoiceCache(ScoreCache(cache_dir(config.splits.cache)).root)
    ident, keys = import_runs(bench, path, cache,
                              targets_dir=None if data is None else data / "alignment_targets")
    note_manifest(bench, None, scorer={"identity": ident, "name": "predictions-runs",
                                       "kind": "choice", "runs": len(keys)})
    if list(config.targets) == list(DEFAULT_SETS):
        sets = [from_dicts("runs", bench.attributes, [json.loads(k) for k in keys])]
    else:
        sets = [ts for ts in resolve_target_sets(config.targets, bench, config.splits.data)
                if ts.name != "all"]
    summaries, rows = [], []
    for ts in sets:
        chosen = cache.choices(bench, ident, ts.json_all(), 1)
        missing = int((chosen < 0).all(axis=0).sum())
        if missing:
            progress(f"{ts.name}: {missing} of {len(ts)} targets have no run; left out")
        res = accuracy_from_choices(bench, chosen, ts)
        summaries.append(summarize(ts.name, res.accuracy, ts.n_attributes))
        rows.append((ts, res))
    return _report(config, bench, ident, summaries, rows,
                   {"seconds": {"total": round(time.perf_counter() - t0, 3)}})


def _sweep_choices(config: SweepConfig, bench: Benchmark, train: Benchmark | None,
                   llm: LLMConfig, sets: list[TargetSet], t0: float) -> SweepResult:
    """Prompt-aligned and unaligned judges pick responses themselves: one request per
    (scenario, target) for prompt-aligned, so the all-targets sweep is refused for it."""
    if config.scorer == "prompt-aligned":
        if any(ts.name == "all" for ts in sets) and list(config.targets) != list(DEFAULT_SETS):
            raise InputError(
                "prompt-aligned needs one request per (scenario, target); it cannot sweep all "
                "targets", field="targets", hint="name `targets` such as sampled, high, low "
                                                 "or files")
        sets = [ts for ts in sets if ts.name != "all"]
    picks = api.choose_llm(bench, config.scorer, llm, concat(sets, "requested"), train=train,
                           cache=config.splits.cache, out=config.out)  # never on missing answers
    summaries, rows = [], []
    for ts in sets:
        chosen = picks.chosen_indices(ts)
        missing = int((chosen < 0).sum())
        if missing:
            progress(f"{ts.name}: {missing} (scenario, target) answers missing; left out")
        res = accuracy_from_choices(picks.bench, chosen, ts)
        summaries.append(summarize(ts.name, res.accuracy, ts.n_attributes))
        rows.append((ts, res))
    extra: dict[str, Any] = {"seconds": {"total": round(time.perf_counter() - t0, 3)}}
    if config.scorer == "unaligned" and sets:
        extra["implicit_bias"] = implicit_bias(picks.bench, picks.chosen_indices(sets[0])[:, 0])
    return _report(config, picks.bench, picks.identity, summaries, rows, extra)


def _write_per_scenario(config: SweepConfig, bench: Benchmark, preds: np.ndarray,
                        sets: list[TargetSet]) -> None:
    """per_scenario.parquet for every set except ``all`` (and ``all`` on request)."""
    chosen = [ts for ts in sets if ts.name != "all" or config.per_scenario_all]
    if chosen:
        write_parquet_atomic(Path(config.out) / "per_scenario.parquet",
                             per_scenario_table(bench, preds, chosen))


def _spread_by_attribute(config: SweepConfig,
                         scores: api.Scores) -> dict[str, float | None] | None:
    """Self-consistency: mean over responses of the score's std across samples, per attribute
    (None with one sample or a model-free scorer)."""
    if config.scorer not in SCORE_JUDGES or scores.samples is None:
        return None
    spread = sample_spread(ScoreCache(cache_dir(config.splits.cache)), scores.bench, scores.identity,
                           scores.samples)
    if spread is None:
        return None
    return {a: finite_or_none(float(np.nanmean(spread[:, j])))
            if np.isfinite(spread[:, j]).any() else None
            for j, a in enumerate(scores.bench.attributes)}


def _report(config: SweepConfig, bench: Benchmark, ident: str, summaries: list[SetSummary],
            rows: list[Row], extra: dict[str, Any]) -> SweepResult:
    out = Path(config.out)
    write_parquet_atomic(out / "per_target.parquet", per_target_table(rows))
    sets = [{**s.to_json(), "standard_error": standard_error(res.accuracy)}
            for s, (_, res) in zip(summaries, rows, strict=True)]
    summary = {"benchmark": bench.identity, "split": bench.split,
               "scenarios": bench.n_scenarios, "scorer": ident, "sets": sets, **extra}
    write_json_atomic(out / "summary.json", summary)
    written = [out / n for n in ("summary.json", "per_target.parquet", "per_scenario.parquet")
               if (out / n).exists()]
    progress(f"wrote {', '.join(p.name for p in written)} in {out}")
    return SweepResult(bench, ident, summaries, rows, summary, written)


def _clean(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, float):
        return finite_or_none(obj)
    return obj
