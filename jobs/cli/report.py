"""``pluralign report``: one self-contained HTML file over one or more run folders.

Reads each run's summary.json (and per_target.parquet, manifest.json where present) and draws
the papers' figures as inline SVG; the page needs no network and opens from disk.
"""

from __future__ import annotations

import argparse

from pluralign.jobs.cli.flags import add_config_flags, config_from_args, field_docs
from pluralign.jobs.report import ReportConfig, run_report
from pluralign.jobs.runtime import progress


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("report", help="one static HTML report over run folders",
                       description=__doc__)
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help=field_docs(ReportConfig)["runs"])
    add_config_flags(p, ReportConfig, skip=("runs",), required=("out",),
                     negative={"drilldown": "--no-drilldown"})
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    config = config_from_args(ReportConfig, args)
    result = run_report(config)
    progress(f"wrote {config.out} ({result.size / 1e6:.2f} MB, {result.runs} run(s))")
    return 0
