"""A full disk loses no paid answer: real sweeps into a 3 MB tmpfs cache.

Each test mounts a tmpfs (skipped, with one line, where mounting is not permitted), fills it
with a ballast file until about as much is free as in the red-team runs (432 KB, 900 KB,
1.4 MB), and runs a real ``pluralign sweep`` subprocess against the fake OpenAI server, which
counts every paid answer. Every paid answer must be in the cache; the run ends with one line
naming the folder, its free space and the answers stored, a summary marked incomplete, exit 2;
no claim is left; after the ballast is removed a rerun buys nothing twice. A claims file where
the claims folder goes is refused in one line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pyarrow.compute as pc
import pytest

from pluralign.actors.testing.fake_server import FakeOpenAIServer
from pluralign.engine.store.cache import SCORE_LAYOUT
from pluralign.engine.store.parts import PartStore
from tests.fake_openai import FAKE_KEY, FAKE_KEY_ENV, make_fake_server

__all__ = ["make_fake_server"]

SCENARIOS = 2000
ITEMS = SCENARIOS * 2
"""Comparative items: one per scenario and attribute (about 1.7 MB of parts in all)."""
FREE = {"432K": 432 * 1024, "900K": 900 * 1024, "1.4M": 1400 * 1024}


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A fresh 3 MB tmpfs, unmounted at teardown."""
    mount = tmp_path / "tmpfs"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip() or done.returncode}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def sweep(url: str, cache: Path, out: Path) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "pluralign", "sweep", "--benchmark",
           f"synthetic:S={SCENARIOS},A=2,L=3", "--scorer", "comparative-regression",
           "--zero-shot", "--targets", "all", "--backend", "openai", "--base-url", url,
           "--model", "fake", "--api-key-env", FAKE_KEY_ENV, "--cache", str(cache),
           "--out", str(out), "--no-ray"]
    env = {**os.environ, FAKE_KEY_ENV: FAKE_KEY, "PLURALIGN_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)


def fill(mount: Path, free: int) -> Path:
    """A ballast file leaving about ``free`` bytes free on ``mount``."""
    st = os.statvfs(mount)
    ballast = mount / "ballast"
    ballast.write_bytes(b"\0" * max(0, st.f_bavail * st.f_frsize - free))
    return ballast


def stored_items(cache: Path) -> int:
    """(scenario, attribute) items with a stored answer."""
    ok, _ = PartStore(cache, SCORE_LAYOUT).resolve()
    pairs = pc.binary_join_element_wise(ok["scenario"], ok["attribute"], "\x1f")
    return len(set(pairs.to_pylist()))


def paid(server: FakeOpenAIServer) -> Counter[str]:
    return Counter(server.stats()["ok_by_fingerprint"])


@pytest.mark.slow
@pytest.mark.parametrize("level", list(FREE))
def test_a_full_disk_loses_no_paid_answer(level: str, tmpfs: Path, tmp_path: Path,
                                          make_fake_server: Callable[..., FakeOpenAIServer]
                                          ) -> None:
    server = make_fake_server()
    ballast = fill(tmpfs, FREE[level])
    cache = tmpfs / "cache"
    first = sweep(server.url, cache, tmp_path / "out")
    bought = paid(server)
    stored = stored_items(cache)
    last = first.stderr.strip().splitlines()[-1]
    print(f"\n{level} free: paid {sum(bought.values())}, stored {stored}, lost "
          f"{sum(bought.values()) - stored}, exit {first.returncode}\n  {last}")
    assert first.returncode == 2, first.stderr[-3000:]
    assert sum(bought.values()) == stored > 0 and max(bought.values()) == 1  # 0 lost
    assert last.startswith("error: ") and "disk full: " in last and str(cache) in last
    assert " free" in last and f"{stored} answers stored this run" in last
    assert "0 paid answers could not be stored" in last and "Traceback" not in first.stderr
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["state"] == "incomplete" and summary["scoring"]["stop_kind"] == "disk"
    assert summary["missing_items"] == ITEMS - stored
    assert not list((cache / ".claims").iterdir())  # no claim left, no owner file
    if level != "1.4M":
        return  # one rerun is enough for the suite (benchmarks/disk_full.py reruns each)
    ballast.unlink()
    server.reset()
    rerun = sweep(server.url, cache, tmp_path / "rerun")
    again = paid(server)
    print(f"  rerun: paid {sum(again.values())}, paid twice {len(set(again) & set(bought))}")
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert not set(again) & set(bought) and sum(again.values()) == ITEMS - stored


def test_a_claims_file_where_the_folder_goes_is_one_line(
        tmp_path: Path, make_fake_server: Callable[..., FakeOpenAIServer]) -> None:
    server = make_fake_server()
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / ".claims").write_text("in the way")
    done = sweep(server.url, cache, tmp_path / "out")
    lines = done.stderr.strip().splitlines()
    print(f"\n.claims file: exit {done.returncode}: {lines[-1]}")
    assert done.returncode == 2 and len(lines) == 1 and server.stats()["total"] == 0
    assert lines[0] == (f"error: {cache / '.claims'}: is a file, but pluralign keeps the claims "
                        "of running jobs in a folder of this name (remove or rename the file, "
                        "then rerun)")
