"""Whether the running code may take SIGINT and SIGTERM over: only inside a command of the
command line (:func:`handled_by_command`). A library call — a notebook, a script using the
Python API — never installs a process-wide handler, so its caller's Ctrl-C behaves as the
caller expects (a KeyboardInterrupt)."""

from __future__ import annotations

import contextlib
import contextvars
import threading
from collections.abc import Iterator

_COMMAND: contextvars.ContextVar[bool] = contextvars.ContextVar("pluralign_command",
                                                                 default=False)


@contextlib.contextmanager
def handled_by_command() -> Iterator[None]:
    """Within this block (a command of the command line), scoring and generation runs take
    SIGINT and SIGTERM over: the first stops sending and keeps every answer received."""
    token = _COMMAND.set(True)
    try:
        yield
    finally:
        _COMMAND.reset(token)


def may_handle_signals() -> bool:
    """True inside a command, on the main thread (where signals arrive)."""
    return _COMMAND.get() and threading.current_thread() is threading.main_thread()
