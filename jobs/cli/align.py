"""``pluralign align``: answer a re-alignment query from the score cache alone.

No model is called and nothing is scored: the scores must already be cached (by ``sweep``).
Prints accuracy per target and the chosen response per scenario; ``--out`` writes them all.
"""

from __future__ import annotations

import argparse

import numpy as np

from pluralign.engine.data.benchmark import Benchmark
from pluralign.engine.scorers import scorer_names
from pluralign.jobs.align import JSON_LIMIT, AlignConfig, Alignment, SetAlignment, run_align
from pluralign.jobs.cli.args import (
    LLM_SCORERS,
    add_llm_scorer_args,
    budget_arg,
    llm_config,
    reward_config,
)
from pluralign.jobs.cli.flags import add_config_flags, config_from_args, number
from pluralign.jobs.configs import INT_RANGE

__all__ = ["JSON_LIMIT", "config_of", "register", "run"]

MODELS = {"llm", "reward"}
"""Config fields whose flags are the LLM and reward flags (added after the others)."""


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("align", help="re-align targets from cached scores (no model calls)",
                       description=__doc__)
    names = {"scorer": "Scorers: " + ", ".join(scorer_names()) + "."}

    def add(skip: set[str]) -> None:
        add_config_flags(p, AlignConfig, skip=skip, nargs={"targets"}, extra_help=names,
                         types={"memory_budget": budget_arg})

    add({*MODELS, "shards", "memory_budget", "out"})
    p.add_argument("--show", type=number(int, INT_RANGE), default=10,
                   help="chosen responses to print per target")
    add(MODELS)  # the rest: --shards, --memory-budget, --out
    add_llm_scorer_args(p)
    p.set_defaults(func=run)


def config_of(args: argparse.Namespace) -> AlignConfig:
    """The re-alignment the flags describe, with the LLM or reward settings its scorer's
    identity depends on."""
    reward = args.scorer == "reward" and not args.scorer_id
    return config_from_args(
        AlignConfig, args,
        llm=llm_config(args) if args.scorer in LLM_SCORERS else None,
        reward=reward_config(args) if reward else None)


def run(args: argparse.Namespace) -> int:
    def print_set(alignment: Alignment, s: SetAlignment) -> None:
        for t, row in enumerate(s.rows()):
            acc = row["accuracy"]
            acc_text = "undefined" if acc is None else f"{acc:.1f}"
            print(f"{row['target']}  accuracy {acc_text}  ({row['correct']}/{row['counted']})")
            if s.chosen is not None:
                _show(alignment.bench, s.chosen[:, t], args.show)

    run_align(config_of(args), on_set=print_set, json_limit=JSON_LIMIT)
    return 0


def _show(bench: Benchmark, chosen: np.ndarray, n: int) -> None:
    for s in range(min(n, bench.n_scenarios)):
        print(f"    {bench.scenarios[s].id}: response {int(chosen[s])}")
    if bench.n_scenarios > n:
        print(f"    ... {bench.n_scenarios - n} more scenarios")
