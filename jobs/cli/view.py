"""``pluralign view RUN_DIR...``: a local web application over sweep folders: a per-scenario
table with filters and search, a scenario page (prompt, responses, labels, predictions with
each sample's reasoning and raw answer), a target explorer whose sliders re-align the target
from the cache on every change, and two runs side by side with the paired comparison.

Listens on loopback by default; beyond it a token is required ($PLURALIGN_SERVE_TOKEN or
--token-file), opened once as /?token=...
"""

from __future__ import annotations

import argparse

from pluralign.jobs.cli.flags import add_config_flags, config_from_args, field_docs
from pluralign.jobs.view.job import ViewConfig, run_view


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("view", help="local web viewer: per-scenario drill-down, target sliders, "
                                    "run-vs-run diffs", description=__doc__)
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help=field_docs(ViewConfig)["runs"])
    add_config_flags(p, ViewConfig, skip=("runs",))
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    run_view(config_from_args(ViewConfig, args))
    return 0
