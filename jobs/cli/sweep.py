"""``pluralign sweep``: score a benchmark through the cache, then re-align target sets.

Scores come from the cache when present; only missing work is computed (or sent to a model).
Every requested target set is then re-aligned from the cached scores.
"""

from __future__ import annotations

import argparse

from pluralign.engine.align.metrics import SetSummary
from pluralign.engine.data.benchmark import Benchmark
from pluralign.engine.scorers import scorer_names
from pluralign.jobs.cli.args import (
    LLM_SCORERS,
    add_llm_scorer_args,
    budget_arg,
    llm_config,
    reward_config,
)
from pluralign.jobs.cli.flags import add_config_flags, config_from_args
from pluralign.jobs.sweep import SweepConfig, run_sweep


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("sweep", help="score (through the cache) and re-align target sets",
                       description=__doc__)
    add_config_flags(p, SweepConfig, skip={"llm", "reward"}, required={"out"},
                     nargs={"targets"}, types={"memory_budget": budget_arg},
                     metavars={"targets": "SET", "memory_budget": "SIZE", "data": "DIR",
                               "cache": "DIR", "out": "DIR", "limit": "N", "shards": "N"},
                     extra_help={"scorer": "Scorers: " + ", ".join(scorer_names()) + "."})
    add_llm_scorer_args(p)
    p.set_defaults(func=run)


def config_of(args: argparse.Namespace) -> SweepConfig:
    """The sweep the flags describe, with the LLM or reward settings its scorer needs."""
    return config_from_args(
        SweepConfig, args,
        llm=llm_config(args) if args.scorer in LLM_SCORERS else None,
        reward=reward_config(args) if args.scorer == "reward" else None)


def run(args: argparse.Namespace) -> int:
    result = run_sweep(config_of(args))
    print_table(result.bench, result.identity, result.summaries)
    return 0


def _fmt(mean: float | None, std: float | None) -> str:
    return "n/a" if mean is None else f"{mean:5.1f} ± {std:4.1f}"


def print_table(bench: Benchmark, ident: str, summaries: list[SetSummary]) -> None:
    """The sweep's table: accuracy (mean ± sample std over defined targets) per set, then by
    number of target attributes. The name column fits the longest set name."""
    w0 = max([12, *(len(s.name) + 2 for s in summaries)])
    print(f"\n{bench.identity}  scorer {ident}  ({bench.n_scenarios} scenarios)")
    print(f"{'targets':<{w0}}{'count':>8}{'defined':>9}   {'accuracy':<14}{'weighted':>9}")
    for s in summaries:
        w = "n/a" if s.weighted_mean is None else f"{s.weighted_mean:.1f}"
        print(f"{s.name:<{w0}}{s.n_targets:>8,}{s.n_defined:>9,}   "
              f"{_fmt(s.mean, s.std):<14}{w:>9}")
    ks = sorted({k for s in summaries for k in (s.by_n_attributes or {})})
    if ks:
        print("\naccuracy by number of target attributes")
        print(f"{'targets':<{w0}}" + "".join(f"{k:>15}" for k in ks))
        for s in summaries:
            by = s.by_n_attributes or {}
            cells = [_fmt(*by[k][:2]) if k in by else "" for k in ks]
            print(f"{s.name:<{w0}}" + "".join(f"{c:>15}" for c in cells))
    print()
