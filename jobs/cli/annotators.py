"""``pluralign annotators``: juries of real annotators (the pluralism roadmap, Sorensen et al.
2024, §4.3). Jurors are annotator ids with their own ratings of responses; utilities are the
ratings rescaled to [0, 1]; per group (a demographic field) the welfare-optimal response of
every scenario for each α, and with ``--choices`` a system's welfare over its jurors.
Layouts: docs/pluralism.md.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from typing import Any

from pluralign.engine.pluralism.welfare import alpha_name
from pluralign.jobs.annotators import AnnotatorsConfig, run_annotators
from pluralign.jobs.cli.flags import add_config_flags, config_from_args
from pluralign.jobs.runtime import progress


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("annotators", help="welfare of juries of real annotators",
                       description=__doc__)
    add_config_flags(p, AnnotatorsConfig, required=("path", "out"),
                     metavars={"demographic_columns": "COL,COL"})
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    result = run_annotators(config_from_args(AnnotatorsConfig, args))
    ratings, report = result.ratings, result.report
    lo, hi = ratings.scale
    shared = report["shared_scenarios"]
    print(f"\n{report['jurors']} annotators, {report['scenarios']} scenarios, "
          f"{report['ratings']} ratings from {ratings.source}\n(utility: the rating on "
          f"{lo:g}..{hi:g} rescaled to [0, 1])")
    if shared < report["scenarios"]:
        print(f"{shared:,} of the scenarios are rated by two or more annotators; the others "
              "have a one-person jury")
    if ratings.skipped:
        print("skipped: " + ", ".join(f"{n:,} {why}" for why, n in ratings.skipped.items()))
    for note in ratings.notes:
        print(f"note: {note}")
    print_welfare(report["groups"], result.alphas, args.tau, args.choices,
                  ratings.each_response)
    print()
    progress(f"wrote {result.out}/summary.json")
    return 0


# ---- printing ------------------------------------------------------------------------------

def _f(x: float | None, digits: int = 3) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def _group_width(rows: list[dict[str, Any]]) -> int:
    return max(14, *(len(str(r["group"])) + 2 for r in rows))


def _rule(rows: list[dict[str, Any]], g: int, width: int) -> None:
    """A line under ``ALL`` (the first row) when groups follow it."""
    if g == 0 and len(rows) > 1:
        print("-" * width)


def print_welfare(rows: list[dict[str, Any]], alphas: Sequence[float], tau: float,
                  choices: str | None, each_response: bool) -> None:
    """One table, a row per group and α: the welfare of the welfare-optimal picks and (with
    ``choices``) of the system's picks, both w_α over each juror's mean utility of the picks
    they rated, so the two columns compare; ``differs``: the share of scenarios whose optimum
    differs from the utilitarian (α = 0) one; per group (first row) the jurors, the scenarios
    with an optimum, and with ``choices`` the jurors served and the share above ``tau``."""
    names = [alpha_name(a) for a in alphas]
    shares = 0.0 in alphas
    over = "the jurors who rated it" if each_response else "the jurors who rated every response"
    print(f"\nwelfare-optimal pick per scenario (its welfare over {over})"
          + (f"\nbeside the system's picks ({choices})" if choices else "")
          + ";\nw(a) over each juror's mean utility of the picks they rated"
          + ("; differs: share of\nscenarios whose optimum differs from the a=0 one"
             if shares else ""))
    gw = _group_width(rows)
    tau_head = ">" + format(tau, "g")
    head = f"{'group':<{gw}}{'jurors':>7}{'scenarios':>11}"
    head += f"{'served':>8}{tau_head:>8}" if choices else ""
    head += f"{'a':>6}{'optimal':>9}" + (f"{'system':>9}" if choices else "")
    head += f"{'differs':>9}" if shares else ""
    print(head)
    for g, row in enumerate(rows):
        for k, (n, a) in enumerate(zip(names, alphas, strict=True)):
            if k == 0:
                line = f"{row['group']:<{gw}}{row['jurors']:>7,}{row['scenarios_selected']:>11,}"
                if choices:
                    line += f"{row['jurors_served']:>8,}{_f(row['system_share_above_tau']):>8}"
            else:
                line = " " * (gw + 18 + (16 if choices else 0))
            line += f"{n:>6}{_f(row[f'optimal_welfare_a{n}']):>9}"
            line += f"{_f(row[f'system_welfare_a{n}']):>9}" if choices else ""
            if shares:
                line += f"{'' if a == 0.0 else _f(row[f'differs_from_utilitarian_a{n}'], 2):>9}"
            print(line.rstrip())
        _rule(rows, g, len(head))
