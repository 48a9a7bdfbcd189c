"""Claims on work items shared by every process scoring into one cache directory.

Two sweeps on one cache must not buy the same answer twice. Before sending an item a process
creates ``<cache>/.claims/<item key>.claim`` atomically (a process that finds the file leaves
the item alone until the file is gone, then reads the cache again). A claim is released only
after the item's rows are in the cache, so "no claim and not cached" always means "nobody has
it".

A claim costs no disk space: each process writes ONE owner file (``<owner>.owner``: host, pid)
and claims an item by hard-linking it as ``<key>.claim`` (``link`` fails when the name exists,
like ``O_CREAT | O_EXCL``, on local file systems and NFSv3+). A full disk therefore never fills
up with claims, and one ``utime`` of the owner file is the heartbeat of all its claims. Where
hard links are not supported, each claim is a small file of its own, as before.

A claim is stale, and taken over, when its owner is a dead process on this host, or when its
heartbeat is older than the lease. The age is the larger of the clock's (now minus the
modification time) and how long this process has watched the modification time stand still,
so a claim stamped in the future (a skewed clock, a touched file) expires a lease after it was
first seen instead of never.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from pluralign.engine.errors import InputError

CLAIMS_DIR = ".claims"
"""Folder of claim files inside the cache directory (never read as a cache part)."""
CLAIM_SUFFIX = ".claim"
"""Suffix of one item's claim."""
OWNER_SUFFIX = ".owner"
"""Suffix of a process's owner file (the inode its claims link to)."""

_NO_LINKS = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EMLINK, errno.EXDEV,
             errno.ENOSYS}
"""``link`` errors meaning "this file system cannot do it here": fall back to claim files."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return True


@dataclass(frozen=True)
class ClaimOwner:
    """Who holds a claim, as its file says."""

    host: str
    """Host name of the owning process."""
    pid: int | None
    """Its process id (None when the file does not say)."""

    def __str__(self) -> str:
        return f"{self.host} pid {self.pid}" if self.pid is not None else self.host


def claims_folder(cache_root: Path) -> Path:
    """``<cache_root>/.claims``; refuses (InputError) a file that sits where the folder goes."""
    root = Path(cache_root) / CLAIMS_DIR
    if root.exists() and not root.is_dir():
        raise InputError("is a file, but pluralign keeps the claims of running jobs in a "
                         "folder of this name", file=root,
                         hint="remove or rename the file, then rerun")
    return root


class Claims:
    """This process's claims in one cache directory."""

    def __init__(self, cache_root: Path, *, lease_seconds: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.cache_root = Path(cache_root)
        """The cache directory the claims are for."""
        self.root = claims_folder(self.cache_root)
        self.lease = float(lease_seconds)
        self.clock = clock
        """Seconds, for how long a claim's modification time has stood still (tests step it)."""
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self.owner = f"{self.host}:{self.pid}:{uuid.uuid4().hex[:8]}"
        self.held: set[str] = set()
        self.links = True
        """Claims are hard links to the owner file (False: one small file per claim)."""
        self._owner_file: Path | None = None
        self._made = False
        """The claims folder was made (or found) by this object."""
        self._root_text = os.fspath(self.root)
        self._watched: dict[str, tuple[int, int, float]] = {}  # name -> (ino, mtime_ns, since)

    def _path(self, key: str) -> Path:
        return self.root / f"{key}{CLAIM_SUFFIX}"

    def _name(self, key: str) -> str:
        """The claim's path as text (no Path object per claim on the hot path)."""
        return f"{self._root_text}{os.sep}{key}{CLAIM_SUFFIX}"

    def _info(self) -> bytes:
        return json.dumps({"owner": self.owner, "host": self.host, "pid": self.pid,
                           "file": self._owner_name()}).encode()

    def _owner_name(self) -> str:
        return self.owner.replace(":", "-") + OWNER_SUFFIX

    def _mkdir(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except FileExistsError:
            claims_folder(self.cache_root)  # a file took the folder's place: one clear line
            raise

    def _exclusive(self, path: Path | str) -> bool:
        """Create ``path`` holding this process's info; False when it exists."""
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        try:
            os.write(fd, self._info())
        except BaseException:
            os.close(fd)
            Path(path).unlink(missing_ok=True)
            raise
        os.close(fd)
        return True

    def _owner(self) -> Path:
        """This process's owner file, created on first use (and again if reaped meanwhile:
        ``link`` then fails with FileNotFoundError and :meth:`_create` forgets it)."""
        if self._owner_file is not None:
            return self._owner_file
        path = self.root / self._owner_name()
        self._reap_owners()
        path.unlink(missing_ok=True)
        self._exclusive(path)
        self._owner_file = path
        return path

    def _reap_owners(self) -> None:
        """Remove owner files that no claim links to any more and whose process is gone (a
        run killed with nothing claimed leaves one behind)."""
        for owner in self.root.glob(f"*{OWNER_SUFFIX}"):
            with contextlib.suppress(OSError):
                if owner.stat().st_nlink <= 1 and self._stale(owner):
                    owner.unlink()
                    self._watched.pop(owner.name, None)

    def _create(self, path: Path | str) -> bool:
        """Create the claim ``path``; False when it exists."""
        if not self.links:
            try:
                return self._exclusive(path)
            except FileNotFoundError:
                self._mkdir()  # the folder was removed meanwhile
                return self._exclusive(path)
        for _ in range(2):
            try:
                os.link(self._owner(), path)
                return True
            except FileExistsError:
                return False
            except FileNotFoundError:
                self._owner_file = None  # reaped by a process that thought us stale: again
                self._mkdir()  # or the whole folder was removed
            except OSError as e:
                if e.errno not in _NO_LINKS:
                    raise
                self.links = False
                return self._exclusive(path)
        return False

    def try_claim(self, key: str) -> bool:
        """True when this process now holds ``key`` (it was free, stale, or already ours)."""
        if key in self.held:
            return True
        if not self._made:  # once: a folder removed meanwhile is made again by _create
            self._mkdir()
            self._made = True
        if self._create(self._name(key)):  # the usual case: free
            self.held.add(key)
            return True
        path = self._path(key)
        for _ in range(2):
            if not self._stale(path):
                return False
            self._take_over(path)
            if self._create(path):
                self.held.add(key)
                return True
        return False

    def claimed_elsewhere(self, key: str) -> bool:
        """True while another live process holds ``key``."""
        path = self._path(key)
        return key not in self.held and path.exists() and not self._stale(path)

    def owner_of(self, key: str) -> ClaimOwner | None:
        """Who holds ``key`` as its claim file says (None: no claim, or unreadable)."""
        info = self._read(self._path(key))
        if info is None or not isinstance(info.get("host"), str):
            return None
        pid = info.get("pid")
        return ClaimOwner(str(info["host"]), pid if isinstance(pid, int) else None)

    @staticmethod
    def _read(path: Path) -> dict[str, object] | None:
        try:
            info = json.loads(path.read_bytes() or b"{}")
        except (OSError, ValueError):
            return None
        return info if isinstance(info, dict) else None

    def _age(self, path: Path, st: os.stat_result) -> float:
        """Seconds since the last heartbeat: by the clock, or for as long as this process has
        seen the modification time unchanged, whichever is longer."""
        now = self.clock()
        seen = self._watched.get(path.name)
        if seen is None or seen[:2] != (st.st_ino, st.st_mtime_ns):
            seen = (st.st_ino, st.st_mtime_ns, now)
            self._watched[path.name] = seen
        return max(time.time() - st.st_mtime, now - seen[2])

    def _stale(self, path: Path) -> bool:
        try:
            st = path.stat()
        except FileNotFoundError:
            return True
        age = self._age(path, st)
        info = self._read(path) or {}  # unreadable: being written right now, judged by its age
        if info.get("owner") == self.owner:
            return False
        pid = info.get("pid")
        if info.get("host") == self.host and isinstance(pid, int) and not _alive(pid):
            return True  # its owner died (kill -9): take it over at once
        return age > self.lease

    def _take_over(self, path: Path) -> None:
        """Remove a stale claim, and its owner file once no claim links to it any more."""
        info = self._read(path) or {}
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        self._watched.pop(path.name, None)
        name = info.get("file")
        if isinstance(name, str) and name.endswith(OWNER_SUFFIX) and "/" not in name \
                and name != self._owner_name():
            owner = self.root / name
            with contextlib.suppress(OSError):
                if owner.stat().st_nlink <= 1 and self._stale(owner):
                    owner.unlink()
                    self._watched.pop(name, None)

    def heartbeat(self) -> None:
        """Refresh every held claim (call well within the lease): one touch of the owner
        file covers every hard-linked claim."""
        now = time.time()
        paths = [self._path(k) for k in self.held] if not self.links else []
        if self._owner_file is not None:
            paths.append(self._owner_file)
        for path in paths:
            with contextlib.suppress(FileNotFoundError):
                os.utime(path, (now, now))

    def release(self, keys: Iterable[str]) -> None:
        """Drop claims (after the items' rows are in the cache, or when they were not sent)."""
        for key in keys:
            if key in self.held:
                self.held.discard(key)
                with contextlib.suppress(FileNotFoundError):
                    self._path(key).unlink()

    def release_all(self) -> None:
        """Drop every claim and the owner file (every exit path of a run calls this)."""
        self.release(list(self.held))
        if self._owner_file is not None:
            self._owner_file.unlink(missing_ok=True)
            self._owner_file = None
