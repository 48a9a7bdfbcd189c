"""Progress bars for long steps (model-free scoring, re-alignment, label indexes, juries).

One function, :func:`bar`, wraps tqdm: a bar appears only when the step has run for
``delay`` seconds (2 by default), so quick steps stay silent, and only where someone is
watching: on a terminal, unless ``PLURALIGN_PROGRESS`` says otherwise (``1`` forces bars, e.g.
in a Ray job log; ``0`` turns them off). The Python API and tests can silence them with
:func:`quiet`. Bars write to standard error and never to result files.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Iterator
from typing import Any

ENV = "PLURALIGN_PROGRESS"
DELAY = 2.0
"""Seconds a step runs before its bar is shown."""

_state = threading.local()


class _Null:
    """A bar that shows nothing (same methods as the tqdm ones we use)."""

    n = 0

    def update(self, n: int = 1) -> None:
        self.n += n

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        return None

    def close(self) -> None:
        return None


def enabled() -> bool:
    """Whether bars are shown here: ``PLURALIGN_PROGRESS`` (1/0), else whether stderr is a
    terminal; never inside :func:`quiet`."""
    if getattr(_state, "quiet", 0):
        return False
    env = os.environ.get(ENV, "").strip().lower()
    if env in ("0", "false", "no", "off"):
        return False
    if env in ("1", "true", "yes", "on"):
        return True
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """No bars from this thread while inside (nested use is fine)."""
    _state.quiet = getattr(_state, "quiet", 0) + 1
    try:
        yield
    finally:
        _state.quiet -= 1


@contextlib.contextmanager
def bar(total: int | None, desc: str, *, unit: str = "it", delay: float = DELAY) -> Iterator[Any]:
    """A progress bar for one step: ``with bar(n, "re-align") as b: ... b.update(k)``.

    ``total`` None gives a counter without a percentage. The bar is closed (and its line
    finished) on exit, errors included.
    """
    if not enabled():
        yield _Null()
        return
    from tqdm.auto import tqdm

    b = tqdm(total=total, desc=desc, unit=unit, delay=delay, file=sys.stderr, leave=False,
             dynamic_ncols=True, mininterval=0.5)
    try:
        yield b
    finally:
        b.close()
