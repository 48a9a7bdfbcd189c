"""The ``view`` job: load the runs, then serve the viewer until interrupted."""

from __future__ import annotations

import sys
import threading
from dataclasses import dataclass

from pluralign.jobs.decisions import write_decisions
from pluralign.jobs.serve.http import load_token
from pluralign.jobs.view.data import ViewData
from pluralign.jobs.view.server import start


@dataclass(frozen=True, kw_only=True)
class ViewConfig:
    """The runs ``pluralign view`` shows and where it listens."""

    runs: tuple[str, ...]
    """Sweep output folders (of the same benchmark identity, split and scenarios)."""
    cache: str | None = None
    """Score cache the runs were scored into (None: the cache each run named, else the
    default)."""
    data: str | None = None
    """Data folder (None: the one the runs named, then $PLURALIGN_DATA)."""
    host: str = "127.0.0.1"
    """Address to listen on; beyond loopback a token is required."""
    port: int = 8765
    """Port (0: any free port)."""
    token_file: str | None = None
    """File holding the token (else $PLURALIGN_SERVE_TOKEN); required beyond loopback."""
    bootstrap: int = 500
    """Bootstrap resamples of the run comparison."""
    seed: int = 0
    """Seed of the comparison's resampling."""
    groups: str | None = None
    """A jury's group file (docs/juries.md): each group becomes a target set of its jurors'
    targets (a table filter, a paired comparison row, one preset per juror)."""
    write_decisions: bool = False
    """Also write each run's decisions.parquet (every prediction, label, reasoning, raw
    answer and choice) into its folder."""


def run_view(config: ViewConfig, *, stop: threading.Event | None = None) -> None:
    """Serve the viewer over ``config.runs`` until ``stop`` is set or Ctrl-C."""
    token = load_token(config.token_file)
    data = ViewData(config.runs, cache=config.cache, data=config.data,
                    bootstrap=config.bootstrap, seed=config.seed, groups=config.groups)
    if config.write_decisions:
        for vr in data.runs:
            path = write_decisions(vr.run)
            print(f"wrote {path}", file=sys.stderr, flush=True)
    server, url = start(data, config.host, config.port, token)
    print(f"pluralign view: {url} ({len(data.runs)} run(s); "
          f"{'token required' if token else 'loopback only'}; Ctrl-C stops)",
          file=sys.stderr, flush=True)
    stop = stop or threading.Event()
    try:
        while not stop.wait(0.5):
            pass
    finally:
        server.shutdown()
        server.server_close()
