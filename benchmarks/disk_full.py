"""A full disk must lose no paid answer: sweeps into a 3 MB tmpfs cache at three fill levels.

For each level the tmpfs is filled with a ballast file until that much space is free, then a
real ``pluralign sweep`` subprocess sends every item to the fake OpenAI server (which counts
every paid answer). Afterwards the ballast is removed and the sweep rerun on the same cache.
Printed per level: answers paid, answers stored, lost (paid and never stored: must be 0), the
first run's exit code and last line, the rerun's paid answers and how many of them the first
run had paid already (bought twice: must be 0), and leftover claim files.

A fourth run, ``squeeze``, starts with 1.4 MB free; once the first part is written another
writer takes every free byte for five seconds, then gives it back: the margin cannot help
there, so the answers that find no room must be held in memory and stored once room returns.

Needs root (it mounts a tmpfs). Run: ``python benchmarks/disk_full.py [--scenarios 2500]``.
The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import pyarrow.compute as pc

from pluralign.actors.testing.fake_server import FakeOpenAIServer
from pluralign.engine.store.cache import SCORE_LAYOUT
from pluralign.engine.store.parts import PartStore

KEY_ENV = "PLURALIGN_BENCH_API_KEY"
LEVELS = {"432K": 432 * 1024, "900K": 900 * 1024, "1.4M": 1400 * 1024, "squeeze": 1400 * 1024}


def free_bytes(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def fill_to(mount: Path, free: int) -> Path:
    """A ballast file leaving about ``free`` bytes free on ``mount``."""
    ballast = mount / "ballast"
    size = max(0, free_bytes(mount) - free)
    with open(ballast, "wb") as fh:
        fh.write(b"\0" * size)
    return ballast


def squeeze(mount: Path, cache: Path, seconds: float, done: threading.Event) -> None:
    """Once the sweep wrote its first part, take every free byte for ``seconds``."""
    while not done.is_set() and not list(cache.glob("part-*.parquet")):
        time.sleep(0.05)
    hog = mount / "hog"
    fd = os.open(hog, os.O_CREAT | os.O_WRONLY, 0o644)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError:
        pass  # the disk is full now
    finally:
        os.close(fd)
    time.sleep(seconds)
    hog.unlink()


def sweep(url: str, cache: Path, out: Path, scenarios: int) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "pluralign", "sweep", "--benchmark",
           f"synthetic:S={scenarios},A=2,L=3", "--scorer", "comparative-regression",
           "--zero-shot", "--targets", "all", "--backend", "openai", "--base-url", url,
           "--model", "fake", "--api-key-env", KEY_ENV, "--cache", str(cache),
           "--out", str(out), "--no-ray"]
    env = {**os.environ, KEY_ENV: "sk-bench", "PLURALIGN_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)


def stored_items(cache: Path) -> int:
    """Items (scenario, attribute) with a stored success: what was paid and kept."""
    ok, _ = PartStore(cache, SCORE_LAYOUT).resolve()
    if ok.num_rows == 0:
        return 0
    pairs = pc.binary_join_element_wise(ok["scenario"], ok["attribute"], "\x1f")
    return len(set(pairs.to_pylist()))


def one_level(name: str, free: int, work: Path, scenarios: int) -> dict[str, object]:
    mount = work / f"tmpfs-{name}"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)], check=True)
    try:
        ballast = fill_to(mount, free)
        cache = mount / "cache"
        with FakeOpenAIServer() as server:
            done = threading.Event()
            hog = threading.Thread(target=squeeze, args=(mount, cache, 5.0, done))
            if name == "squeeze":
                hog.start()
            first = sweep(server.url, cache, work / f"out-{name}", scenarios)
            done.set()
            if hog.is_alive():
                hog.join()
            paid_first = Counter(server.stats()["ok_by_fingerprint"])
            stored = stored_items(cache)
            claims = len(list((cache / ".claims").glob("*"))) if (cache / ".claims").is_dir() else 0
            ballast.unlink()
            server.reset()
            rerun = sweep(server.url, cache, work / f"rerun-{name}", scenarios)
            paid_rerun = Counter(server.stats()["ok_by_fingerprint"])
        paid = sum(paid_first.values())
        lines = first.stderr.strip().splitlines() or [""]
        last = lines[-1]
        held = [ln for ln in lines if "held" in ln or "waiting up to" in ln]
        return {
            "level": name, "free_kib": free // 1024, "paid": paid, "stored": stored,
            "lost": paid - stored, "exit": first.returncode, "last_line": last,
            "claim_files_left": claims, "rerun_exit": rerun.returncode,
            "rerun_paid": sum(paid_rerun.values()),
            "rerun_paid_twice": len(set(paid_rerun) & set(paid_first)),
            "held_lines": held,
        }
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenarios", type=int, default=2500)
    ap.add_argument("--levels", nargs="*", default=list(LEVELS), choices=list(LEVELS))
    args = ap.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.levels:
            r = one_level(name, LEVELS[name], Path(tmp), args.scenarios)
            results.append(r)
            print(f"{name} free: paid {r['paid']}, stored {r['stored']}, lost {r['lost']}, "
                  f"exit {r['exit']}, claims left {r['claim_files_left']}; rerun paid "
                  f"{r['rerun_paid']} (twice {r['rerun_paid_twice']}), exit {r['rerun_exit']}\n"
                  f"  last line: {r['last_line']}", flush=True)
            for line in r["held_lines"]:
                print(f"  {line}", flush=True)
    print(json.dumps({"scenarios": args.scenarios, "levels": results}))


if __name__ == "__main__":
    main()
