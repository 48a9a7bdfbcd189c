"""The ``serve`` job: run the query service over one score cache until told to stop, in this
process (uvicorn) or as a Ray Serve deployment with replicas or autoscaling.

:func:`serve` takes a :class:`ServeConfig` and a stop event and never installs signal
handlers: stopping on SIGTERM is the command line's business (``jobs/cli/serve.py`` sets the
event from its handler). Ray's ``init`` replaces the SIGTERM handler of the main thread; the
job puts back the one it found.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Annotated, Any

from pluralign.engine.align.realign import parse_memory_budget
from pluralign.engine.errors import InputError
from pluralign.jobs.configs import Range
from pluralign.jobs.ray_runtime import (
    init_local_ray,
    refuse_open_cluster,
    started_ray_intact,
    stop_started_ray,
)
from pluralign.jobs.runtime import cache_dir, progress
from pluralign.jobs.serve.http import TOKEN_ENV, check_bind, load_token, serve_local
from pluralign.jobs.serve.query import Limits, QueryService

__all__ = ["ServeConfig", "autoscale_range", "serve"]


@dataclass(frozen=True)
class ServeConfig:
    """Where the query service reads, where it listens, who may ask and how much. Every field
    not set keeps the command line's default (``pluralign serve --help``)."""

    cache: str | None = None
    """Score cache folder (None: $PLURALIGN_CACHE or the user cache dir)."""
    data: str | None = None
    """Data folder (None: $PLURALIGN_DATA, then the user data dir)."""
    host: str = "127.0.0.1"
    """Address to bind; beyond loopback only with a bearer token."""
    port: Annotated[int, Range(0, 65_535)] = 8321
    """Port to listen on."""
    token_file: str | None = None
    """File holding the bearer token (None: $PLURALIGN_SERVE_TOKEN, or the variable token_env
    names)."""
    token_env: str = TOKEN_ENV
    """Environment variable holding the bearer token when there is no token file (the token
    itself is never passed in)."""
    lru: int = 16
    """Predictions and label indexes kept in memory (each, LRU)."""
    max_body: int = Limits.max_body
    """Request size limit (bytes; 413 beyond)."""
    max_targets: int = Limits.max_targets
    """Targets per request (413 beyond)."""
    max_choice_cells: int = Limits.max_choice_cells
    """Targets x scenarios of one per-scenario answer (413 beyond)."""
    max_synthetic_scenarios: int = Limits.max_synthetic_scenarios
    """Serve synthetic benchmarks up to this many scenarios (0: none; each one a request names
    is generated and kept in memory like the others)."""
    memory_budget: int | str | None = None
    """Memory of one re-alignment (512M, 2G, 25%; None: 1/8 of RAM)."""
    ray: bool = False
    """Run as a Ray Serve deployment (replicas, autoscaling)."""
    address: str | None = None
    """Ray cluster to deploy on (None: a new loopback-only local Ray)."""
    replicas: int = 1
    """Ray Serve replicas."""
    autoscale: str | tuple[int, int] | None = None
    """Autoscale Ray Serve replicas between MIN and MAX ("MIN,MAX" or a pair; None: a fixed
    number of replicas)."""

    def limits(self) -> Limits:
        return Limits(max_body=self.max_body, max_targets=self.max_targets,
                      max_choice_cells=self.max_choice_cells,
                      max_synthetic_scenarios=self.max_synthetic_scenarios)


def autoscale_range(value: str | tuple[int, int] | None) -> tuple[int, int] | None:
    """(MIN, MAX) replicas from ``"MIN,MAX"`` or a pair; None: a fixed number."""
    if value is None:
        return None
    text = value if isinstance(value, str) else ",".join(map(str, value))
    try:
        lo, hi = (int(x) for x in text.split(","))
    except ValueError:
        raise InputError(f"not MIN,MAX: {text!r}", field="autoscale") from None
    if not 0 <= lo <= hi or hi < 1:
        raise InputError(f"need 0 <= MIN <= MAX and MAX >= 1: {text!r}", field="autoscale")
    return lo, hi


def serve(config: ServeConfig, *, stop: threading.Event | None = None,
          on_ready: Callable[[str], None] | None = None) -> None:
    """Answer re-alignment queries over HTTP until ``stop`` is set (or a KeyboardInterrupt
    reaches the calling thread); ``on_ready`` gets the URL once queries are answered. Every
    setting is checked before anything starts: a token is required beyond loopback."""
    token = load_token(config.token_file, env=config.token_env)
    check_bind(config.host, token, env=config.token_env)
    budget = parse_memory_budget(config.memory_budget)
    limits = config.limits()
    autoscale = autoscale_range(config.autoscale)
    cache = str(cache_dir(config.cache))
    data = config.data or os.environ.get("PLURALIGN_DATA")
    stop = stop or threading.Event()
    if not config.ray:
        service = QueryService(cache, data, lru=config.lru, limits=limits, memory_budget=budget)
        serve_local(service, token, config.host, config.port, stop=stop, on_ready=on_ready)
        return
    _serve_ray(config, cache, data, limits, budget, token, autoscale, stop, on_ready)


@contextmanager
def _sigterm_kept() -> Iterator[None]:
    """Put back the SIGTERM handler ``ray.init`` replaces (only the main thread has one)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    saved = signal.getsignal(signal.SIGTERM)
    try:
        yield
    finally:
        if saved is not None:
            signal.signal(signal.SIGTERM, saved)


def _serve_ray(config: ServeConfig, cache: str, data: str | None, limits: Limits, budget: int,
               token: str | None, autoscale: tuple[int, int] | None, stop: threading.Event,
               on_ready: Callable[[str], None] | None) -> None:
    import ray
    from ray import serve as ray_serve

    # Imports ray.serve itself: loaded only here, like Ray.
    from pluralign.jobs.serve.ray_serve import build

    with _sigterm_kept():
        if config.address:
            refuse_open_cluster(config.address)
            ray.init(address=config.address, log_to_driver=False)
        else:
            init_local_ray()
    try:
        ray_serve.start(http_options={"host": config.host, "port": config.port})
        app = build(cache, data, lru=config.lru, limits=limits, memory_budget=budget,
                    token=token, replicas=config.replicas, autoscale=autoscale)
        ray_serve.run(app, name="pluralign", route_prefix="/")
        scaling = "" if autoscale is None else ", autoscaling " + (
            config.autoscale if isinstance(config.autoscale, str) else f"{autoscale[0]},{autoscale[1]}")
        progress(f"Ray Serve: http://{config.host}:{config.port} ({config.replicas} replica(s)"
                 f"{scaling}); Ctrl-C stops")
        if on_ready is not None:
            on_ready(f"http://{config.host}:{config.port}")
        stop.wait()
    finally:
        _shut_down(ray_serve, ray, started=not config.address)


SERVE_SHUTDOWN_GRACE = 5.0
"""Seconds Ray Serve gets to shut its deployment down before the runtime goes anyway."""


def _shut_down(ray_serve: Any, ray: Any, *, started: bool) -> None:
    """Shut Ray Serve down, then Ray: in seconds, whatever state a signal left them in. A
    terminal's Ctrl-C or a group's SIGTERM also reaches the local runtime's raylet and GCS;
    Ray Serve's orderly shutdown then waits about half a minute for a controller that is
    gone, so it gets :data:`SERVE_SHUTDOWN_GRACE` in a thread (an orderly one takes 2-4 s),
    none when the runtime this process started has lost a process already; that runtime is
    then taken down with every process it spawned (:func:`stop_started_ray`)."""
    if not started or started_ray_intact():
        done = threading.Thread(target=ray_serve.shutdown, daemon=True)
        done.start()
        done.join(SERVE_SHUTDOWN_GRACE)
    if started:
        stop_started_ray()
    else:
        ray.shutdown()
