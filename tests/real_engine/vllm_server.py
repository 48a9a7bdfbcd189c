"""vLLM's own OpenAI-compatible server on loopback, as a subprocess (tests and benchmarks)."""

from __future__ import annotations

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
    proc = subprocess.Popen(cmd, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    return wait_healthy(proc, port, log, wait)


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
    """Terminate the server (kill after 30 s)."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
