"""Ctrl-C and SIGTERM during a command's run: the first stops sending (in this process's API
clients and on the API-client actors) and keeps every answer already received; the second
exits at once, taking down the Ray runtime this process started.

Only the command line takes signals over (:func:`handled_by_command` around a command); a
library call — a notebook, a script using the Python API — never installs a process-wide
handler, and its caller's Ctrl-C behaves as the caller expects.
"""

from __future__ import annotations

import os
import signal
from typing import Any, TextIO

from pluralign.actors.backends.api_client import stop_sending
from pluralign.engine.run import signals
from pluralign.engine.run.signals import handled_by_command
from pluralign.jobs.ray_runtime import abandon_broken_ray, stop_started_ray

__all__ = ["Interrupts", "handled_by_command"]

RAY_SIGTERM_SETTLE = 0.25
"""Seconds a run stopped by SIGTERM watches the Ray runtime it started for a process dying
before it closes its actors. The runtime's processes have process groups of their own (a
SIGTERM to the driver's group no longer reaches them), but a process manager may signal every
process it knows of: the first of them is gone within tens of milliseconds (measured: 5-26 ms),
while a run with nothing in flight can wind down sooner than that."""


class Interrupts(signals.Interrupts):
    """SIGINT/SIGTERM during a run: the first stops sending, here and on the API-client
    actors of ``pool`` (answers in flight are awaited for --grace-seconds, every finished
    answer is written); the second exits at once, taking down the Ray runtime this process
    started."""

    def __init__(self, log: TextIO | None, pool: Any = None) -> None:
        super().__init__(log)
        self.pool = pool
        self.terminated = False
        """A SIGTERM came (sent to Ray's processes too, it kills them; SIGINT does not)."""

    def drain(self) -> None:
        stop_sending()  # in-process clients send nothing more, retries included
        drain = getattr(self.pool, "drain", None)
        if drain is not None:
            drain()  # nor do the API-client actors (Ray keeps SIGINT from their processes)
        super().drain()

    def uninstall(self) -> None:
        """Hand the signals back; after a signal that killed part of the Ray runtime this
        process started (a SIGTERM sent to its raylet and GCS too), take the
        rest down now and have ``pool`` make no Ray call as it closes: each would wait a
        minute on the dead GCS before Ray aborts the process (exit 1, not 130)."""
        super().uninstall()
        settle = RAY_SIGTERM_SETTLE if self.terminated else 0.0
        if self.count and abandon_broken_ray(settle=settle):
            abandon = getattr(self.pool, "abandon", None)
            if abandon is not None:
                abandon()

    def _on_signal(self, sig: int) -> None:
        self.terminated = self.terminated or sig == signal.SIGTERM
        super()._on_signal(sig)

    def _exit_now(self) -> None:
        self._say("interrupted again: exiting now")
        stop_started_ray()
        os._exit(130)
