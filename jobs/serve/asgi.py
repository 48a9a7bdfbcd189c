"""The local server's ASGI application: the query service's routes on plain ASGI, with no web
framework in between, and a repeated query answered from the bytes of its earlier answer.

A framework's middleware stack, a thread hop and a cancel scope per request cost more than
the answer itself once predictions and label indexes are in memory (a 32-way burst spent
most of its time in them), so this application reads the request itself, refuses it on its
line and headers (``admit``, before any of the body), answers a query it has answered before
over the same cache parts from its encoded answer (in the event loop), computes a small one
whose pieces are in memory in the event loop too (``handle_ready``: a few targets take tens of
microseconds, less than a thread hop), and any other in a worker thread (``handle``, the same
handler as Ray Serve's); all three come from
:mod:`pluralign.jobs.serve.http`, which builds this application. Routes are one table,
:attr:`ServiceApp.routes`: path -> handler.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from pluralign.jobs.serve.query import LRU, Answer, ErrorAnswer, QueryService
from pluralign.jobs.view import static_files

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Reply = tuple[int, bytes, bytes]
"""Status, body, content type."""
Handler = Callable[["Request"], Awaitable[Reply]]
Admit = Callable[[str | None, str, str, str | None], tuple[int, ErrorAnswer] | None]
"""Refuses a request on its line and headers (token, method, path, Authorization)."""
Handle = Callable[[QueryService, str | None, str, str, str | None, bytes | None],
                  tuple[int, Answer]]
"""Answers a request (service, token, method, path, Authorization, body): never raises."""
HandleReady = Callable[[QueryService, str | None, str, str, str | None, bytes | None],
                       tuple[int, Answer] | None]
"""Answers a small query from what the service keeps in memory, where it arrives; None for
any other request (then ``Handle`` answers it in a worker thread). Never raises."""

JSON = b"application/json"
ANSWERS_BYTES = 64 << 20
"""Encoded answers kept for repeated queries (bytes, LRU)."""
ANSWER_MAX = 1 << 20
"""Larger answers are not kept (a per-scenario answer of many targets)."""
INLINE_BODY = 16 << 10
"""Larger query bodies always go to a worker thread (decoding them is work of its own)."""


_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, indent=None,
                            separators=(",", ":"))
"""One encoder for every answer (``json.dumps`` with options builds one per call)."""


def encode(obj: object) -> bytes:
    """JSON as starlette's JSONResponse writes it (compact, UTF-8, no NaN)."""
    return _ENCODER.encode(obj).encode("utf-8")


class Request:
    """What a handler needs of one HTTP request: method, path, the Authorization header and
    a way to read the body."""

    def __init__(self, scope: Scope, receive: Receive) -> None:
        self.method: str = scope["method"]
        self.path: str = scope["path"]
        self.authorization: str | None = None
        self.content_length: int | None = None
        for name, value in scope.get("headers", ()):
            if name == b"authorization":
                self.authorization = value.decode("latin-1")
            elif name == b"content-length" and value.isdigit():
                self.content_length = int(value)
        self._receive = receive

    async def body(self, limit: int) -> bytes | None:
        """The whole body, or None once it grows past ``limit`` bytes."""
        if self.content_length is not None and self.content_length > limit:
            return None
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)


class ServiceApp:
    """The query service as an ASGI application (served locally by uvicorn)."""

    def __init__(self, service: QueryService, token: str | None, *, admit: Admit,
                 handle: Handle, handle_ready: HandleReady | None = None) -> None:
        self.service = service
        self.token = token
        self.admit, self.handle, self.handle_ready = admit, handle, handle_ready
        self.computed_in_loop = 0
        """Queries answered by ``handle_ready`` (computed in the event loop), for the tests."""
        self.answers: LRU[tuple[bytes, int], bytes] = LRU(
            100_000, weigh=len, max_weight=ANSWERS_BYTES)
        self.static = static_files()
        self.routes: dict[str, Handler] = {"/v1/align": self._align, "/healthz": self._handled,
                                           "/v1/scorers": self._handled,
                                           "/openapi.json": self._handled}
        self.routes.update(dict.fromkeys(self.static, self._static))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        request = Request(scope, receive)
        refused = self.admit(self.token, request.method, request.path, request.authorization)
        if refused is not None:  # refused before a byte of the body is read
            status, body, kind = refused[0], encode(refused[1]), JSON
        else:
            route = self.routes.get(request.path) or self.routes.get(
                request.path.rstrip("/") or "/", self._handled)
            status, body, kind = await route(request)
        await _reply(send, status, body, kind, close=status == 408)

    async def _static(self, request: Request) -> Reply:
        if request.method != "GET":
            return 405, encode(ErrorAnswer(error=f"{request.path} takes GET")), JSON
        content, kind = self.static[request.path]
        return 200, content, kind.encode()

    async def _handled(self, request: Request, body: bytes | None = None) -> Reply:
        """Any route through the shared handler, in a worker thread."""
        status, obj = await asyncio.to_thread(self.handle, self.service, self.token, request.method,
                                              request.path, request.authorization, body)
        return status, encode(obj), JSON

    async def _align(self, request: Request) -> Reply:
        if request.method != "POST":
            return await self._handled(request)
        limits = self.service.limits
        try:
            async with asyncio.timeout(limits.body_seconds):
                body = await request.body(limits.max_body)
        except TimeoutError:
            return 408, encode(ErrorAnswer(error=f"request body not received within "
                                                 f"{limits.body_seconds:g} s")), JSON
        if body is None:
            return await self._handled(request, None)  # 413, worded by the handler
        key = (body, self.service.version())  # before computing: a part added meanwhile
        kept = self.answers.peek(key)  # is read by the next query, not hidden by this one
        if kept is not None:
            return 200, kept, JSON
        ready = None
        if self.handle_ready is not None and len(body) <= INLINE_BODY:
            # A few targets over kept predictions: tens of microseconds, less than the hop to
            # a worker thread and back (and no thread to contend with for the GIL).
            ready = self.handle_ready(self.service, self.token, request.method, request.path,
                                      request.authorization, body)
        if ready is not None:
            self.computed_in_loop += 1
            status, data, kind = ready[0], encode(ready[1]), JSON
        else:
            status, data, kind = await self._handled(request, body)
        if status == 200 and len(data) <= ANSWER_MAX:
            self.answers.put(key, data)
        return status, data, kind


async def _reply(send: Send, status: int, body: bytes, kind: bytes, *, close: bool) -> None:
    headers = [(b"content-type", kind), (b"content-length", str(len(body)).encode())]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
