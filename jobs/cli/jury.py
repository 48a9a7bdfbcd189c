"""``pluralign jury`` and ``pluralign distribution``: who is served, not only how well on average.

``jury`` scores a benchmark through the cache (as ``sweep`` does), aligns every juror of a group
file and reports per group accuracy, utility, welfare w_α, the share above τ, bootstrap
intervals, the best-to-worst gap and welfare-optimal against collective choices.
``distribution`` compares answer distributions of models and populations (JS distance, entropy,
shuffled control). File formats: docs/juries.md.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from pluralign.jobs.common import (
    add_llm_scorer_args,
    add_scorer_args,
    finite_or_none,
    progress,
    write_json_atomic,
    write_parquet_atomic,
)

DISTRIBUTION_HELP = (
    "pluralign distribution: distributional pluralism (the pluralism roadmap, Sorensen et al. "
    "2024, §3.3). Compares each question's answer distribution of a model with a "
    "population's: Jensen-Shannon distance, the entropy of each and a shuffled-label control. "
    "File format: docs/juries.md.")


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("jury", help="per-group accuracy, utility and welfare of a jury",
                       description=__doc__)
    add_scorer_args(p, "a scorer that needs no model, as for sweep (default: ridge)",
                    cached=True)
    p.add_argument("--groups", required=True, help="group file (JSON; see docs/juries.md)")
    p.add_argument("--alpha", default="0,0.5,1,2,inf",
                   help="welfare inequality aversions, comma-separated (default: 0,0.5,1,2,inf)")
    p.add_argument("--tau", type=float, default=0.5,
                   help="threshold of the share of jurors with utility > tau (default: 0.5)")
    p.add_argument("--utility", choices=("distance", "indicator"), default="distance",
                   help="juror utility: 1 - d/d_max (default) or correct/incorrect")
    p.add_argument("--bootstrap", type=int, default=1000,
                   help="bootstrap resamples of scenarios for the intervals (0: none)")
    p.add_argument("--confidence", type=float, default=0.95, help="interval level")
    p.add_argument("--bootstrap-seed", type=int, default=0, help="seed of the bootstrap")
    p.add_argument("--no-selection", action="store_true",
                   help="skip welfare-optimal selection (the collective-choice comparison)")
    p.add_argument("--out", required=True, help="folder for summary.json and the Parquet tables")
    add_llm_scorer_args(p)
    p.set_defaults(func=run)

    d = sub.add_parser("distribution", help="JS distance and entropy of answer distributions",
                       description=DISTRIBUTION_HELP)
    d.add_argument("--file", required=True, help="distribution file (JSON; see docs/juries.md)")
    d.add_argument("--shuffles", type=int, default=100,
                   help="random permutations for the shuffled-label control (default: 100)")
    d.add_argument("--seed", type=int, default=0, help="seed of the shuffles")
    d.add_argument("--out", required=True, help="folder for summary.json and distribution.parquet")
    d.set_defaults(func=run_distribution)


def run(args: argparse.Namespace) -> int:
    from pluralign.engine.pluralism.juries import load_jury
    from pluralign.engine.pluralism.jury_eval import (
        JuryConfig,
        evaluate_jury,
        select_welfare_optimal,
    )
    from pluralign.engine.pluralism.welfare import parse_alphas
    from pluralign.engine.store.files import check_output

    check_output(args.out)  # before any work: neither --out nor the groups may fail late
    cfg = JuryConfig(alphas=parse_alphas(args.alpha), tau=args.tau, utility=args.utility,
                     n_bootstrap=args.bootstrap, confidence=args.confidence,
                     seed=args.bootstrap_seed)
    _check_groups_first(args)
    bench, preds, ident = predictions(args)
    jury = load_jury(args.groups, bench.attributes, bench.levels)
    progress(f"evaluating {jury.n_jurors:,} jurors in {jury.n_groups} groups")
    t0 = time.perf_counter()
    result = evaluate_jury(bench, preds, jury, cfg)
    t_eval = time.perf_counter() - t0
    selection = None if args.no_selection else select_welfare_optimal(bench, preds, jury,
                                                                      cfg.alphas)
    t_select = time.perf_counter() - t0 - t_eval
    print_groups(bench, ident, result)
    if selection is not None:
        print_selection(selection)
    _write_outputs(Path(args.out), bench, ident, args.groups, jury, result, selection,
                   {"evaluate": round(t_eval, 4), "select": round(t_select, 4)})
    return 0


def _check_groups_first(args: argparse.Namespace) -> None:
    """Validate the group file against the benchmark's attributes before anything is scored."""
    from pluralign.engine.pluralism.juries import load_jury
    from pluralign.jobs.common import load_splits

    bench, _ = load_splits(args, need_train=False)
    load_jury(args.groups, bench.attributes, bench.levels)


def predictions(args: argparse.Namespace) -> tuple[Any, np.ndarray, str]:
    """(evaluated split, predictions (N, A), scorer identity): a model-free scorer through the
    score cache, which computes only what it lacks; with ``--scorer-id`` or an LLM judge (the
    identity sweep computed from the same flags), from the cache alone: nothing is sent. The
    reward scorer (``--scorer reward`` with sweep's reward flags) reads the cache alike."""
    from pluralign.engine.errors import InputError
    from pluralign.jobs.common import (
        CHOICE_SCORERS,
        MODEL_SCORERS,
        cached_scores_args,
        score_args,
        scorer_splits,
    )

    if args.scorer in CHOICE_SCORERS and not args.scorer_id:
        raise InputError(f"{args.scorer} picks responses and has no scores to judge "
                         "juries with", field="scorer",
                         hint="use comparative-regression or regression")
    if args.scorer_id or args.scorer in MODEL_SCORERS:
        scores = cached_scores_args(args)
    else:
        bench, train, _ = scorer_splits(args)
        scores = score_args(args, bench, train, None)
    return scores.bench, scores.predictions, scores.identity


# ---- printing ------------------------------------------------------------------------------

def _f(x: float | None, digits: int = 3) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def print_groups(bench: Any, ident: str, result: Any) -> None:
    cfg = result.config
    print(f"\n{bench.identity}  scorer {ident}  ({bench.n_scenarios} scenarios, "
          f"utility {cfg.utility}, tau {cfg.tau:g})")
    welfare_cols = [m for m in result.metrics if m.startswith("welfare_a")]
    head = f"{'group':<14}{'jurors':>7}{'excl':>6}{'accuracy':>10}  {'utility [CI]':<26}"
    head += "".join(f"{'w(a=' + m[9:] + ')':>10}" for m in welfare_cols) + f"{'>tau':>8}"
    print(head)
    for g, row in enumerate(result.rows()):
        ci = f"{_f(row['utility'])} [{_f(row['utility_lo'])}, {_f(row['utility_hi'])}]"
        line = (f"{row['group']:<14}{row['n_jurors']:>7,}{row['n_excluded']:>6}"
                f"{_f(row['accuracy'], 1):>10}  {ci:<26}")
        line += "".join(f"{_f(row[m]):>10}" for m in welfare_cols)
        print(line + f"{_f(row['threshold']):>8}")
        if g == len(result.names) - 2:
            print("-" * len(head))
    for metric, gap in result.gaps().items():
        if metric in ("accuracy", "utility", *welfare_cols[-1:]):
            print(f"gap {metric}: {gap['gap']:.3f} (best {gap['best']}, worst {gap['worst']})")


def print_selection(selection: Any) -> None:
    print("\none response per scenario for the whole group: mean true welfare "
          "(share of scenarios at the optimum)")
    print(f"{'group':<14}{'alpha':>6}{'oracle':>9}{'welfare-optimal':>20}{'collective':>20}")
    for r in selection.rows():
        print(f"{r['group']:<14}{r['alpha']:>6}{_f(r['oracle']):>9}"
              f"{_f(r['welfare_optimal']):>12} ({_f(r['optimal_hit'], 2)})"
              f"{_f(r['collective']):>12} ({_f(r['collective_hit'], 2)})")


# ---- files ---------------------------------------------------------------------------------

def _write_outputs(out: Path, bench: Any, ident: str, groups_file: str, jury: Any, result: Any,
                   selection: Any, seconds: dict[str, float]) -> None:
    from pluralign.engine.align.results import columns_table, rows_table

    rows = result.rows()
    write_parquet_atomic(out / "groups.parquet", rows_table(rows, "jury_groups"))
    targets = jury.targets()
    write_parquet_atomic(out / "jurors.parquet", columns_table({
        "juror": list(jury.juror_ids),
        "group": [jury.group_names[g] for g in jury.group_of],
        "target": targets.json_all(),
        "weight": jury.weights.tolist(),
        "excluded": jury.empty.tolist(),
        "utility": [finite_or_none(x) for x in result.juror_utility.tolist()],
        "accuracy": [finite_or_none(x) for x in result.juror_accuracy.tolist()],
    }, "jury_jurors"))
    write_parquet_atomic(out / "scenarios.parquet", _scenario_table(bench, result))
    summary: dict[str, Any] = {
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
    progress(f"wrote {out}/summary.json and groups, jurors, scenarios"
             f"{', selection' if selection is not None else ''} .parquet")


def _alpha_json(a: float) -> float | str:
    return "inf" if math.isinf(a) else a


def _scenario_table(bench: Any, result: Any) -> Any:
    from pluralign.engine.align.results import columns_table

    n_s, n_g, _ = result.per_scenario.shape
    cols: dict[str, list[Any]] = {
        "scenario": [s.id for s in bench.scenarios for _ in range(n_g)],
        "group": list(result.names) * n_s,
    }
    flat = result.per_scenario.reshape(n_s * n_g, -1)
    for m, name in enumerate(result.metrics):
        cols[name] = [finite_or_none(x) for x in flat[:, m].tolist()]
    return columns_table(cols, "jury_scenarios")


# ---- distribution --------------------------------------------------------------------------

def run_distribution(args: argparse.Namespace) -> int:
    from pluralign.engine.errors import InputError
    from pluralign.engine.pluralism.distributional import evaluate_distributions, load_distributions
    from pluralign.engine.store.files import check_output

    check_output(args.out)
    if args.shuffles < 1:
        raise InputError("--shuffles must be at least 1", field="shuffles")
    questions = load_distributions(args.file)
    from pluralign.engine.store.manifest import current, file_record

    m = current()
    if m is not None:
        m.benchmark = {"files": [file_record(args.file)], "questions": len(questions)}
    report = evaluate_distributions(questions, n_shuffles=args.shuffles, seed=args.seed)
    print(f"\n{len(questions)} questions from {args.file}  (JS distance base 2; entropy bits)")
    print(f"{'model':<16}{'group':<12}{'questions':>10}{'JS':>8}{'JS shuffled':>13}"
          f"{'H model':>9}{'H group':>9}")
    for p in report.pairs:
        print(f"{p['model']:<16}{p['group']:<12}{p['n_questions']:>10}{p['js_distance']:>8.3f}"
              f"{p['js_shuffled']:>13.3f}{p['model_entropy']:>9.3f}{p['group_entropy']:>9.3f}")
    if not report.pairs:
        print("(no model distributions in the file: nothing to compare)")
    out = Path(args.out)
    if report.questions:
        from pluralign.engine.align.results import rows_table

        write_parquet_atomic(out / "distribution.parquet",
                             rows_table(report.questions, "distribution"))
    write_json_atomic(out / "summary.json", {
        "file": str(args.file), "questions": len(questions), "shuffles": args.shuffles,
        "seed": args.seed, "pairs": report.pairs,
        "group_entropy": _group_entropies(questions),
    })
    progress(f"wrote {out}/summary.json")
    return 0


def _group_entropies(questions: Any) -> dict[str, float]:
    from pluralign.engine.pluralism.distributional import entropy

    by: dict[str, list[float]] = {}
    for q in questions:
        for g, p in q.groups.items():
            by.setdefault(g, []).append(float(entropy(p)))
    return {g: float(np.mean(v)) for g, v in by.items()}
