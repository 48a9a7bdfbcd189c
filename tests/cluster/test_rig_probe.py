"""Where the multi-host rig cannot be made, its tests skip with one line saying why, and nothing
is made. Runs in the plain suite (no namespaces: the commands are fakes on PATH)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from tests.cluster.conftest import rig_or_skip
from tests.cluster.rig import RigUnavailable, cluster, probe, unavailable

REFUSED = "mount --make-shared /run/netns failed: Operation not permitted"


@pytest.fixture
def fake_bin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A PATH of fakes only: `ip` refuses every call (and logs it), the other commands the rig
    looks for exist; this Python has a `ray` beside it; the process runs as root."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "ip-calls"
    scripts = {"ip": f'echo "$*" >> {calls}\necho "{REFUSED}" >&2\nexit 1\n',
               "unshare": "exit 0\n", "nsenter": "exit 0\n", "redis-server": "exit 0\n",
               "ray": "exit 0\n", "python": "exit 0\n"}
    for name, body in scripts.items():
        (bin_dir / name).write_text("#!/bin/sh\n" + body)
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setattr(sys, "executable", str(bin_dir / "python"))
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    return calls


def test_namespaces_refused_is_one_line_naming_why(fake_bin: Path) -> None:
    why = probe()
    assert why == f"network namespaces not permitted: {REFUSED}"
    assert unavailable() == why
    assert fake_bin.read_text().split()[:2] == ["netns", "add"]


def test_the_fixture_skips_with_that_line_and_makes_nothing(fake_bin: Path) -> None:
    with pytest.raises(pytest.skip.Exception) as skipped, rig_or_skip():
        pytest.fail("the rig came up with `ip` refusing every call")
    assert str(skipped.value) == f"cluster rig: network namespaces not permitted: {REFUSED}"
    assert "\n" not in str(skipped.value)
    # Only the probe's one `ip netns add` ran: no bridge, no veth, no namespace was attempted.
    assert len(fake_bin.read_text().splitlines()) == 1
    with pytest.raises(RigUnavailable, match="network namespaces not permitted"), cluster():
        pass


def test_not_root_and_missing_commands_are_named(fake_bin: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    (Path(sys.executable).parent / "redis-server").unlink()
    (Path(sys.executable).parent / "ray").unlink()
    assert unavailable() == "redis-server, ray (beside python) not installed"
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert unavailable() == "network namespaces need root"
    assert not fake_bin.exists()  # neither check reached `ip`


def test_a_rig_of_unknown_hosts_is_refused_before_anything_is_made(fake_bin: Path) -> None:
    with pytest.raises(ValueError, match="hosts must include head"), \
            cluster(hosts=("worker1", "gpu9")):
        pass
    assert not fake_bin.exists()
