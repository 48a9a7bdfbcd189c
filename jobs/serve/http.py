"""HTTP front of the query service: one request handler, served locally by uvicorn (the
ASGI server Ray Serve itself ships) or on a cluster by the Ray Serve deployment in
:mod:`pluralign.jobs.serve.ray_serve`.

Routes: ``POST /v1/align``, ``GET /v1/scorers``, ``GET /healthz``, ``GET /openapi.json``
(the OpenAPI description), and ``GET /`` (with
``/static/*``): the page of ``pluralign view``, which over a service lists its scorers and
re-aligns targets through ``/v1/align``. Answers are JSON; errors
are ``{"error": "<one line>"}`` with 400 (bad input, naming the field), 401 (missing or wrong
bearer token, checked before the body is read), 404 (not cached, no such data, unknown route),
408 (body not sent within the deadline), 413 (body, targets or synthetic size beyond the
limits).
"""

from __future__ import annotations

import gc
import hmac
import json
import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from pluralign.engine.errors import DataNotFoundError, PluralignError
from pluralign.engine.run.hosts import is_loopback
from pluralign.jobs.serve.asgi import ServiceApp
from pluralign.jobs.serve.openapi import openapi
from pluralign.jobs.serve.query import Answer, ErrorAnswer, NotReady, QueryService, status_of
from pluralign.jobs.view import static_files

if TYPE_CHECKING:  # starlette and uvicorn are optional: imported where a server starts
    from starlette.requests import Request
    from starlette.responses import JSONResponse

TOKEN_ENV = "PLURALIGN_SERVE_TOKEN"
PUBLIC = ("/healthz", "/openapi.json")
"""Routes answered to GET without a token: they hold no data."""


def load_token(token_file: str | None, *, env: str = TOKEN_ENV) -> str | None:
    """The bearer token: from ``token_file`` when given, else the environment variable
    ``env`` (``$PLURALIGN_SERVE_TOKEN``)."""
    if token_file:
        try:
            token = Path(token_file).read_text(encoding="utf-8").strip()
        except OSError as e:
            raise PluralignError(f"{token_file}: cannot read the token file ({e.strerror})"
                                 ) from None
        if not token:
            raise PluralignError(f"{token_file}: the token file is empty")
        return token
    return os.environ.get(env) or None


def check_bind(host: str, token: str | None, *, env: str = TOKEN_ENV) -> None:
    """Refuse to listen beyond loopback without a token."""
    if not is_loopback(host) and not token:
        raise PluralignError(
            f"refusing to serve on {host} (beyond loopback) without a bearer token: set "
            f"{env} or pass `token_file`")


def _error(status: int, message: str) -> tuple[int, ErrorAnswer]:
    return status, ErrorAnswer(error=message)


def admit(token: str | None, method: str, path: str,
          authorization: str | None) -> tuple[int, ErrorAnswer] | None:
    """The refusal of a request by its line and headers alone (unknown route, missing or
    wrong token), before any of its body is read; None when it may go on."""
    if method == "GET" and path in static_files():  # the page holds no data: no token
        return None
    path = path.rstrip("/") or "/"
    if path in PUBLIC and method == "GET":
        return None
    if path not in ("/v1/align", "/v1/scorers"):
        return _error(404, f"no route {method} {path[:80]}")
    if token is not None:
        given = (authorization or "").removeprefix("Bearer ").strip()
        if not (authorization or "").startswith("Bearer ") or not hmac.compare_digest(
                given.encode(), token.encode()):
            return _error(401, "missing or wrong bearer token (Authorization: Bearer ...)")
    return None


def handle(service: QueryService, token: str | None, method: str, path: str,
           authorization: str | None, body: bytes | None) -> tuple[int, Answer]:
    """(status, JSON object) for one request; never raises."""
    answer = _handle(service, token, method, path, authorization, body, ready_only=False)
    assert answer is not None
    return answer


def handle_ready(service: QueryService, token: str | None, method: str, path: str,
                 authorization: str | None, body: bytes | None) -> tuple[int, Answer] | None:
    """:func:`handle` of a query whose answer is small and needs nothing loaded (the same
    status and object); None for any other request, to be answered by :func:`handle` (in a
    worker thread). Never raises."""
    return _handle(service, token, method, path, authorization, body, ready_only=True)


def _handle(service: QueryService, token: str | None, method: str, path: str,
            authorization: str | None, body: bytes | None, *, ready_only: bool
            ) -> tuple[int, Answer] | None:
    refused = admit(token, method, path, authorization)
    if refused is not None:
        return refused
    path = path.rstrip("/") or "/"
    if ready_only and (path != "/v1/align" or method != "POST"):
        return None
    if path == "/healthz":
        return 200, service.health()
    if path == "/openapi.json":
        return 200, openapi(service.limits)
    try:
        if path == "/v1/scorers":
            if method != "GET":
                return _error(405, f"{path} takes GET")
            return 200, service.scorers()
        if method != "POST":
            return _error(405, f"{path} takes POST")
        if body is None or len(body) > service.limits.max_body:
            return _error(413, f"request body over {service.limits.max_body} bytes")
        try:
            parsed: object = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            return _error(400, f"body: not JSON ({e})")
        except RecursionError:
            return _error(400, "body: JSON nested too deeply")
        return 200, service.align(parsed, ready_only=ready_only)
    except NotReady:
        return None
    except DataNotFoundError:  # its text names folders of this host: say only what is missing
        return _error(404, "this service has no data for that benchmark and split")
    except PluralignError as e:
        return _error(status_of(e), str(e).splitlines()[0])
    except Exception as e:  # one bad request never stops the service
        print(f"pluralign serve: internal error {type(e).__name__}: {str(e)[:200]}",
              file=sys.stderr, flush=True)
        return _error(500, f"internal error ({type(e).__name__})")


async def read_body(request: Request, limit: int) -> bytes | None:
    """The body of a starlette request, or None once it grows past ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)



async def respond(service: QueryService, token: str | None, request: Request) -> JSONResponse:
    """A starlette response to a starlette request (shared by uvicorn and Ray Serve)."""
    import anyio
    import anyio.to_thread
    from starlette.responses import JSONResponse

    refused = admit(token, request.method, request.url.path,
                    request.headers.get("authorization"))
    if refused is not None:  # refused before a byte of the body is read
        return JSONResponse(refused[1], status_code=refused[0])
    if request.method == "GET" and request.url.path in static_files():  # pluralign view's page
        from starlette.responses import Response

        content, kind = static_files()[request.url.path]
        return Response(content, headers={"Content-Type": kind})  # type: ignore[return-value]
    body = None
    if request.method == "POST":
        try:
            with anyio.fail_after(service.limits.body_seconds):
                body = await read_body(request, service.limits.max_body)
        except TimeoutError:
            return JSONResponse(ErrorAnswer(error=f"request body not received within "
                                                  f"{service.limits.body_seconds:g} s"),
                                status_code=408, headers={"Connection": "close"})
    status, obj = await anyio.to_thread.run_sync(
        handle, service, token, request.method, request.url.path,
        request.headers.get("authorization"), body)
    return JSONResponse(obj, status_code=status)


def make_app(service: QueryService, token: str | None) -> ServiceApp:
    """The ASGI application for a local server: :func:`admit` and :func:`handle` on plain
    ASGI, repeated queries answered from their encoded answers, small ones that need nothing
    loaded computed in the event loop (:func:`handle_ready`; jobs/serve/asgi.py)."""
    return ServiceApp(service, token, admit=admit, handle=handle, handle_ready=handle_ready)


def serve_local(service: QueryService, token: str | None, host: str, port: int, *,
                stop: threading.Event | None = None,
                on_ready: Callable[[str], None] | None = None) -> None:
    """Serve in this process until ``stop`` is set (or a KeyboardInterrupt reaches the calling
    thread); ``on_ready`` gets the URL once the server listens. The server runs in a thread of
    its own, so neither uvicorn nor asyncio installs signal handlers; a server that cannot
    start (the port taken) raises :class:`PluralignError`."""
    import uvicorn

    check_bind(host, token)
    stop = stop or threading.Event()
    url = f"http://{host}:{port}"
    print(f"pluralign serve: {url} (cache {service.cache.root}, "
          f"{'token required' if token else 'no token: loopback only'})",
          file=sys.stderr, flush=True)
    # No proxy-header rewriting, Server or Date header: per-request work nobody here reads.
    server = uvicorn.Server(uvicorn.Config(make_app(service, token), host=host, port=port,
                                           log_level="warning", access_log=False,
                                           proxy_headers=False, server_header=False,
                                           date_header=False))
    # What start-up left (modules, numba's and pyarrow's objects) lives as long as the process:
    # kept out of the collector's full passes, which then walk a fraction of the heap (a
    # pass during a burst stalled every query in flight for ~50 ms, ~10 ms after this). Undone
    # when the server stops: a caller serving from a notebook or script gets its heap back.
    gc.freeze()
    thread = threading.Thread(target=server.run, name="pluralign-serve", daemon=True)
    thread.start()
    try:
        while not server.started and not stop.is_set():
            if not thread.is_alive():
                raise PluralignError(f"cannot serve on {host}:{port} (see the error above)")
            stop.wait(0.05)
        if server.started and on_ready is not None:
            on_ready(url)
        while thread.is_alive() and not stop.wait(0.5):
            pass
    finally:
        server.should_exit = True
        thread.join()
        gc.unfreeze()
