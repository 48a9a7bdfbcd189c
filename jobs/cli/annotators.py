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
from pathlib import Path
from typing import Any

from pluralign.engine.align.results import rows_table
from pluralign.engine.data import field_data as fd
from pluralign.engine.errors import InputError
from pluralign.engine.pluralism.annotators import Ratings, evaluate
from pluralign.engine.pluralism.welfare import alpha_name, parse_alphas
from pluralign.engine.store.files import check_output, read_json
from pluralign.engine.store.manifest import current, file_record
from pluralign.jobs.runtime import progress, write_json_atomic, write_parquet_atomic

DATASETS = ("ratings", "prism", "community-alignment", "persona", "dices", "labels")


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("annotators", help="welfare of juries of real annotators",
                       description=__doc__)
    p.add_argument("--dataset", choices=DATASETS, default="ratings",
                   help="layout of --path (default: ratings, pluralign's own)")
    p.add_argument("--path", required=True, help="the ratings file or dataset folder")
    p.add_argument("--scale", default="1,5", help="ratings layout: lowest,highest (default 1,5)")
    p.add_argument("--demographics", default=None, help="ratings layout: annotator demographics")
    p.add_argument("--item", default="item", help="labels layout: item column")
    p.add_argument("--annotator", default="annotator", help="labels layout: annotator column")
    p.add_argument("--label", default=None,
                   help=f"labels layout: label column (default label; dices: {fd.DICES_LABEL})")
    p.add_argument("--demographic-columns", default=None, metavar="COL,COL",
                   help="labels layout: columns holding annotator demographics (so --group-by "
                        "can name them; dices reads every rater_* column)")
    p.add_argument("--group-by", default=None, help="demographic field forming the groups")
    p.add_argument("--alpha", default="0,1,inf", help="welfare inequality aversions")
    p.add_argument("--tau", type=float, default=0.5, help="threshold of the share above tau")
    p.add_argument("--choices", default=None,
                   help="a system's picks: JSON object scenario id -> response id")
    p.add_argument("--out", required=True, help="folder for summary.json and the tables")
    p.set_defaults(func=run)


def load(args: argparse.Namespace) -> Ratings:
    """The ratings of ``--path`` in the ``--dataset`` layout."""
    if args.dataset == "prism":
        return fd.load_prism(args.path)
    if args.dataset == "community-alignment":
        return fd.load_community_alignment(args.path)
    if args.dataset == "persona":
        return fd.load_persona(args.path)
    if args.dataset == "dices":
        return fd.load_dices(args.path, label=args.label or fd.DICES_LABEL)
    if args.dataset == "labels":
        demo = [c.strip() for c in (args.demographic_columns or "").split(",") if c.strip()]
        return fd.load_label_sets(args.path, item=args.item, annotator=args.annotator,
                                  label=args.label or "label", demographics=demo)
    try:
        lo, hi = (float(x) for x in args.scale.split(","))
    except ValueError:
        raise InputError(f"--scale {args.scale!r} must be lowest,highest", field="scale") from None
    return fd.load_ratings(args.path, (lo, hi), args.demographics)


def run(args: argparse.Namespace) -> int:

    check_output(args.out)
    alphas = parse_alphas(args.alpha)
    ratings = load(args)
    choices = None
    if args.choices:
        choices = read_json(args.choices)
        if not isinstance(choices, dict) or not all(isinstance(v, str) for v in choices.values()):
            raise InputError("must be a JSON object scenario id -> response id",
                             file=args.choices)
    result = evaluate(ratings, alphas, args.group_by, choices, args.tau)
    lo, hi = ratings.scale
    print(f"\n{result['jurors']} annotators, {result['scenarios']} scenarios, "
          f"{result['ratings']} ratings from {ratings.source}\n(utility: the rating on "
          f"{lo:g}..{hi:g} rescaled to [0, 1])")
    if ratings.skipped:
        print("skipped: " + ", ".join(f"{n:,} {why}" for why, n in ratings.skipped.items()))
    for note in ratings.notes:
        print(f"note: {note}")
    print_welfare(result["groups"], alphas, args.tau, args.choices, ratings.each_response)
    print()
    m = current()
    if m is not None:
        m.benchmark = {"dataset": args.dataset, "files": [file_record(ratings.source)],
                       "scenarios": result["scenarios"], "skipped": ratings.skipped,
                       "notes": ratings.notes}
    out = Path(args.out)
    _write(out / "groups.parquet", result["groups"], "annotator_groups")
    if result["selection"]:
        _write(out / "selection.parquet", result["selection"], "annotator_selection")
    write_json_atomic(out / "summary.json", {
        "dataset": args.dataset, "path": str(args.path), "group_by": args.group_by,
        "alphas": [str(a) for a in alphas], "tau": args.tau, "jurors": result["jurors"],
        "scenarios": result["scenarios"], "ratings": result["ratings"],
        "skipped": ratings.skipped, "notes": ratings.notes, "groups": result["groups"]})
    progress(f"wrote {out}/summary.json")
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


# ---- files ---------------------------------------------------------------------------------

def _write(path: Path, rows: list[dict[str, Any]], kind: str) -> None:

    write_parquet_atomic(path, rows_table(rows, kind))
