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

from pluralign.jobs.common import (
    CHOICE_SCORERS,
    DEFAULT_SETS,
    LLM_SCORERS,
    add_benchmark_args,
    add_target_args,
    cache_dir,
    finite_or_none,
    load_splits,
    make_scorer,
    progress,
    resolve_target_sets,
    write_json_atomic,
    write_parquet_atomic,
)


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("sweep", help="score (through the cache) and re-align target sets",
                       description=__doc__)
    add_benchmark_args(p)
    p.add_argument("--scorer", default="ridge",
                   help="ridge (default), oracle, random, constant, predictions:PATH, "
                        + ", ".join(LLM_SCORERS))
    p.add_argument("--seed", type=int, default=0, help="seed of the random scorer")
    p.add_argument("--value", type=float, default=0.5, help="value of the constant scorer")
    add_target_args(p, DEFAULT_SETS)
    p.add_argument("--out", required=True, help="folder for summary.json and per_target.parquet")
    try:
        from pluralign.jobs.llm_scoring import add_backend_args
    except ImportError:  # the distributed extra is not installed
        pass
    else:
        add_backend_args(p)
    p.set_defaults(func=run)


def scored_predictions(
    args: argparse.Namespace, bench: Any, train: Any, scorer: Any
) -> tuple[np.ndarray, str]:
    """(predictions (N, A), scorer identity), computing or sending only what is missing."""
    from pluralign.engine.cache import ScoreCache

    cache = ScoreCache(cache_dir(args.cache))
    if scorer is None:  # an LLM judge: the scheduler fills the cache, then we read it
        from pluralign.jobs.llm_scoring import run_llm_scoring

        report = run_llm_scoring(bench, train, args.scorer, args, cache)
        return cache.predictions(report.bench, report.identity, report.samples), report.identity

    from pluralign.engine.scorers import score_through_cache

    progress(f"scoring {bench.identity} with {args.scorer} (cache: {cache.root})")
    preds = score_through_cache(scorer, bench, cache, train=train)
    return preds, scorer.identity(bench, train)


def run(args: argparse.Namespace) -> int:
    from pluralign.engine.align import realign
    from pluralign.engine.metrics import regression_quality, summarize

    t0 = time.perf_counter()
    if args.scorer in LLM_SCORERS:
        try:
            import pluralign.jobs.llm_scoring  # noqa: F401
        except ImportError as e:
            from pluralign.engine.errors import PluralignError

            raise PluralignError(f"LLM scorers need the distributed extra ({e}): "
                                 "pip install 'pluralign[distributed]'") from None
        scorer, need_train = None, bool(getattr(args, "few_shot", True))
    else:
        scorer = make_scorer(args)
        need_train = bool(scorer.needs_train)
    bench, train = load_splits(args, need_train=need_train)
    # Resolve targets before scoring: a bad target file should fail in a second, not after.
    sets = resolve_target_sets(args.targets, bench, args.data)
    if args.scorer in CHOICE_SCORERS:
        return run_choices(args, bench, train, sets, t0)
    preds, ident = scored_predictions(args, bench, train, scorer)
    t_score = time.perf_counter() - t0
    summaries, rows = [], []
    t1 = time.perf_counter()
    for ts in sets:
        progress(f"re-aligning {len(ts):,} targets ({ts.name})")
        res = realign(bench, preds, ts, weighted=True)
        summaries.append(summarize(ts.name, res.accuracy, ts.n_attributes, res.weighted))
        rows.append((ts, res))
    t_align = time.perf_counter() - t1
    _report(args, bench, ident, summaries, rows, {
        "regression": _clean(regression_quality(bench, preds)),
        "seconds": {"scoring": round(t_score, 3), "realign": round(t_align, 4)},
    })
    return 0


def run_choices(args: argparse.Namespace, bench: Any, train: Any, sets: list[Any],
                t0: float) -> int:
    """Prompt-aligned and unaligned judges pick responses themselves: one request per
    (scenario, target) for prompt-aligned, so the all-targets sweep is refused for it."""
    from pluralign.engine.align import accuracy_from_choices
    from pluralign.engine.cache import ScoreCache
    from pluralign.engine.errors import InputError
    from pluralign.engine.metrics import summarize
    from pluralign.engine.targets import concat
    from pluralign.jobs.llm_scoring import llm_choices, run_llm_scoring

    if args.scorer == "prompt-aligned":
        if any(ts.name == "all" for ts in sets) and args.targets != list(DEFAULT_SETS):
            raise InputError(
                "prompt-aligned needs one request per (scenario, target); it cannot sweep all "
                "targets", field="targets", hint="use --targets sampled high low or files")
        sets = [ts for ts in sets if ts.name != "all"]
    cache = ScoreCache(cache_dir(args.cache))
    every = concat(sets, "requested")
    report = run_llm_scoring(bench, train, args.scorer, args, cache, targets=every)
    summaries, rows = [], []
    for ts in sets:
        chosen = llm_choices(report.bench, args.scorer, report.identity, ts, report.samples,
                             cache)
        missing = int((chosen < 0).sum())
        if missing:
            progress(f"{ts.name}: {missing} (scenario, target) answers missing; left out")
        res = accuracy_from_choices(report.bench, chosen, ts)
        summaries.append(summarize(ts.name, res.accuracy, ts.n_attributes))
        rows.append((ts, res))
    _report(args, report.bench, report.identity, summaries, rows,
            {"seconds": {"total": round(time.perf_counter() - t0, 3)}})
    return 0


def _report(args: argparse.Namespace, bench: Any, ident: str, summaries: list[Any],
            rows: list[Any], extra: dict[str, Any]) -> None:
    print_table(bench, ident, summaries)
    out = Path(args.out)
    write_parquet_atomic(out / "per_target.parquet", per_target_table(rows))
    write_json_atomic(out / "summary.json", {
        "benchmark": bench.identity,
        "split": bench.split,
        "scenarios": bench.n_scenarios,
        "scorer": ident,
        "sets": [s.to_json() for s in summaries],
        **extra,
    })
    progress(f"wrote {out / 'summary.json'} and {out / 'per_target.parquet'}")


def _clean(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, float):
        return finite_or_none(obj)
    return obj


def per_target_table(rows: list[tuple[Any, Any]]) -> Any:
    import pyarrow as pa

    from pluralign.schemas.arrow import PER_TARGET_SCHEMA

    cols: dict[str, list[Any]] = {f.name: [] for f in PER_TARGET_SCHEMA}
    for ts, res in rows:
        n = len(ts)
        cols["set"] += [ts.name] * n
        cols["name"] += list(ts.labels) if ts.labels else [None] * n
        cols["target"] += ts.json_all()
        cols["n_attributes"] += ts.n_attributes.tolist()
        cols["accuracy"] += [finite_or_none(x) for x in res.accuracy.tolist()]
        cols["counted"] += res.counted.tolist()
        cols["correct"] += res.correct.tolist()
        weighted = res.weighted.tolist() if res.weighted is not None else [None] * n
        cols["weighted_score"] += [finite_or_none(x) for x in weighted]
    return pa.table(cols, schema=PER_TARGET_SCHEMA)


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
