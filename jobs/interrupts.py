"""Ctrl-C and SIGTERM during a command's scoring run: the first stops sending (here and on the
API-client actors) and keeps every answer already received; the second exits at once, taking
down the Ray runtime this process started.

Only the command line takes signals over (:func:`handled_by_command` around a command); a
library call — a notebook, a script using the Python API — never installs a process-wide
handler, and its caller's Ctrl-C behaves as the caller expects.
"""

from __future__ import annotations

import asyncio
import os
import signal
from typing import Any, TextIO

from pluralign.actors.backends.api_client import stop_sending
from pluralign.engine.run.signals import handled_by_command, may_handle_signals
from pluralign.jobs.ray_runtime import stop_started_ray

__all__ = ["Interrupts", "handled_by_command"]


class Interrupts:
    """SIGINT/SIGTERM during scoring: the first stops sending, here and on the API-client
    actors (answers in flight are awaited for --grace-seconds, every finished answer is
    written); the second exits at once, taking down the Ray runtime this process started."""

    def __init__(self, log: TextIO | None, pool: Any = None) -> None:
        self.log = log
        self.pool = pool
        self.count = 0
        self.stop: Any = None
        self.saved: dict[int, Any] = {}

    def install(self) -> None:
        """Take SIGINT and SIGTERM over for the running loop, when the command line asked for
        it (:func:`handled_by_command`) and this is the main thread; otherwise do nothing, so
        a library caller's own handlers (a notebook kernel's) stay as they are."""
        if not may_handle_signals():
            return
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            self.saved[sig] = signal.getsignal(sig)
            loop.add_signal_handler(sig, self._on_signal, sig)

    def uninstall(self) -> None:
        loop = asyncio.get_running_loop()
        for sig, handler in self.saved.items():
            loop.remove_signal_handler(sig)
            if self.count:
                # A command interrupted once is winding down (summary, shutdown): another
                # Ctrl-C from here on must still quit at once, not raise a traceback.
                signal.signal(sig, lambda signum, frame: self._exit_now())
            elif handler is not None:  # None: set outside Python, nothing to restore
                signal.signal(sig, handler)
        self.saved.clear()

    def _exit_now(self) -> None:
        if self.log is not None:
            print("interrupted again: exiting now", file=self.log, flush=True)
        stop_started_ray()
        os._exit(130)

    def attach(self, stop: Any) -> None:
        self.stop = stop
        if self.count:
            stop("interrupted")

    def _on_signal(self, sig: int) -> None:
        self.count += 1
        if self.count > 1:
            self._exit_now()
        stop_sending()  # in-process clients send nothing more, retries included
        drain = getattr(self.pool, "drain", None)
        if drain is not None:
            drain()  # nor do the API-client actors (Ray keeps SIGINT from their processes)
        if self.log is not None:
            print("interrupted: sending stopped; saving the answers already received "
                  "(press Ctrl-C again to quit at once)", file=self.log, flush=True)
        if self.stop is not None:
            self.stop("interrupted")
