"""Claims on work items: free on disk, released on every way out, a lease from the future
expires, and a file where the claims folder goes is one clear error."""

from __future__ import annotations

import errno
import json
import os
import socket
import time
from pathlib import Path

import pytest

from pluralign.engine.errors import InputError
from pluralign.engine.store import claims as claims_module
from pluralign.engine.store.claims import Claims


class Clock:
    """A monotonic clock the test steps by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_claims_are_hard_links_to_one_owner_file(tmp_path: Path) -> None:
    c = Claims(tmp_path)
    for i in range(50):
        assert c.try_claim(f"k{i}")
    folder = tmp_path / ".claims"
    owners = list(folder.glob("*.owner"))
    assert len(owners) == 1 and owners[0].stat().st_nlink == 51  # one inode for 50 claims
    info = json.loads((folder / "k7.claim").read_text())
    assert info["pid"] == os.getpid() and info["host"] == socket.gethostname()
    assert {os.stat(p).st_ino for p in folder.glob("*.claim")} == {owners[0].stat().st_ino}
    c.release(["k0", "k1"])
    assert not (folder / "k0.claim").exists() and owners[0].stat().st_nlink == 49
    c.release_all()
    assert list(folder.iterdir()) == []  # the owner file goes too


def test_one_heartbeat_refreshes_every_claim(tmp_path: Path) -> None:
    c = Claims(tmp_path)
    assert c.try_claim("a") and c.try_claim("b")
    for name in ("a.claim", "b.claim"):
        os.utime(tmp_path / ".claims" / name, (1.0, 1.0))  # shares the owner's inode
    c.heartbeat()
    assert all(time.time() - (tmp_path / ".claims" / n).stat().st_mtime < 60
               for n in ("a.claim", "b.claim"))


def test_without_hard_links_each_claim_is_a_file(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    def no_links(src: object, dst: object) -> None:
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(claims_module.os, "link", no_links)
    mine, other = Claims(tmp_path), Claims(tmp_path)
    assert mine.try_claim("k") and not mine.links
    assert not other.try_claim("k") and other.claimed_elsewhere("k")
    assert json.loads((tmp_path / ".claims" / "k.claim").read_text())["owner"] == mine.owner
    mine.release_all()
    assert other.try_claim("k")


def test_a_lease_from_the_future_expires_a_lease_after_it_was_first_seen(
        tmp_path: Path) -> None:
    clock = Clock()
    other = Claims(tmp_path)
    assert other.try_claim("k")
    future = time.time() + 10 * 365 * 86400  # a touched file or a clock ten years ahead
    os.utime(tmp_path / ".claims" / "k.claim", (future, future))
    mine = Claims(tmp_path, lease_seconds=60, clock=clock)
    assert mine.claimed_elsewhere("k")  # first seen now
    clock.now += 59
    assert mine.claimed_elsewhere("k") and not mine.try_claim("k")
    clock.now += 2  # a lease with no heartbeat: expired, whatever the stamp says
    assert not mine.claimed_elsewhere("k")
    assert mine.try_claim("k")
    assert json.loads((tmp_path / ".claims" / "k.claim").read_text())["owner"] == mine.owner


def test_a_heartbeat_keeps_a_future_lease_alive(tmp_path: Path) -> None:
    clock = Clock()
    other = Claims(tmp_path)
    assert other.try_claim("k")
    path = tmp_path / ".claims" / "k.claim"
    mine = Claims(tmp_path, lease_seconds=60, clock=clock)
    for step in range(5):
        stamp = time.time() + 3600 + step  # its clock runs an hour ahead, and it beats
        os.utime(path, (stamp, stamp))
        assert mine.claimed_elsewhere("k")
        clock.now += 50
    assert mine.claimed_elsewhere("k") and not mine.try_claim("k")


def test_taking_over_a_dead_owner_removes_its_owner_file(tmp_path: Path) -> None:
    other = Claims(tmp_path)
    assert other.try_claim("k")
    owner = next((tmp_path / ".claims").glob("*.owner"))
    info = json.loads(owner.read_text())
    owner.write_text(json.dumps({**info, "pid": 2**22 + 12345}))  # no such process
    mine = Claims(tmp_path)
    assert mine.try_claim("k")
    assert not owner.exists()
    assert [p.name for p in (tmp_path / ".claims").glob("*.owner")] == [
        mine.owner.replace(":", "-") + ".owner"]


def test_a_file_named_claims_is_one_clear_error(tmp_path: Path) -> None:
    (tmp_path / ".claims").write_text("not a folder")
    with pytest.raises(InputError) as err:
        Claims(tmp_path)
    text = str(err.value)
    assert str(tmp_path / ".claims") in text and "is a file" in text
    assert "remove or rename" in text and "\n" not in text


def test_a_file_that_takes_the_folders_place_later_is_the_same_error(tmp_path: Path) -> None:
    c = Claims(tmp_path)
    (tmp_path / ".claims").write_text("not a folder")
    with pytest.raises(InputError, match="is a file"):
        c.try_claim("k")


def test_an_owner_file_left_by_a_dead_process_is_removed(tmp_path: Path) -> None:
    gone = Claims(tmp_path)
    assert gone.try_claim("k")
    gone.release(["k"])  # killed now: its owner file stays, linked by no claim
    owner = next((tmp_path / ".claims").glob("*.owner"))
    owner.write_text(json.dumps({**json.loads(owner.read_text()), "pid": 2**22 + 12345}))
    alive = Claims(tmp_path)
    assert alive.try_claim("x")
    mine = Claims(tmp_path)
    assert mine.try_claim("z")
    names = {p.name for p in (tmp_path / ".claims").glob("*.owner")}
    assert owner.name not in names and len(names) == 2
