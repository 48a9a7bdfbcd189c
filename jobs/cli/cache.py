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
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
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

    def action(name: str, **kw: Any) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = sub.add_parser(name, parents=[common], **kw)
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
    gc.add_argument("--min-age", type=float, default=600.0,
                    help="only temp files older than this many seconds (default 600: younger "
                         "ones may belong to a write in progress)")
    gc.set_defaults(func=run_gc)


@dataclass(frozen=True)
class Store:
    """One part store of a cache directory."""

    name: str
    """``scores``, ``choices`` or ``generations``."""
    root: Path
    """Its directory."""
    layout: Any
    """Its ``engine.parts.PartLayout``."""


def stores(root: Path) -> list[Store]:
    """The part stores of a cache directory: the root's (score parts, or generation parts when
    every readable root part says so) and ``choices/`` when it exists."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pluralign.engine.store.cache import SCORE_LAYOUT
    from pluralign.engine.store.choices import CHOICE_KIND, CHOICE_LAYOUT
    from pluralign.engine.store.generations import GENERATION_LAYOUT
    from pluralign.engine.store.parts import list_parts
    from pluralign.schemas.arrow import schema_version_of

    kinds = set()
    for name in list_parts(root):
        try:
            kinds.add(schema_version_of(pq.read_schema(root / name))[1])
        except (pa.ArrowException, OSError):
            continue  # verify reports it
    out = [Store("generations", root, GENERATION_LAYOUT)
           if kinds == {GENERATION_LAYOUT.kind} else Store("scores", root, SCORE_LAYOUT)]
    if (root / CHOICE_KIND).is_dir():
        out.append(Store("choices", root / CHOICE_KIND, CHOICE_LAYOUT))
    return out


def _root(args: argparse.Namespace) -> Path:
    from pluralign.engine.errors import InputError
    from pluralign.jobs.runtime import cache_dir

    root = cache_dir(args.cache)
    if not root.is_dir():
        raise InputError("no cache here (not a directory)", file=root)
    return root


def _score_rows(root: Path, found: list[Store]) -> list[Any]:
    from pluralign.engine.store.cache import summarize

    return summarize(root) if found[0].name == "scores" else []


def _counts(store: Store, columns: tuple[str, str]) -> list[dict[str, Any]]:
    """Per pair of ``columns`` values: complete and failed keys, plus distinct scenarios,
    targets and samples where the store has them."""
    from pluralign.engine.store.parts import PartStore

    ok, bad = PartStore(store.root, store.layout).resolve()
    done = Counter(zip(*(ok[c].to_pylist() for c in columns), strict=True))
    failed = Counter(zip(*(bad[c].to_pylist() for c in columns), strict=True))
    extra = [c for c in ("scenario", "target", "sample") if c in store.layout.index_columns]
    seen: dict[tuple[str, str], dict[str, set[Any]]] = {}
    for table in (ok, bad):
        cols = [table[c].to_pylist() for c in (*columns, *extra)]
        for a, b, *vals in zip(*cols, strict=True):
            per = seen.setdefault((a, b), {c: set() for c in extra})
            for c, v in zip(extra, vals, strict=True):
                per[c].add(v)
    return [{"store": store.name, columns[0]: a, columns[1]: b, "complete": done[(a, b)],
             "failed": failed[(a, b)], **{f"{c}s": len(v) for c, v in seen[(a, b)].items()}}
            for a, b in sorted(seen)]


def run_ls(args: argparse.Namespace) -> int:
    root = _root(args)
    found = stores(root)
    scores = [{"store": "scores", **_as_dict(r, settings=False)} for r in _score_rows(root, found)]
    choices = [r for s in found if s.name == "choices" for r in _counts(s, ("benchmark",
                                                                             "scorer"))]
    gens = [r for s in found if s.name == "generations" for r in _counts(s, ("task", "model"))]
    if args.json:
        print(json.dumps(scores + choices + gens, indent=2))
        return 0
    if not (scores or choices or gens):
        print("the cache is empty")
        return 0
    if scores:
        print(f"scores\n{'benchmark':<34} {'scorer':<40} {'complete':>9} {'failed':>7} "
              f"{'scen.':>6} {'samples':>7}")
        for r in scores:
            print(f"{r['benchmark']:<34} {r['scorer']:<40} {r['complete']:>9} {r['failed']:>7} "
                  f"{r['scenarios']:>6} {r['samples']:>7}")
    if choices:
        print(f"choices\n{'benchmark':<34} {'scorer':<40} {'complete':>9} {'failed':>7} "
              f"{'scen.':>6} {'targets':>7} {'samples':>7}")
        for r in choices:
            print(f"{r['benchmark']:<34} {r['scorer']:<40} {r['complete']:>9} {r['failed']:>7} "
                  f"{r['scenarios']:>6} {r['targets']:>7} {r['samples']:>7}")
    if gens:
        print(f"generations\n{'task':<34} {'model':<40} {'complete':>9} {'failed':>7}")
        for r in gens:
            print(f"{r['task']:<34} {r['model']:<40} {r['complete']:>9} {r['failed']:>7}")
    return 0


def run_show(args: argparse.Namespace) -> int:
    from pluralign.engine.errors import InputError

    root = _root(args)
    rows = [r for r in _score_rows(root, stores(root))
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
    from pluralign.engine.store.parts import verify

    bad = 0
    for store in stores(_root(args)):
        check = verify(store.root, store.layout)
        for part in check.bad:
            print(f"bad part: {part.path}: {part.problem}")
        for tmp in check.temp_files:
            print(f"temp file: {tmp} ({tmp.stat().st_size} bytes; `pluralign cache gc` removes "
                  "it once stale)")
        print(f"{store.name}: {len(check.parts)} parts, {len(check.bad)} bad, {check.rows} rows, "
              f"{check.superseded} superseded, {len(check.temp_files)} temp files")
        bad += len(check.bad)
    if bad:
        print("move the bad parts out of the cache directory; nothing reads them",
              file=sys.stderr)
        return 3
    return 0


def run_gc(args: argparse.Namespace) -> int:
    from pluralign.engine.store.parts import gc, refuse_bad, verify

    found = stores(_root(args))
    checks = [verify(s.root, s.layout) for s in found]
    refuse_bad(checks)  # one bad part anywhere: no store is touched
    for store, check in zip(found, checks, strict=True):
        report = gc(store.root, store.layout, min_age=float(args.min_age), check=check)
        for tmp in report.temp_files_removed:
            print(f"removed temp file: {tmp}")
        print(f"{store.name}: {len(report.temp_files_removed)} temp files removed; rows "
              f"{report.rows_before} -> {report.rows_after}; parts {report.parts_before} -> "
              f"{report.parts_after}")
    return 0
