"""Free space in a cache folder: a margin kept before anything is bought that must be written.

An answer paid for and then not written is money lost (and bought again by the rerun). So a
run checks, before each send, that the folder keeps room for every answer not yet written (in
flight or in memory), the new ones, one more part's overhead and a reserve for the run's own
small files; it stops sending when that margin would be crossed. The size of an answer is
learnt from the parts written so far (starting from a generous guess).
"""

from __future__ import annotations

import errno
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from pluralign.engine.store.files import format_bytes

DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
"""``OSError.errno`` values meaning "no room": the disk is full, or the user's quota is."""


def disk_free(path: str | os.PathLike[str]) -> int:
    """Bytes this user may still write on the file system holding ``path`` (or, before it
    exists, its nearest existing parent)."""
    p = Path(path).absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    st = os.statvfs(p)
    return int(st.f_bavail) * int(st.f_frsize)


def is_disk_full(error: BaseException) -> bool:
    """Whether ``error`` (an OSError, pyarrow's included) says the disk or quota is full."""
    if not isinstance(error, OSError):
        return False
    if error.errno in DISK_FULL_ERRNOS:
        return True
    text = str(error)
    return any(f"errno {n}]" in text.lower() for n in DISK_FULL_ERRNOS) \
        or "No space left on device" in text or "Disk quota exceeded" in text


def stored_size(path: Path) -> int:
    """Bytes ``path`` takes on disk (its blocks where the file system says; else its size)."""
    st = path.stat()
    blocks = getattr(st, "st_blocks", 0) * 512
    return max(int(blocks), int(st.st_size))


@dataclass
class SpaceGuard:
    """The free-space margin of one cache folder (see the module)."""

    folder: Path
    """The cache folder (its file system is the one measured)."""
    free: Callable[[Path], int] = field(default=disk_free, repr=False)
    """Bytes free in a folder (tests inject a small figure here)."""
    reserve: int = 64 * 1024
    """Bytes always left free, for the run's own small files (summary, manifest)."""
    part_bytes: int = 16 * 1024
    """Overhead of one part (schema, metadata, footer) beyond its rows."""
    item_bytes: float = 2048.0
    """Bytes one item's rows take in a part: a generous guess until a part was written."""
    shortfall: tuple[int, int] | None = None
    """(free, margin) of the check that last found no room; None while there was room."""
    refresh_seconds: float = 0.25
    """How long a measured figure is reused, less what this process wrote meanwhile (on a
    network file system each measurement is a round trip); a figure that finds no room is
    always measured again first."""
    _seen: list[float] = field(default_factory=lambda: [0.0, 0.0], repr=False)
    """Row bytes and items of the parts learnt from so far."""
    _last: tuple[float, int] | None = field(default=None, repr=False)
    """(when, bytes free) of the last measurement, less the parts written since."""

    def margin(self, items: int) -> int:
        """Bytes to keep free so that ``items`` answers, one part of them and the reserve fit
        (half as much again as the estimate: parts vary)."""
        return self.reserve + self.part_bytes + math.ceil(1.5 * max(0, items) * self.item_bytes)

    def room_for(self, items: int) -> bool:
        """Whether ``items`` unwritten answers still fit above the reserve (True where the
        folder cannot be measured: a write that then fails is caught by its own error)."""
        need = self.margin(items)
        last, now = self._last, time.monotonic()
        if last is not None and now - last[0] < self.refresh_seconds and last[1] >= need:
            self.shortfall = None
            return True
        free = self.free_now()
        self._last = None if free is None else (now, free)
        self.shortfall = None if free is None or free >= need else (free, need)
        return self.shortfall is None

    def learn(self, part: Path, items: int) -> None:
        """Update the size per item from a part just written with ``items`` items' rows."""
        if items <= 0:
            return
        try:
            size = stored_size(part)
        except OSError:
            return
        last = self._last
        if last is not None:
            self._last = (last[0], last[1] - size)
        self._seen[0] += max(0.0, size - self.part_bytes / 2)
        self._seen[1] += items
        if self._seen[0] > 0:
            self.item_bytes = self._seen[0] / self._seen[1]

    def free_now(self) -> int | None:
        """Bytes free now (None when the folder cannot be measured)."""
        try:
            return self.free(self.folder)
        except OSError:
            return None

    def describe(self) -> str:
        """``<folder> has 68.0 KiB free, under the 89.7 KiB kept for answers in flight`` (the
        figures of the check that found no room; the free space now where it differs)."""
        free = self.free_now()
        now = "?" if free is None else format_bytes(free)
        if self.shortfall is None:
            return f"{self.folder} has {now} free"
        had, need = (format_bytes(b) for b in self.shortfall)
        later = f" ({now} free now)" if now != had else ""
        return (f"{self.folder} had {had} free, under the {need} kept for the answers in "
                f"flight{later}")


_T = TypeVar("_T")


def write_what_fits(write: Callable[[Sequence[_T]], object], entries: Sequence[_T]
                    ) -> tuple[list[_T], OSError | None]:
    """Write ``entries`` with ``write`` (one part per call) and as many of them as fit when the
    disk is full: a write that finds no room is tried again in halves, down to one entry.
    Returns the entries NOT written (kept by the caller, never dropped) and the disk-full error
    (None when everything was written). Errors other than a full disk propagate."""
    left = list(entries)
    size = len(left)
    error: OSError | None = None
    while left:
        chunk = left[:size]
        try:
            write(chunk)
        except OSError as e:
            if not is_disk_full(e):
                raise
            error = e
            if size == 1:
                return left, error  # not even one fits now
            size = max(1, size // 2)
            continue
        left = left[len(chunk):]
    return left, None if not left else error
