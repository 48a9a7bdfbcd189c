"""``pluralign cache ls|show|verify|gc``: what a cache holds, whether to trust it, cleanup.

A cache directory holds up to two part stores (``engine/store/parts.py``): the parts at its root, and
the choice parts under ``choices/``. The root parts are score parts, except in a folder given to
the ``spica`` commands as ``--cache``, whose root parts are SPICA generations; each command
covers every store it finds. ``.claims/`` (work claims of running jobs) is never touched.

``ls`` lists each (benchmark, scorer) of the scores and choices, and each (task, model) of the
generations, with complete and failed items; ``show`` adds the scorer settings stored with the
score parts; ``verify`` checks every part (kind and version, exact schema, each row's key
against its fields) and lists leftover temp files; ``gc`` removes stale temp files of killed
writes and superseded duplicate rows, compacting each store into one part, and changes nothing
while any part of any store cannot be trusted.
"""

from __future__ import annotations

import argparse
import json
import sys

from pluralign.jobs.cache_admin import gc_cache, list_cache, show_scorers, verify_cache
from pluralign.jobs.cli.flags import number
from pluralign.jobs.configs import Range

__all__ = ["register", "run_gc", "run_ls", "run_show", "run_verify"]


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser(
        "cache", help="inspect, verify and clean a cache (scores, choices, SPICA generations)",
        description="List, show, verify or garbage-collect a cache directory: its score (or "
                    "SPICA generation) parts and its choices/ parts.")
    cache_help = "cache directory (default $PLURALIGN_CACHE, else ~/.cache/pluralign/scores)"
    p.add_argument("--cache", default=None, help=cache_help)
    # Also after the action (`pluralign cache verify --cache DIR`), where users type it; the
    # action's copy only overrides the group's when given.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--cache", default=argparse.SUPPRESS, help=cache_help)
    sub = p.add_subparsers(dest="cache_command", metavar="ACTION", required=True)

    def action(name: str, help: str) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = sub.add_parser(name, parents=[common], help=help)
        return parser

    ls = action("ls", help="each benchmark and scorer (or task and model): complete and "
                           "failed items")
    ls.add_argument("--json", action="store_true", help="print JSON instead of tables")
    ls.set_defaults(func=run_ls)
    show = action("show", help="one scorer's counts and its stored settings, decoded")
    show.add_argument("which", nargs="?", default=None, metavar="SCORER",
                      help="scorer identity or its name (default: every scorer)")
    show.add_argument("--benchmark", default=None, help="only this benchmark identity")
    show.set_defaults(func=run_show)
    verify = action("verify", help="check every part; rc 3 when any cannot be trusted")
    verify.set_defaults(func=run_verify)
    gc = action("gc", help="remove stale temp files and duplicate rows, compact")
    gc.add_argument("--min-age", type=number(float, Range(0)), default=600.0,
                    help="only temp files older than this many seconds (default 600: younger "
                         "ones may belong to a write in progress)")
    gc.set_defaults(func=run_gc)


def run_ls(args: argparse.Namespace) -> int:
    listing = list_cache(args.cache)
    if args.json:
        print(json.dumps(listing.rows(), indent=2))
        return 0
    if not listing.rows():
        print("the cache is empty")
        return 0
    if listing.scores:
        print(f"scores\n{'benchmark':<34} {'scorer':<40} {'complete':>9} {'failed':>7} "
              f"{'scen.':>6} {'samples':>7}")
        for r in listing.scores:
            print(f"{r['benchmark']:<34} {r['scorer']:<40} {r['complete']:>9} {r['failed']:>7} "
                  f"{r['scenarios']:>6} {r['samples']:>7}")
    if listing.choices:
        print(f"choices\n{'benchmark':<34} {'scorer':<40} {'complete':>9} {'failed':>7} "
              f"{'scen.':>6} {'targets':>7} {'samples':>7}")
        for c in listing.choices:
            print(f"{c['benchmark']:<34} {c['scorer']:<40} {c['complete']:>9} {c['failed']:>7} "
                  f"{c['scenarios']:>6} {c['targets']:>7} {c['samples']:>7}")
    if listing.generations:
        print(f"generations\n{'task':<34} {'model':<40} {'complete':>9} {'failed':>7}")
        for g in listing.generations:
            print(f"{g['task']:<34} {g['model']:<40} {g['complete']:>9} {g['failed']:>7}")
    return 0


def run_show(args: argparse.Namespace) -> int:
    rows = show_scorers(args.cache, args.which, benchmark=args.benchmark)
    print(json.dumps(rows, indent=2, sort_keys=True))
    return 0


def run_verify(args: argparse.Namespace) -> int:
    bad = 0
    for found in verify_cache(args.cache):
        check = found.check
        for part in check.bad:
            print(f"bad part: {part.path}: {part.problem}")
        for tmp in check.temp_files:
            print(f"temp file: {tmp} ({tmp.stat().st_size} bytes; `pluralign cache gc` removes "
                  "it once stale)")
        print(f"{found.store.name}: {len(check.parts)} parts, {len(check.bad)} bad, "
              f"{check.rows} rows, {check.superseded} superseded, {len(check.temp_files)} "
              "temp files")
        bad += len(check.bad)
    if bad:
        print("move the bad parts out of the cache directory; nothing reads them",
              file=sys.stderr)
        return 3
    return 0


def run_gc(args: argparse.Namespace) -> int:
    for done in gc_cache(args.cache, min_age=float(args.min_age)):
        report = done.report
        for tmp in report.temp_files_removed:
            print(f"removed temp file: {tmp}")
        print(f"{done.store.name}: {len(report.temp_files_removed)} temp files removed; rows "
              f"{report.rows_before} -> {report.rows_after}; parts {report.parts_before} -> "
              f"{report.parts_after}")
    return 0
