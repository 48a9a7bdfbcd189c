"""``pluralign distribution``: distributional pluralism (the pluralism roadmap, Sorensen et al.
2024, §3.3). Compares each question's answer distribution of a model with a population's:
Jensen-Shannon distance, the entropy of each and a shuffled-label control. File format:
docs/juries.md.
"""

from __future__ import annotations

import argparse

from pluralign.jobs.cli.flags import add_config_flags, config_from_args
from pluralign.jobs.distribution import DistributionConfig, run_distribution
from pluralign.jobs.runtime import progress


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    d = sub.add_parser("distribution", help="JS distance and entropy of answer distributions",
                       description=__doc__)
    add_config_flags(d, DistributionConfig, required=("file", "out"))
    d.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    config = config_from_args(DistributionConfig, args)
    result = run_distribution(config)
    print(f"\n{len(result.questions)} questions from {config.file}  "
          "(JS distance base 2; entropy bits)")
    print(f"{'model':<16}{'group':<12}{'questions':>10}{'JS':>8}{'JS shuffled':>13}"
          f"{'H model':>9}{'H group':>9}")
    for p in result.report.pairs:
        print(f"{p['model']:<16}{p['group']:<12}{p['n_questions']:>10}{p['js_distance']:>8.3f}"
              f"{p['js_shuffled']:>13.3f}{p['model_entropy']:>9.3f}{p['group_entropy']:>9.3f}")
    if not result.report.pairs:
        print("(no model distributions in the file: nothing to compare)")
    progress(f"wrote {result.out}/summary.json")
    return 0
