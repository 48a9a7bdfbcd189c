"""``pluralign serve``: answer re-alignment queries over HTTP from the score cache alone.

``POST /v1/align`` {"benchmark", "scorer" | "scorer_id", "targets": [{...} | "all" | ...],
"per_scenario"} -> accuracy, weighted score, counted/correct (and the chosen response per
scenario); ``GET /v1/scorers``; ``GET /healthz``. Binds 127.0.0.1 by default; any other
address needs a bearer token ($PLURALIGN_SERVE_TOKEN or --token-file). ``--ray`` runs it as a
Ray Serve deployment with replicas (or autoscaling) instead of one local process.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from pluralign.jobs.cli.args import budget_arg
from pluralign.jobs.cli.flags import add_config_flags, config_from_args
from pluralign.jobs.serve.job import ServeConfig, serve

__all__ = ["register", "run", "stop_on_sigterm"]

SKIP = ("token_env", "max_choice_cells")
"""Config fields the command line leaves at their defaults."""


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("serve", help="HTTP service for cached re-alignment queries",
                       description=__doc__)
    add_config_flags(p, ServeConfig, skip=SKIP, types={"memory_budget": budget_arg})
    p._option_string_actions["--autoscale"].metavar = "MIN,MAX"
    p.set_defaults(func=run)


@contextmanager
def stop_on_sigterm(stop: threading.Event) -> Iterator[None]:
    """While inside, SIGTERM sets ``stop`` (the service then shuts down as on Ctrl-C); the
    previous handler is put back after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run(args: argparse.Namespace) -> int:
    config = config_from_args(ServeConfig, args)
    stop = threading.Event()
    # The local server stops between requests when SIGTERM sets the event. Under --ray,
    # SIGTERM stays a Ctrl-C (a KeyboardInterrupt, see handled_by_command): it must also end
    # a deployment still starting, which blocks in Ray and never looks at the event.
    stopping = stop_on_sigterm(stop) if not config.ray else contextlib.nullcontext()
    try:
        with stopping:
            serve(config, stop=stop)
    except KeyboardInterrupt:
        if not config.ray:
            raise  # "interrupted", as always for the local server
    return 0
