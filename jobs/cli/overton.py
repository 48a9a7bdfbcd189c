"""``pluralign overton``: Overton pluralism (the pluralism roadmap, Sorensen et al. 2024, §3.1).

For each query, its window of reasonable answers and each system's response: coverage (the
share of the window the response reflects) and precision (the share of the reflected answers
that are in the window, where unreasonable answers are listed), per query and averaged. The
judge of "reflects" is the model-free ``lexical-overlap`` proxy (default) or an LLM entailment
judge through the backends (batched, cached, schema-constrained). Formats: docs/pluralism.md.
"""

from __future__ import annotations

import argparse
from typing import Any

from pluralign.jobs.cli.args import add_llm_args, llm_config
from pluralign.jobs.cli.flags import add_config_flags, config_from_args
from pluralign.jobs.overton import OvertonConfig, run_overton
from pluralign.jobs.runtime import progress

SOURCES = ("file", "valueprism", "overtonbench")
"""The fields naming the queries: exactly one is given."""


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("overton", help="Overton coverage and precision of responses",
                       description=__doc__)
    add_config_flags(p.add_mutually_exclusive_group(required=True), OvertonConfig,
                     only=SOURCES)
    add_config_flags(p, OvertonConfig, skip=SOURCES, required=("out",))
    add_llm_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    config = config_from_args(OvertonConfig, args)
    result = run_overton(config, llm_config(args) if config.judge == "llm" else None)
    if config.overtonbench:
        _print_human(result.report)
    else:
        _print(result.report, result.judge)
    progress(f"wrote {result.out}/summary.json")
    return 0


def _print(report: dict[str, Any], judge: str) -> None:
    print(f"\nOverton coverage and precision (judge: {judge})")
    print(f"{'system':<24}{'queries':>8}{'coverage':>10}{'precision':>11}")
    for name, s in report["systems"].items():
        prec = "n/a" if s["precision"] is None else f"{s['precision']:.3f}"
        print(f"{name:<24}{s['queries']:>8}{s['coverage']:>10.3f}{prec:>11}")
    if report["missing"]:
        print(f"({report['missing']} (query, system) pairs without a complete judgement)")


def _print_human(report: dict[str, Any]) -> None:
    print(f"\nOvertonScore from people's own ratings (OvertonBench, {report['participants']:,} "
          "participants):\nthe mean share of a question's opinion clusters whose mean rating of "
          "the answer is >= 4")
    print(f"{'model':<32}{'questions':>10}{'OvertonScore':>14}")
    for name, s in report["systems"].items():
        print(f"{name[:31]:<32}{s['questions']:>10}{s['overton_score']:>14.3f}")
    if report["skipped"]:
        print("skipped: " + ", ".join(f"{n:,} {why}" for why, n in report["skipped"].items()))
