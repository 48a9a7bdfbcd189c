"""The viewer's HTTP server: the page and its scripts from the package, and a small JSON API
over :class:`~pluralign.jobs.view.data.ViewData`. Standard library only (no extra to install).

On loopback by default; beyond it a bearer token is required (``$PLURALIGN_SERVE_TOKEN`` or a
token file, as ``pluralign serve``): the page is opened once as ``/?token=...``, which sets a
same-site cookie and drops the token from the address. Without a token only loopback Host
headers are answered, so a web page elsewhere cannot reach the viewer by rebinding a name.
"""

from __future__ import annotations

import hmac
import json
import sys
import threading
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from pluralign.engine.errors import PluralignError
from pluralign.jobs.serve.http import check_bind
from pluralign.jobs.view import static_files
from pluralign.jobs.view.data import ViewData

COOKIE = "pluralign_view"
_LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1", "[::1]")


class Api:
    """Routes of the JSON API: path -> function of the query parameters."""

    def __init__(self, data: ViewData) -> None:
        self.data = data
        self.routes: dict[str, Callable[[Mapping[str, str]], Any]] = {
            "/api/runs": lambda q: data.runs_info(),
            "/api/align": lambda q: data.align(q.get("run", "0"), q.get("target")),
            "/api/table": lambda q: data.table(q.get("run", "0"), q.get("set"), q.get("k"),
                                               q.get("attribute")),
            "/api/search": lambda q: data.search_text(q.get("run", "0")),
            "/api/scenario": lambda q: data.scenario(q.get("run", "0"), q.get("id")),
            "/api/compare": lambda q: data.compare(q.get("a", "0"), q.get("b", "1"),
                                                   q.get("target")),
        }


def make_handler(api: Api | None, token: str | None,
                 files: dict[str, tuple[bytes, str]]) -> type[BaseHTTPRequestHandler]:
    """The request handler class of one server (``api`` None: the page alone)."""

    class Handler(BaseHTTPRequestHandler):
        server_version = "pluralign-view"

        def log_message(self, format: str, *args: Any) -> None:  # quiet: no access log
            return

        def _send(self, status: int, body: bytes, kind: str,
                  headers: Mapping[str, str] | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-Content-Type-Options", "nosniff")
            self.send_header("Content-Security-Policy",
                             "default-src 'self'; img-src 'self' data:; style-src 'self'")
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _json(self, status: int, obj: object) -> None:
            self._send(status, json.dumps(obj, allow_nan=False).encode(),
                       "application/json; charset=utf-8")

        def _allowed(self, query: Mapping[str, str]) -> bool | str:
            """True, False, or the token to set as a cookie (given as ?token=)."""
            if token is None:
                host = (self.headers.get("Host") or "").rsplit(":", 1)[0]
                return host in _LOOPBACK_NAMES
            given = query.get("token")
            if given and hmac.compare_digest(given.encode(), token.encode()):
                return given
            auth = self.headers.get("Authorization") or ""
            if auth.startswith("Bearer ") and hmac.compare_digest(
                    auth.removeprefix("Bearer ").strip().encode(), token.encode()):
                return True
            for part in (self.headers.get("Cookie") or "").split(";"):
                name, _, value = part.strip().partition("=")
                if name == COOKIE and hmac.compare_digest(value.encode(), token.encode()):
                    return True
            return False

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            query = {k: v[-1] for k, v in parse_qs(url.query).items()}
            allowed = self._allowed(query)
            if allowed is False and token is None:
                self._json(403, {"error": "this viewer answers loopback host names only"})
                return
            if allowed is False:
                self._json(401, {"error": "missing or wrong token (open /?token=... once, or "
                                          "send Authorization: Bearer ...)"})
                return
            if isinstance(allowed, str):
                self._send(303, b"", "text/plain", {
                    "Location": url.path or "/",
                    "Set-Cookie": f"{COOKIE}={allowed}; HttpOnly; SameSite=Strict; Path=/"})
                return
            if url.path in files:
                self._send(200, *files[url.path])
                return
            route = api.routes.get(url.path) if api is not None else None
            if route is None:
                self._json(404, {"error": f"no route GET {url.path[:80]}"})
                return
            try:
                self._json(200, route(query))
            except PluralignError as e:
                self._json(400, {"error": str(e).splitlines()[0]})
            except Exception as e:  # one bad request never stops the viewer
                print(f"pluralign view: internal error {type(e).__name__}: {str(e)[:200]}",
                      file=sys.stderr, flush=True)
                self._json(500, {"error": f"internal error ({type(e).__name__})"})

        do_HEAD = do_GET

    return Handler


def start(data: ViewData, host: str = "127.0.0.1", port: int = 0,
          token: str | None = None) -> tuple[ThreadingHTTPServer, str]:
    """Start serving in a daemon thread; returns the server and its URL (port 0: any free
    port). Stop it with ``server.shutdown()``."""
    check_bind(host, token)
    try:
        server = ThreadingHTTPServer((host, port), make_handler(Api(data), token, static_files()))
    except OSError as e:
        raise PluralignError(f"cannot serve on {host}:{port} ({e.strerror})") from None
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="pluralign-view", daemon=True).start()
    shown = f"[{host}]" if ":" in host else host
    return server, f"http://{shown}:{server.server_address[1]}/"
