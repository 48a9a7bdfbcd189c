"""One JSON-over-HTTP call for the tests of ``pluralign serve`` (local and Ray Serve): the
status and the decoded body, error statuses included."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
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
