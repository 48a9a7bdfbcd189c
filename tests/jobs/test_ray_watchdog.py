"""The watchdog of a local Ray runtime (jobs/ray_watchdog.py): it kills the process groups it
watches when its driver ends, however it ends, and leaves by itself once they are empty."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import pluralign.jobs.ray_runtime as ray_runtime

psutil = pytest.importorskip("psutil")

WATCHDOG = Path(ray_runtime.__file__).with_name("ray_watchdog.py")
WAIT = 30.0
"""Seconds after which a process that should have ended counts as left behind (not a speed
bound)."""


def _group() -> subprocess.Popen[bytes]:
    """A process in a process group of its own, with a child in the same group (as the raylet
    and the agents it spawns)."""
    return subprocess.Popen(["sh", "-c", "sleep 300 & wait"], process_group=0)


def _alive(pgid: int) -> bool:
    """A process of group ``pgid`` still runs (a zombie waiting for its parent does not)."""
    for proc in psutil.process_iter(["status"]):
        with contextlib.suppress(psutil.Error):
            if os.getpgid(proc.pid) == pgid and proc.info["status"] != psutil.STATUS_ZOMBIE:
                return True
    return False


def _until(check: object, what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(what)
        time.sleep(0.05)


def _watchdog(*groups: int) -> tuple[subprocess.Popen[bytes], int]:
    read, write = os.pipe()
    try:
        proc = subprocess.Popen([sys.executable, "-I", str(WATCHDOG), *map(str, groups)],
                                stdin=read, process_group=0)
    finally:
        os.close(read)
    return proc, write


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="process groups (Linux)")
def test_the_watchdog_kills_its_groups_when_the_driver_goes() -> None:
    a, b, bystander = _group(), _group(), _group()
    watchdog, write = _watchdog(a.pid, b.pid)
    try:
        time.sleep(0.6)  # a look at the groups while the "driver" lives: nothing is touched
        assert watchdog.poll() is None and _alive(a.pid) and _alive(b.pid)
        os.close(write)  # what the kernel does when the driver ends, kill -9 included
        _until(lambda: not _alive(a.pid) and not _alive(b.pid), "groups left alive")
        assert watchdog.wait(timeout=WAIT) == 0
        assert _alive(bystander.pid)  # a group it was not told about is not its business
    finally:
        for p in (a, b, bystander):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
            p.wait()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="process groups (Linux)")
def test_the_watchdog_leaves_once_its_groups_are_empty() -> None:
    a = _group()
    watchdog, write = _watchdog(a.pid)
    try:
        os.killpg(a.pid, signal.SIGKILL)  # an orderly shutdown ended the runtime
        a.wait()
        _until(lambda: not _alive(a.pid), "the group outlived SIGKILL")
        _until(lambda: watchdog.poll() is not None, "the watchdog outlived its groups")
        assert watchdog.returncode == 0
    finally:
        os.close(write)
        if watchdog.poll() is None:
            watchdog.kill()
        watchdog.wait()
