"""The watchdog of a local Ray runtime, run as a script: ``python -I ray_watchdog.py PGID...``.

A driver that starts Ray for itself puts the runtime's processes in process groups of their own
(see :func:`pluralign.jobs.ray_runtime.init_local_ray`) and starts this process with the read
end of a pipe as its standard input, the write end kept by the driver. The kernel closes that
end when the driver ends, however it ends (``kill -9`` included): the watchdog then kills what
is left in those groups — the dashboard and runtime-env agents and the actor workers the raylet
spawned, which outlive a raylet that did not shut down in order.

A group found empty is forgotten at once (its number could later name someone else's group),
and the watchdog exits when none is left: after an orderly ``ray.shutdown`` it goes with the
runtime.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import sys

POLL = 0.5
"""Seconds between looks at the groups while the driver lives."""


def _alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):  # gone, or another user's group by now
        return False
    return True


def _kill(groups: set[int]) -> None:
    for pgid in groups:
        with contextlib.suppress(ProcessLookupError, PermissionError):  # gone since the look
            os.killpg(pgid, signal.SIGKILL)


def watch(groups: set[int], pipe: int) -> None:
    """Until ``pipe`` reads end-of-file (the driver is gone), forget the groups that empty;
    then kill every group still alive."""
    while groups:
        ready, _, _ = select.select([pipe], [], [], POLL)
        if ready and not os.read(pipe, 4096):
            _kill({g for g in groups if _alive(g)})
            return
        groups = {g for g in groups if _alive(g)}


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's Ctrl-C is the driver's to handle
    groups = {int(a) for a in argv if a.isdigit() and int(a) > 1}
    watch(groups, sys.stdin.fileno())
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
