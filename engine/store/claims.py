"""Claims on work items shared by every process scoring into one cache directory.

Two sweeps on one cache must not buy the same answer twice. Before sending an item a process
creates ``<cache>/.claims/<item key>.claim`` with ``O_CREAT | O_EXCL`` (atomic on local file
systems and NFSv3+); a process that finds the file leaves the item alone until the file is gone,
then reads the cache again. A claim is released only after the item's rows are in the cache, so
"no claim and not cached" always means "nobody has it". The owner refreshes the file's
modification time (a heartbeat); a claim is stale, and taken over, when its owner is a dead
process on this host or when its heartbeat is older than the lease.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
import uuid
from collections.abc import Iterable
from pathlib import Path

CLAIMS_DIR = ".claims"
"""Folder of claim files inside the cache directory (never read as a cache part)."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return True


class Claims:
    """This process's claims in one cache directory."""

    def __init__(self, cache_root: Path, *, lease_seconds: float = 60.0) -> None:
        self.root = Path(cache_root) / CLAIMS_DIR
        self.lease = float(lease_seconds)
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self.owner = f"{self.host}:{self.pid}:{uuid.uuid4().hex[:8]}"
        self.held: set[str] = set()

    def _path(self, key: str) -> Path:
        return self.root / f"{key}.claim"

    def try_claim(self, key: str) -> bool:
        """True when this process now holds ``key`` (it was free, stale, or already ours)."""
        if key in self.held:
            return True
        self.root.mkdir(parents=True, exist_ok=True)
        path = self._path(key)
        for _ in range(2):
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                if not self._stale(path):
                    return False
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                continue
            with os.fdopen(fd, "w") as fh:
                json.dump({"owner": self.owner, "host": self.host, "pid": self.pid}, fh)
            self.held.add(key)
            return True
        return False

    def claimed_elsewhere(self, key: str) -> bool:
        """True while another live process holds ``key``."""
        path = self._path(key)
        return key not in self.held and path.exists() and not self._stale(path)

    def _stale(self, path: Path) -> bool:
        try:
            age = time.time() - path.stat().st_mtime
            info = json.loads(path.read_text() or "{}")
        except FileNotFoundError:
            return True
        except (OSError, ValueError):
            info = {}  # being written right now: judged by its age
        if not isinstance(info, dict):
            info = {}
        if info.get("owner") == self.owner:
            return False
        pid = info.get("pid")
        if info.get("host") == self.host and isinstance(pid, int) and not _alive(pid):
            return True  # its owner died (kill -9): take it over at once
        return age > self.lease

    def heartbeat(self) -> None:
        """Refresh every held claim (call well within the lease)."""
        now = time.time()
        for key in list(self.held):
            with contextlib.suppress(FileNotFoundError):
                os.utime(self._path(key), (now, now))

    def release(self, keys: Iterable[str]) -> None:
        """Drop claims (after the items' rows are in the cache, or when they were not sent)."""
        for key in keys:
            if key in self.held:
                self.held.discard(key)
                with contextlib.suppress(FileNotFoundError):
                    self._path(key).unlink()

    def release_all(self) -> None:
        self.release(list(self.held))
