"""One JSON-over-HTTP call for the tests of ``pluralign serve`` (local and Ray Serve): the
status and the decoded body, error statuses included; and the local service's application
served on loopback in a thread."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any


def call_json(url: str, body: Any = None, *, token: str | None = None,
              raw: bytes | None = None, timeout: float = 30) -> tuple[int, dict[str, Any]]:
    """POST ``body`` as JSON (or the bytes ``raw``) to ``url``, GET when neither is given;
    ``token`` goes in a bearer Authorization header."""
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    req = urllib.request.Request(url, data=data, method="POST" if data else "GET")
    req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


@contextlib.contextmanager
def serving(app: Any, *, log_level: str = "warning") -> Iterator[int]:
    """``app`` (an ASGI application) served by uvicorn on a free loopback port, in a thread of
    this process, until the block ends; yields the port once the server listens."""
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level=log_level, access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline and thread.is_alive():
        time.sleep(0.05)
    assert server.started, "the server did not start"
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(timeout=10)
