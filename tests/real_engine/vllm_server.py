"""vLLM's own OpenAI-compatible server on loopback, as a subprocess (tests and benchmarks)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

STRUCTURED = '{"backend": "guidance", "disable_any_whitespace": true}'
"""The server's structured-output settings: only the engine-level setting counts."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(model: str | Path, port: int, log: Path, *, name: str = "tiny",
                 max_model_len: int = 2048, wait: float = 900) -> subprocess.Popen[bytes]:
    """Start ``python -m vllm.entrypoints.openai.api_server`` with dummy weights; returns once
    ``/health`` answers (raises if the server exits or does not come up within ``wait`` s)."""
    cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model),
           "--host", "127.0.0.1", "--port", str(port), "--served-model-name", name,
           "--load-format", "dummy", "--max-model-len", str(max_model_len), "--seed", "0",
           "--no-enable-chunked-prefill", "--structured-outputs-config", STRUCTURED]
    shm = _shared_memory()
    # A session of its own: the API server, its engine core and the engine's workers are one
    # process group, which stop() ends whole (killing the API server alone orphans the engine
    # core, which keeps its memory and its /dev/shm buffers).
    proc = subprocess.Popen(cmd, stdout=log.open("wb"), stderr=subprocess.STDOUT,
                            start_new_session=True)
    _SHM_BEFORE[proc.pid] = shm
    return wait_healthy(proc, port, log, wait)


SHM = Path("/dev/shm")
_SHM_BEFORE: dict[int, set[str]] = {}
"""Server pid -> the names in /dev/shm before it started."""


def _shared_memory() -> set[str]:
    """The names in /dev/shm: the engine's buffers (``psm_*``) and semaphores (``sem.*``)."""
    try:
        return {p.name for p in SHM.iterdir()}
    except OSError:
        return set()


def _group_runs(pgid: int) -> bool:
    """A process of group ``pgid`` still runs (zombies do not count)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid and fields[0] != "Z":
                return True
    return False


def _mapped(names: set[str]) -> set[str]:
    """Those of ``names`` some live process still maps."""
    held: set[str] = set()
    for maps in Path("/proc").glob("[0-9]*/maps"):
        with contextlib.suppress(OSError):
            text = maps.read_text()
            held |= {n for n in names if n in text}
    return held


def wait_healthy(proc: subprocess.Popen[bytes], port: int, log: Path,
                 wait: float = 900) -> subprocess.Popen[bytes]:
    """``proc`` once its ``/health`` answers on loopback ``port`` (raises, the server stopped,
    if it exits or does not come up within ``wait`` s)."""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"vLLM server exited with {proc.returncode}; see {log}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                return proc
        except OSError:
            time.sleep(1)
    stop(proc)
    raise RuntimeError(f"vLLM server did not answer /health within {wait:.0f} s; see {log}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Terminate the server (kill after 30 s), then whatever is left of its process group (an
    engine core whose API server was killed), and the shared-memory files it left that no
    process maps any more (a killed engine cannot remove them)."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while _group_runs(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.1)  # SIGKILL is delivered; the members need a moment to go
    before = _SHM_BEFORE.pop(proc.pid, None)
    if before is not None:
        left = _shared_memory() - before
        for name in left - _mapped(left):
            with contextlib.suppress(OSError):
                (SHM / name).unlink()
