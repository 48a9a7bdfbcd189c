"""``pluralign jury``: who is served, not only how well on average.

Scores a benchmark through the cache (as ``sweep`` does), aligns every juror of a group file
and reports per group accuracy, utility, welfare w_α, the share above τ, bootstrap intervals,
the best-to-worst gap and welfare-optimal against collective choices. File format:
docs/juries.md.
"""

from __future__ import annotations

import argparse
import math

from pluralign.engine.data.benchmark import Benchmark
from pluralign.engine.errors import InputError
from pluralign.engine.pluralism.jury_eval import JuryResult, SelectionResult
from pluralign.jobs.api import Scores
from pluralign.jobs.cli.args import (
    CHOICE_SCORERS,
    MODEL_SCORERS,
    add_llm_scorer_args,
    add_scorer_args,
    cached_scores_args,
    load_splits,
    score_args,
    scorer_splits,
)
from pluralign.jobs.cli.flags import add_config_flags, config_from_args
from pluralign.jobs.jury import JuryJobConfig, check_jury, run_jury
from pluralign.jobs.runtime import progress

RENAME = {"alphas": "--alpha"}


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("jury", help="per-group accuracy, utility and welfare of a jury",
                       description=__doc__)
    add_scorer_args(p, "a scorer that needs no model, as for sweep (default: ridge)",
                    cached=True)
    add_config_flags(p, JuryJobConfig, rename=RENAME,
                     negative={"selection": "--no-selection"}, required=("groups", "out"))
    add_llm_scorer_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    config = config_from_args(JuryJobConfig, args, RENAME)
    check_jury(config)  # before any work: neither --out nor the settings may fail late
    bench, _ = load_splits(args, need_train=False)
    check_jury(config, bench)  # nor the group file: it is checked before anything is scored
    result = run_jury(config, predictions(args))
    print_groups(result.bench, result.identity, result.evaluation)
    if result.selection is not None:
        print_selection(result.selection)
    progress(f"wrote {result.out}/summary.json and groups, jurors, scenarios"
             f"{', selection' if result.selection is not None else ''} .parquet")
    return 0


def predictions(args: argparse.Namespace) -> Scores:
    """The scores of ``--scorer`` on the evaluated split: a model-free scorer through the
    score cache, which computes only what it lacks; with ``--scorer-id`` or an LLM judge (the
    identity sweep computed from the same flags), from the cache alone: nothing is sent. The
    reward scorer (``--scorer reward`` with sweep's reward flags) reads the cache alike."""
    if args.scorer in CHOICE_SCORERS and not args.scorer_id:
        raise InputError(f"{args.scorer} picks responses and has no scores to judge "
                         "juries with", field="scorer",
                         hint="use comparative-regression or regression")
    if args.scorer_id or args.scorer in MODEL_SCORERS:
        return cached_scores_args(args)
    bench, train, _ = scorer_splits(args)
    return score_args(args, bench, train, None)


# ---- printing ------------------------------------------------------------------------------

def _f(x: float | None, digits: int = 3) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def print_groups(bench: Benchmark, ident: str, result: JuryResult) -> None:
    cfg = result.config
    print(f"\n{bench.identity}  scorer {ident}  ({bench.n_scenarios} scenarios, "
          f"utility {cfg.utility}, tau {cfg.tau:g})")
    welfare_cols = [m for m in result.metrics if m.startswith("welfare_a")]
    head = f"{'group':<14}{'jurors':>7}{'excl':>6}{'accuracy':>10}  {'utility [CI]':<26}"
    head += "".join(f"{'w(a=' + m[9:] + ')':>10}" for m in welfare_cols) + f"{'>tau':>8}"
    print(head)
    for g, row in enumerate(result.rows()):
        ci = (f"{_f(row['closeness'])} [{_f(row['closeness_lo'])}, "
              f"{_f(row['closeness_hi'])}]")
        line = (f"{row['group']:<14}{row['n_jurors']:>7,}{row['n_excluded']:>6}"
                f"{_f(row['accuracy'], 1):>10}  {ci:<26}")
        line += "".join(f"{_f(row[m]):>10}" for m in welfare_cols)
        print(line + f"{_f(row['threshold']):>8}")
        if g == len(result.names) - 2:
            print("-" * len(head))
    for metric, gap in result.gaps().items():  # "utility": the closeness's former name
        if metric in ("accuracy", "utility", *welfare_cols[-1:]):
            print(f"gap {metric}: {gap['gap']:.3f} (best {gap['best']}, worst {gap['worst']})")


def print_selection(selection: SelectionResult) -> None:
    print("\none response per scenario for the whole group: mean true welfare "
          "(share of scenarios at the optimum)")
    print(f"{'group':<14}{'alpha':>6}{'oracle':>9}{'welfare-optimal':>20}{'collective':>20}")
    for r in selection.rows():
        print(f"{r['group']:<14}{r['alpha']:>6}{_f(r['oracle']):>9}"
              f"{_f(r['welfare_optimal']):>12} ({_f(r['optimal_hit'], 2)})"
              f"{_f(r['collective']):>12} ({_f(r['collective_hit'], 2)})")
