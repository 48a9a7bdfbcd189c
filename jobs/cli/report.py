"""``pluralign report``: one self-contained HTML file over one or more run folders.

Reads each run's summary.json (and per_target.parquet, manifest.json where present) and draws
the papers' figures as inline SVG; the page needs no network and opens from disk.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("report", help="one static HTML report over run folders",
                       description=__doc__)
    p.add_argument("runs", nargs="+", metavar="RUN_DIR",
                   help="sweep or jury output folders, or SPICA evaluation JSON files")
    p.add_argument("--out", required=True, help="HTML file to write")
    p.add_argument("--title", default="pluralign report", help="page title")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pluralign.engine.errors import InputError
    from pluralign.engine.store.files import write_bytes
    from pluralign.jobs.runtime import progress

    try:
        from pluralign.jobs.report import build_report
    except ImportError as e:  # matplotlib is the optional `report` extra
        raise InputError(f"the report needs matplotlib ({e})",
                         hint="pip install 'pluralign[report]'") from None
    page = build_report([Path(r) for r in args.runs], title=args.title)
    write_bytes(args.out, page.encode())
    progress(f"wrote {args.out} ({len(page) / 1e6:.2f} MB, {len(args.runs)} run(s))")
    return 0
