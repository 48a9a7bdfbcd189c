"""``pluralign sweep``: score a benchmark through the cache, then re-align target sets.

Scores come from the cache when present; only missing work is computed (or sent to a model).
Every requested target set is then re-aligned from the cached scores.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np

from pluralign.engine.data.target_sets import DEFAULT_SETS, resolve_target_sets
from pluralign.jobs.cli.args import (
    CHOICE_SCORERS,
    LLM_SCORERS,
    add_llm_scorer_args,
    add_scorer_args,
    add_target_args,
    finite_or_none,
    load_splits,
    reward_config,
    score_args,
    scorer_splits,
)
from pluralign.jobs.runtime import (
    cache_dir,
    note_manifest,
    progress,
    write_json_atomic,
    write_parquet_atomic,
)


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("sweep", help="score (through the cache) and re-align target sets",
                       description=__doc__)
    add_scorer_args(p, "ridge (default), oracle, random, constant, predictions:PATH, reward, "
                       + ", ".join(LLM_SCORERS))
    add_target_args(p, DEFAULT_SETS)
    p.add_argument("--out", required=True, help="folder for summary.json and per_target.parquet")
    p.add_argument("--per-scenario-all", action="store_true",
                   help="write per_scenario.parquet rows for the all-targets set too")
    from pluralign.jobs.sharded import add_realign_args

    add_realign_args(p)
    add_llm_scorer_args(p)
    p.set_defaults(func=run)


def run_reward(args: argparse.Namespace, t0: float) -> int:
    """``--scorer reward``: a reward model's heads as attribute scores (``pluralign.score``
    with the RewardConfig of the flags), then re-alignment."""
    from pluralign.engine.align.metrics import regression_quality, summarize
    from pluralign.jobs import api
    from pluralign.jobs.sharded import realign_for_args

    bench, _ = load_splits(args, need_train=False)
    sets = resolve_target_sets(args.targets, bench, args.data)
    scores = api.score(bench, "reward", config=reward_config(args), cache=args.cache)
    preds, ident, counts = scores.predictions, scores.identity, scores.report
    t_score = time.perf_counter() - t0
    summaries, rows = [], []
    for ts in sets:
        res = realign_for_args(args, bench, preds, ts, weighted=True)
        summaries.append(summarize(ts.name, res.accuracy, ts.n_attributes, res.weighted,
                                   res.weighted_sqrtk))
        rows.append((ts, res))
    _write_per_scenario(args, bench, preds, sets)
    _report(args, bench, ident, summaries, rows, {
        "regression": _clean(regression_quality(bench, preds)),
        "seconds": {"scoring": round(t_score, 3)}, "reward_counts": counts,
    })
    return 0


def run(args: argparse.Namespace) -> int:
    from pluralign.engine.align.metrics import regression_quality, summarize
    from pluralign.engine.store.files import check_output
    from pluralign.jobs.sharded import realign_for_args

    check_output(args.out)  # before any work: a bad --out must not cost a scoring run
    t0 = time.perf_counter()
    if args.scorer == "reward":
        return run_reward(args, t0)
    if args.scorer in LLM_SCORERS:
        try:
            import pluralign.jobs.llm_scoring  # noqa: F401
        except ImportError as e:
            from pluralign.engine.errors import PluralignError

            raise PluralignError(f"LLM scorers need the distributed extra ({e}): "
                                 "pip install 'pluralign[distributed]'") from None
    elif _runs_path(args) is not None:
        return run_imported_runs(args, t0)
    bench, train, config = scorer_splits(args)
    # Resolve targets before scoring: a bad target file should fail in a second, not after.
    sets = resolve_target_sets(args.targets, bench, args.data)
    if args.scorer in CHOICE_SCORERS:
        return run_choices(args, bench, train, config, sets, t0)
    scores = score_args(args, bench, train, config)  # LLM judges: never on incomplete scores
    preds, ident = scores.predictions, scores.identity
    t_score = time.perf_counter() - t0
    summaries, rows = [], []
    t1 = time.perf_counter()
    for ts in sets:
        progress(f"re-aligning {len(ts):,} targets ({ts.name})")
        res = realign_for_args(args, bench, preds, ts, weighted=True)
        summaries.append(summarize(ts.name, res.accuracy, ts.n_attributes, res.weighted,
                                   res.weighted_sqrtk))
        rows.append((ts, res))
    t_align = time.perf_counter() - t1
    _write_per_scenario(args, bench, preds, sets)
    _report(args, bench, ident, summaries, rows, {
        "spread_by_attribute": _spread_by_attribute(args, scores),
        "regression": _clean(regression_quality(bench, preds)),
        "seconds": {"scoring": round(t_score, 3), "realign": round(t_align, 4)},
    })
    return 0


def _runs_path(args: argparse.Namespace) -> Path | None:
    """The folder of ``predictions:DIR`` (the research code's per-target runs), else None."""
    name, sep, arg = args.scorer.partition(":")
    return Path(arg) if name == "predictions" and sep and Path(arg).is_dir() else None


def run_imported_runs(args: argparse.Namespace, t0: float) -> int:
    """``predictions:DIR``: every run below DIR (one target each; predictions or a selected
    response) goes into the choice cache; accuracy per run target (or per requested set)."""
    from pluralign.engine.align.metrics import summarize
    from pluralign.engine.align.realign import accuracy_from_choices
    from pluralign.engine.data.sources import resolve_data_dir
    from pluralign.engine.data.targets import from_dicts
    from pluralign.engine.scorers.research_runs import import_runs
    from pluralign.engine.store.cache import ScoreCache
    from pluralign.engine.store.choices import ChoiceCache

    path = _runs_path(args)
    assert path is not None
    bench, _ = load_splits(args, need_train=False)
    data = resolve_data_dir(args.data)
    cache = ChoiceCache(ScoreCache(cache_dir(args.cache)).root)
    ident, keys = import_runs(bench, path, cache,
                              targets_dir=None if data is None else data / "alignment_targets")
    note_manifest(bench, None, scorer={"identity": ident, "name": "predictions-runs",
                                       "kind": "choice", "runs": len(keys)})
    if list(args.targets) == list(DEFAULT_SETS):
        import json

        sets = [from_dicts("runs", bench.attributes, [json.loads(k) for k in keys])]
    else:
        sets = [ts for ts in resolve_target_sets(args.targets, bench, args.data)
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
    _report(args, bench, ident, summaries, rows,
            {"seconds": {"total": round(time.perf_counter() - t0, 3)}})
    return 0


def run_choices(args: argparse.Namespace, bench: Any, train: Any, config: Any, sets: list[Any],
                t0: float) -> int:
    """Prompt-aligned and unaligned judges pick responses themselves: one request per
    (scenario, target) for prompt-aligned, so the all-targets sweep is refused for it."""
    from pluralign.engine.align.metrics import summarize
    from pluralign.engine.align.realign import accuracy_from_choices
    from pluralign.engine.data.targets import concat
    from pluralign.engine.errors import InputError
    from pluralign.jobs import api

    if args.scorer == "prompt-aligned":
        if any(ts.name == "all" for ts in sets) and args.targets != list(DEFAULT_SETS):
            raise InputError(
                "prompt-aligned needs one request per (scenario, target); it cannot sweep all "
                "targets", field="targets", hint="use --targets sampled high low or files")
        sets = [ts for ts in sets if ts.name != "all"]
    picks = api.choose_llm(bench, args.scorer, config, concat(sets, "requested"), train=train,
                           cache=args.cache, out=args.out)  # never on incomplete answers
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
    if args.scorer == "unaligned" and sets:
        extra["implicit_bias"] = _implicit_bias(picks.bench, picks.chosen_indices(sets[0])[:, 0])
    _report(args, picks.bench, picks.identity, summaries, rows, extra)
    return 0


def _implicit_bias(bench: Any, chosen: np.ndarray) -> dict[str, float] | None:
    """Mean label vector of the target-free choices (seed 003 Fig. 7), over answered
    scenarios."""
    answered = np.flatnonzero(chosen >= 0)
    if answered.size == 0:
        return None
    rows = bench.offsets[:-1][answered] + chosen[answered]
    means = bench.labels[rows].mean(axis=0)
    return {a: float(v) for a, v in zip(bench.attributes, means, strict=True)}


def _write_per_scenario(args: argparse.Namespace, bench: Any, preds: np.ndarray,
                        sets: list[Any]) -> None:
    """per_scenario.parquet for every set except ``all`` (and ``all`` on request)."""
    from pluralign.engine.align.per_scenario import per_scenario_table

    chosen = [ts for ts in sets if ts.name != "all" or args.per_scenario_all]
    if chosen:
        write_parquet_atomic(Path(args.out) / "per_scenario.parquet",
                             per_scenario_table(bench, preds, chosen))


def _spread_by_attribute(args: argparse.Namespace,
                         scores: Any) -> dict[str, float | None] | None:
    """Self-consistency: mean over responses of the score's std across samples, per attribute
    (None with one sample or a model-free scorer)."""
    if args.scorer not in LLM_SCORERS:
        return None
    from pluralign.engine.store.cache import ScoreCache
    from pluralign.jobs.llm_scoring import sample_spread

    spread = sample_spread(ScoreCache(cache_dir(args.cache)), scores.bench, scores.identity,
                           scores.samples)
    if spread is None:
        return None
    return {a: finite_or_none(float(np.nanmean(spread[:, j])))
            if np.isfinite(spread[:, j]).any() else None
            for j, a in enumerate(scores.bench.attributes)}


def _report(args: argparse.Namespace, bench: Any, ident: str, summaries: list[Any],
            rows: list[Any], extra: dict[str, Any]) -> None:
    from pluralign.engine.align.per_scenario import standard_error
    from pluralign.engine.align.results import per_target_table

    print_table(bench, ident, summaries)
    out = Path(args.out)
    write_parquet_atomic(out / "per_target.parquet", per_target_table(rows))
    sets = []
    for s, (_, res) in zip(summaries, rows, strict=True):
        sets.append({**s.to_json(), "standard_error": standard_error(res.accuracy)})
    write_json_atomic(out / "summary.json", {
        "benchmark": bench.identity,
        "split": bench.split,
        "scenarios": bench.n_scenarios,
        "scorer": ident,
        "sets": sets,
        **extra,
    })
    written = [n for n in ("summary.json", "per_target.parquet", "per_scenario.parquet")
               if (out / n).exists()]
    progress(f"wrote {', '.join(written)} in {out}")


def _clean(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, float):
        return finite_or_none(obj)
    return obj


def _fmt(mean: float | None, std: float | None) -> str:
    return "n/a" if mean is None else f"{mean:5.1f} ± {std:4.1f}"


def print_table(bench: Any, ident: str, summaries: list[Any]) -> None:
    print(f"\n{bench.identity}  scorer {ident}  ({bench.n_scenarios} scenarios)")
    print(f"{'targets':<12}{'count':>8}{'defined':>9}   {'accuracy':<14}{'weighted':>9}")
    for s in summaries:
        w = "n/a" if s.weighted_mean is None else f"{s.weighted_mean:.1f}"
        print(f"{s.name:<12}{s.n_targets:>8,}{s.n_defined:>9,}   {_fmt(s.mean, s.std):<14}{w:>9}")
    ks = sorted({k for s in summaries for k in (s.by_n_attributes or {})})
    if ks:
        print("\naccuracy by number of target attributes")
        print(f"{'targets':<12}" + "".join(f"{k:>15}" for k in ks))
        for s in summaries:
            by = s.by_n_attributes or {}
            cells = [_fmt(*by[k][:2]) if k in by else "" for k in ks]
            print(f"{s.name:<12}" + "".join(f"{c:>15}" for c in cells))
    print()
