"""SIGINT and SIGTERM during a run: :class:`Interrupts` stops sending at the first and exits at
the second. Only code inside a command of the command line (:func:`handled_by_command`) takes
the signals over; a library call — a notebook, a script using the Python API — never installs a
process-wide handler, so its caller's Ctrl-C behaves as the caller expects (a
KeyboardInterrupt)."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import os
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any, TextIO

_COMMAND: contextvars.ContextVar[bool] = contextvars.ContextVar("pluralign_command",
                                                                 default=False)
SIGNALS = (signal.SIGINT, signal.SIGTERM)
"""What a terminal's Ctrl-C and a process manager's stop send: both are handled alike."""
STOPPED = "interrupted: sending stopped; saving the answers already received " \
          "(press Ctrl-C again to quit at once)"
"""The line printed at the first signal."""


@contextlib.contextmanager
def handled_by_command() -> Iterator[None]:
    """Within this block (a command of the command line), scoring and generation runs take
    SIGINT and SIGTERM over: the first stops sending and keeps every answer received. Outside
    a run (reading inputs, preparing items, writing results) either raises
    KeyboardInterrupt, so ``finally`` blocks run and the command exits 130 — even where the
    process started with SIGINT ignored (a background job of a script), which would otherwise
    ignore a Ctrl-C while it prepares and honour it once it sends. The handlers the block was
    entered with are back after it."""
    token = _COMMAND.set(True)
    main = threading.current_thread() is threading.main_thread()
    saved = {sig: signal.getsignal(sig) for sig in SIGNALS} if main else {}
    for sig in saved:
        signal.signal(sig, _raise_interrupt)
    try:
        yield
    finally:
        _COMMAND.reset(token)
        for sig, handler in saved.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def may_handle_signals() -> bool:
    """True inside a command, on the main thread (where signals arrive)."""
    return _COMMAND.get() and threading.current_thread() is threading.main_thread()


class Interrupts:
    """SIGINT/SIGTERM during a run on the running event loop: the first drains the backends
    (:meth:`drain`: nothing more is sent, answers in flight still arrive) and stops the run
    (the ``stop`` given to :meth:`attach`: the scheduler awaits the answers in flight and writes
    every one); the second exits at once (:meth:`_exit_now`).

    Subclasses add what else must stop: the job layer's drains every API client of the process
    and its Ray actors, and takes down the Ray runtime the process started on a second signal.
    """

    def __init__(self, log: TextIO | None, drains: tuple[Callable[[], object], ...] = ()
                 ) -> None:
        self.log = log
        self.drains = list(drains)
        """Called at the first signal, before the run is stopped."""
        self.count = 0
        """Signals received."""
        self.stop: Callable[[str], None] | None = None
        self.saved: dict[int, Any] = {}

    def install(self) -> None:
        """Take SIGINT and SIGTERM over for the running loop, when the command line asked for
        it (:func:`handled_by_command`) and this is the main thread; otherwise do nothing, so
        a library caller's own handlers (a notebook kernel's) stay as they are."""
        if not may_handle_signals():
            return
        loop = asyncio.get_running_loop()
        for sig in SIGNALS:
            self.saved[sig] = signal.getsignal(sig)
            loop.add_signal_handler(sig, self._on_signal, sig)

    def uninstall(self) -> None:
        if not self.saved:
            return
        loop = asyncio.get_running_loop()
        for sig, handler in self.saved.items():
            loop.remove_signal_handler(sig)
            if self.count:
                # A command interrupted once is winding down (summary, shutdown): another
                # signal from here on must still quit at once, not raise a traceback.
                signal.signal(sig, lambda signum, frame: self._exit_now())
            elif handler is not None:  # None: set outside Python, nothing to restore
                signal.signal(sig, handler)
        self.saved.clear()

    @contextlib.contextmanager
    def installed(self) -> Iterator[Interrupts]:
        """:meth:`install` for the block (inside a running loop), :meth:`uninstall` after."""
        self.install()
        try:
            yield self
        finally:
            self.uninstall()

    def attach(self, stop: Callable[[str], None]) -> None:
        """The function that stops the run (the scheduler's ``on_start`` gives it); a signal
        that came before it stops the run at once."""
        self.stop = stop
        if self.count:
            stop("interrupted")

    def drain(self) -> None:
        """Send nothing more (the first signal)."""
        for drain in self.drains:
            drain()

    def _exit_now(self) -> None:
        """The second signal: quit at once (every answer written so far stays written)."""
        self._say("interrupted again: exiting now")
        os._exit(130)

    def _say(self, line: str) -> None:
        if self.log is not None:
            print(line, file=self.log, flush=True)

    def _on_signal(self, sig: int) -> None:
        self.count += 1
        if self.count > 1:
            self._exit_now()
            return
        self.drain()
        self._say(STOPPED)
        if self.stop is not None:
            self.stop("interrupted")
