"""kill -9 of a batch-lane sweep at each step (uploading, creating, in progress, downloading),
then a rerun on the same cache: it reattaches, every item ends up scored, one batch was ever
created and no item was processed (billed) twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from pluralign.actors.testing.batch_server import FakeBatchServer
from pluralign.engine.store.cache import ScoreCache
from tests.fake_openai import FAKE_KEY, FAKE_KEY_ENV

BENCH = "synthetic:S=12,A=2,L=3"


def sweep(url: str, tmp_path: Path) -> list[str]:
    return [sys.executable, "-m", "pluralign", "sweep", "--benchmark", BENCH,
            "--scorer", "regression", "--zero-shot", "--targets", "all",
            "--backend", "openai", "--base-url", url, "--model", "fake",
            "--api-key-env", FAKE_KEY_ENV, "--cache", str(tmp_path / "cache"),
            "--out", str(tmp_path / "out"), "--no-ray", "--lane", "batch",
            "--batch-poll-seconds", "0.05"]


def env() -> dict[str, str]:
    return {**os.environ, FAKE_KEY_ENV: FAKE_KEY, "PLURALIGN_OFFLINE": "1",
            "OMP_NUM_THREADS": "1"}


def kill_when(proc: subprocess.Popen[bytes], ready: Callable[[], bool],
              timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        assert proc.poll() is None, "the sweep ended before the step to kill it at"
        assert time.monotonic() < deadline, "the sweep never reached the step"
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


STAGES: dict[str, tuple[dict[str, object], Callable[[FakeBatchServer], bool]]] = {
    "uploading": ({"hold": {"upload": 30.0}},
                  lambda s: any(f["purpose"] == "batch" for f in list(s.files.values()))),
    "creating": ({"hold": {"create": 30.0}}, lambda s: s.created >= 1),
    "in_progress": ({"in_progress_s": 30.0},
                    lambda s: any(b.status == "in_progress" for b in list(s.batches.values()))),
    "downloading": ({"hold": {"content": 30.0}}, lambda s: sum(s.downloads.values()) >= 1),
}


@pytest.mark.slow
@pytest.mark.parametrize("stage", list(STAGES))
def test_kill_9_then_rerun_reattaches_and_never_pays_twice(stage: str, tmp_path: Path) -> None:
    settings, ready = STAGES[stage]
    with FakeBatchServer(**settings) as server:  # type: ignore[arg-type]
        log = open(tmp_path / "first.log", "wb")  # noqa: SIM115 - closed below
        proc = subprocess.Popen(sweep(server.url, tmp_path), env=env(), stdout=log,
                                stderr=subprocess.STDOUT)
        kill_when(proc, lambda: ready(server))
        log.close()
        server.config.hold = {}
        server.config.in_progress_s = 0.2
        rerun = subprocess.run(sweep(server.url, tmp_path), env=env(), capture_output=True,
                               text=True, timeout=120)
        assert rerun.returncode == 0, rerun.stdout[-2000:] + rerun.stderr[-2000:]
        assert server.created == 1, f"{server.created} batches created"
        assert max(server.processed.values()) == 1  # no item billed twice
        if stage != "uploading":
            assert "reattaching" in rerun.stderr
    assert (tmp_path / "out" / "summary.json").is_file()
    assert len(ScoreCache(tmp_path / "cache").completed_keys()) > 0


@pytest.mark.slow
def test_ctrl_c_leaves_batches_running_and_says_how_to_reattach(tmp_path: Path) -> None:
    with FakeBatchServer(in_progress_s=30.0) as server:
        proc = subprocess.Popen(sweep(server.url, tmp_path), env=env(), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while not any(b.status == "in_progress" for b in list(server.batches.values())):
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.01)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 130, err[-2000:]
        assert "left running at the provider" in err and "--cancel-batches" in err
        assert [b.status for b in server.batches.values()] == ["in_progress"]
        # --cancel-batches cancels it and keeps what it had finished; nothing new is sent.
        server.config.in_progress_s = 60.0
        cancel = subprocess.run([*sweep(server.url, tmp_path), "--cancel-batches"], env=env(),
                                capture_output=True, text=True, timeout=120)
        assert "cancelling" in cancel.stderr, cancel.stderr[-2000:]
        assert [b.status for b in server.batches.values()] == ["cancelled"]
        assert server.created == 1
        # A plain rerun sends the rest, and only the rest.
        server.config.in_progress_s = 0.2
        rerun = subprocess.run(sweep(server.url, tmp_path), env=env(), capture_output=True,
                               text=True, timeout=120)
        assert rerun.returncode == 0, rerun.stderr[-2000:]
        assert max(server.answered.values()) == 1
