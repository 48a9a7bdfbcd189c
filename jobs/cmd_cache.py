"""``pluralign cache ls|show|verify|gc``: what a score cache holds, whether to trust it, cleanup.

``ls`` lists each (benchmark, scorer) with its complete and failed items; ``show`` adds the
scorer settings stored with its parts; ``verify`` checks every part (exact schema, each row's
key against its fields) and lists leftover temp files; ``gc`` removes stale temp files of
killed writes and superseded duplicate rows, compacting the cache into one part.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "cache", help="inspect, verify and clean a score cache",
        description="List, show, verify or garbage-collect a score cache.")
    p.add_argument("--cache", default=None,
                   help="cache directory (default $PLURALIGN_CACHE, else ~/.cache/pluralign/scores)")
    sub = p.add_subparsers(dest="cache_command", metavar="ACTION", required=True)
    ls = sub.add_parser("ls", help="each benchmark and scorer: complete and failed items")
    ls.add_argument("--json", action="store_true", help="print JSON instead of a table")
    ls.set_defaults(func=run_ls)
    show = sub.add_parser("show", help="one scorer's counts and its stored settings, decoded")
    show.add_argument("which", nargs="?", default=None, metavar="SCORER",
                      help="scorer identity or its name (default: every scorer)")
    show.add_argument("--benchmark", default=None, help="only this benchmark identity")
    show.set_defaults(func=run_show)
    verify = sub.add_parser("verify", help="check every part; rc 3 when any cannot be trusted")
    verify.set_defaults(func=run_verify)
    gc = sub.add_parser("gc", help="remove stale temp files and duplicate rows, compact")
    gc.add_argument("--min-age", type=float, default=600.0,
                    help="only temp files older than this many seconds (default 600: younger "
                         "ones may belong to a write in progress)")
    gc.set_defaults(func=run_gc)


def _root(args: argparse.Namespace) -> Any:
    from pluralign.engine.errors import InputError
    from pluralign.jobs.common import cache_dir

    root = cache_dir(args.cache)
    if not root.is_dir():
        raise InputError("no score cache here (not a directory)", file=root)
    return root


def _rows(args: argparse.Namespace) -> list[Any]:
    from pluralign.engine.cache import summarize

    return summarize(_root(args))


def run_ls(args: argparse.Namespace) -> int:
    rows = _rows(args)
    if args.json:
        print(json.dumps([_as_dict(r, settings=False) for r in rows], indent=2))
        return 0
    if not rows:
        print("the cache is empty")
        return 0
    print(f"{'benchmark':<34} {'scorer':<40} {'complete':>9} {'failed':>7} {'scen.':>6} "
          f"{'samples':>7}")
    for r in rows:
        print(f"{r.benchmark:<34} {r.scorer:<40} {r.complete:>9} {r.failed:>7} "
              f"{r.scenarios:>6} {r.samples:>7}")
    return 0


def run_show(args: argparse.Namespace) -> int:
    from pluralign.engine.errors import InputError

    rows = [r for r in _rows(args)
            if (args.which is None or r.scorer == args.which
                or r.scorer.split("#", 1)[0] == args.which)
            and (args.benchmark is None or r.benchmark == args.benchmark)]
    if not rows:
        raise InputError(f"no scorer {args.which!r} in this cache (see `pluralign cache ls`)",
                         field="scorer")
    print(json.dumps([_as_dict(r, settings=True) for r in rows], indent=2, sort_keys=True))
    return 0


def _as_dict(r: Any, *, settings: bool) -> dict[str, Any]:
    out = {"benchmark": r.benchmark, "scorer": r.scorer, "complete": r.complete,
           "failed": r.failed, "scenarios": r.scenarios, "attributes": list(r.attributes),
           "samples": r.samples}
    if settings:
        out["settings"] = r.settings
    return out


def run_verify(args: argparse.Namespace) -> int:
    from pluralign.engine.cache import verify

    check = verify(_root(args))
    for part in check.bad:
        print(f"bad part: {part.path}: {part.problem}")
    for tmp in check.temp_files:
        print(f"temp file: {tmp} ({tmp.stat().st_size} bytes; `pluralign cache gc` removes "
              "it once stale)")
    print(f"{len(check.parts)} parts, {len(check.bad)} bad, {check.rows} rows, "
          f"{check.superseded} superseded, {len(check.temp_files)} temp files")
    if check.bad:
        print("move the bad parts out of the cache directory; nothing reads them",
              file=sys.stderr)
        return 3
    return 0


def run_gc(args: argparse.Namespace) -> int:
    from pluralign.engine.cache import gc

    report = gc(_root(args), min_age=float(args.min_age))
    for tmp in report.temp_files_removed:
        print(f"removed temp file: {tmp}")
    print(f"{len(report.temp_files_removed)} temp files removed; rows {report.rows_before} -> "
          f"{report.rows_after}; parts {report.parts_before} -> {report.parts_after}")
    return 0
