"""``pluralign compare RUN_A RUN_B``: two sweeps of the same scenarios, paired.

Per target set: the difference in accuracy and weighted score with a bootstrap interval over
scenarios (each resample draws the same scenarios for both runs), the share of targets where A
beats B; per attribute, the difference in mean squared error. Runs of another benchmark
identity, split or scenario count are refused in one line.
"""

from __future__ import annotations

import argparse

from pluralign.jobs.cli.flags import add_config_flags, config_from_args, field_docs
from pluralign.jobs.compare import CompareConfig, format_table, run_compare
from pluralign.jobs.runtime import progress


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("compare", help="paired comparison of two sweeps with bootstrap intervals",
                       description=__doc__)
    docs = field_docs(CompareConfig)
    p.add_argument("run_a", metavar="RUN_A", help=docs["run_a"])
    p.add_argument("run_b", metavar="RUN_B", help=docs["run_b"])
    add_config_flags(p, CompareConfig, skip=("run_a", "run_b"))
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    config = config_from_args(CompareConfig, args)
    result = run_compare(config)
    print(format_table(result))
    if config.out:
        progress(f"wrote {config.out}")
    return 0
