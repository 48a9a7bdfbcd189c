"""Fixtures other test packages can import: the fake OpenAI server and a real redis-server.

Use from a conftest: ``from tests.fake_openai import fake_server, make_fake_server, redis_url``.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pluralign.actors.testing.fake_server import FakeOpenAIServer

FAKE_KEY_ENV = "PLURALIGN_TEST_API_KEY"
FAKE_KEY = "sk-test-0123456789abcdef-planted"


def free_port() -> int:
    """A free TCP port on loopback, never 6379 (Ray's redis)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port != 6379:
            return port


@pytest.fixture
def fake_key(monkeypatch: pytest.MonkeyPatch) -> str:
    """Puts a planted key in ``PLURALIGN_TEST_API_KEY`` (use api_key_env=FAKE_KEY_ENV)."""
    monkeypatch.setenv(FAKE_KEY_ENV, FAKE_KEY)
    return FAKE_KEY


@pytest.fixture
def make_fake_server() -> Iterator[Callable[..., FakeOpenAIServer]]:
    """Factory: ``make_fake_server(rpm=..., fault_5xx=...)`` starts one on 127.0.0.1 in a thread;
    all are stopped at teardown."""
    servers: list[FakeOpenAIServer] = []

    def make(**config: Any) -> FakeOpenAIServer:
        server = FakeOpenAIServer(**config).start_in_thread()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop_thread()


@pytest.fixture
def fake_server(make_fake_server: Callable[..., FakeOpenAIServer]) -> FakeOpenAIServer:
    """A fake server with default behaviour (no faults, no limit, auth required)."""
    return make_fake_server()


def start_redis(workdir: Path, port: int | None = None) -> tuple[subprocess.Popen[bytes], str]:
    """Start redis-server on ``port`` (default: a free one) on loopback, with its files in
    ``workdir``; returns once it answers PING."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server not installed")
    port = free_port() if port is None else port
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(workdir),
         "--save", "", "--appendonly", "no", "--daemonize", "no", "--loglevel", "warning"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2) as s:
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    return proc, f"redis://127.0.0.1:{port}/0"
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("redis-server did not come up")


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    """A real redis-server for this test (not on 6379); stopped afterwards."""
    proc, url = start_redis(tmp_path)
    try:
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
