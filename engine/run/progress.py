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
import time
from collections.abc import Iterator
from typing import Protocol

ENV = "PLURALIGN_PROGRESS"
DELAY = 2.0
"""Seconds a step runs before its bar is shown (read when a bar opens; tests may set 0)."""
MININTERVAL = 0.5
"""Least seconds between two draws of an advancing bar (tqdm's ``mininterval``)."""
TICK = 1.0
"""Seconds between redraws of an open bar that is not advancing (its clock keeps moving)."""



class Bar(Protocol):
    """What callers use of a bar (tqdm's, or the silent :class:`_Null`)."""

    def update(self, n: int = 1) -> object: ...

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> object: ...

    def close(self) -> object: ...


class _Drawn(Bar, Protocol):
    """A shown (tqdm) bar, which the ticker redraws."""

    def refresh(self) -> object: ...


_state = threading.local()
_open: dict[int, tuple[_Drawn, float]] = {}  # id -> (bar, when it may first be drawn)
_open_lock = threading.Lock()
_ticker: threading.Thread | None = None


def _tick() -> None:
    """Redraw open bars past their delay: a step whose first unit is slow (a kernel compiled
    on first use, one long fold) still shows that it is running. One thread for all bars."""
    while True:
        time.sleep(TICK)
        now = time.monotonic()
        with _open_lock:
            due = [b for b, at in _open.values() if now >= at]
        for b in due:
            with contextlib.suppress(Exception):  # closed meanwhile: nothing to draw
                b.refresh()


def _track(b: _Drawn, delay: float) -> None:
    global _ticker
    with _open_lock:
        _open[id(b)] = (b, time.monotonic() + delay)
        if _ticker is None:
            _ticker = threading.Thread(target=_tick, name="pluralign-progress", daemon=True)
            _ticker.start()


def _untrack(b: _Drawn) -> None:
    with _open_lock:
        _open.pop(id(b), None)


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
def bar(total: int | None, desc: str, *, unit: str = "it",
        delay: float | None = None) -> Iterator[Bar]:
    """A progress bar for one step: ``with bar(n, "re-align") as b: ... b.update(k)``.

    ``total`` None gives a counter without a percentage, 0 no bar (a caller's way to say the
    step is too small to show); ``delay`` defaults to :data:`DELAY`.
    Once shown, the bar is redrawn every :data:`TICK` seconds even while it does not advance.
    The bar is closed (and its line finished) on exit, errors included.
    """
    if total == 0 or not enabled():
        yield _Null()
        return
    from tqdm.auto import tqdm

    wait = DELAY if delay is None else delay
    b = tqdm(total=total, desc=desc, unit=unit, delay=wait, file=sys.stderr, leave=False,
             dynamic_ncols=True, mininterval=MININTERVAL)
    _track(b, wait)
    try:
        yield b
    finally:
        _untrack(b)
        b.close()


def note(message: str) -> None:
    """One timestamped status line on standard error (standard output stays for results)."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)
