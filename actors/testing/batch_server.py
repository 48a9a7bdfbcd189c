"""A FAKE provider Batch API for tests (loopback only): OpenAI's files and batches routes and
Anthropic's Message Batches, with the providers' status transitions and failure modes.

OpenAI shape: ``POST /v1/files`` (multipart, purpose ``batch``), ``GET /v1/files/{id}`` and
``/content``, ``POST /v1/batches`` (``validating`` -> ``in_progress`` -> ``finalizing`` ->
``completed``; ``failed`` when the input is invalid or too large; ``expired`` when the window
runs out; ``cancelling`` -> ``cancelled``), ``GET /v1/batches`` (newest first, ``after``
cursor) and ``/v1/batches/{id}``, ``POST /v1/batches/{id}/cancel``. Output and error files are
JSONL by ``custom_id``. Anthropic shape: ``POST /v1/messages/batches`` (``in_progress`` ->
``ended``), ``GET`` it and its ``results`` JSONL. Every request is answered deterministically
from its body (:func:`stable_answerer`), so a batch's answers equal an online server's that uses
the same answerer. It counts each ``custom_id`` it was asked to process (never twice, says the
client's promise), can rate-limit batch creation, and can hold a route's reply for a while so
a test can kill the client at that exact step.
"""

from __future__ import annotations

import asyncio
import json
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from pluralign.actors.testing.fake_server import (
    Answerer,
    approx_tokens,
    check_loopback,
    fingerprint,
    prompt_text,
    request_schema,
    value_for_schema,
)
from pluralign.engine.jsontypes import JSONObject
from pluralign.engine.store.hashing import text_digest


def stable_answerer(seed: int = 0) -> Answerer:
    """A schema walk seeded by the request body: one body, one answer, wherever it is sent."""

    def answer(body: JSONObject) -> str:
        rng = random.Random(f"{seed}:{fingerprint(body)}")
        schema = request_schema(body)
        if schema is None:
            return f"answer {rng.getrandbits(32):08x}"
        return json.dumps(value_for_schema(schema, rng))

    return answer


def completion_body(body: JSONObject, answer: Answerer) -> dict[str, object]:
    """A chat completion for ``body`` (``n`` choices), as the fake online server answers."""
    n = max(1, int(body.get("n") or 1))
    contents = [answer(body) for _ in range(n)]  # as the fake online server answers n
    prompt = approx_tokens(prompt_text(body))
    completion = sum(approx_tokens(t) for t in contents)
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:12]}", "object": "chat.completion",
        "created": int(time.time()), "model": body.get("model", "fake-model"),
        "choices": [{"index": i, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": t}}
                    for i, t in enumerate(contents)],
        "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                  "total_tokens": prompt + completion},
    }


@dataclass
class BatchServerConfig:
    """How the fake batch provider behaves (seconds are wall-clock)."""

    host: str = "127.0.0.1"
    port: int = 0
    validating_s: float = 0.2
    """Time in ``validating``."""
    in_progress_s: float = 0.5
    """Time to work through a batch's requests (spread evenly)."""
    finalizing_s: float = 0.2
    """Time in ``finalizing`` before ``completed``."""
    expire_after_s: float | None = None
    """If set, a batch still in progress this long after creation ``expired``s: requests done
    by then are in the output file, the rest in the error file as ``batch_expired``."""
    fail_share: float = 0.0
    """Share of requests answered with a 500 in the error file (partial failure)."""
    fail_ids: frozenset[str] = frozenset()
    """custom_ids always answered with a 500 in the error file."""
    max_requests: int = 50_000
    """Most requests per batch (OpenAI's limit); more makes the batch ``failed``."""
    max_bytes: int = 200 * 1024 * 1024
    """Largest input file (OpenAI's limit); a bigger upload is refused with 400."""
    create_limit: int | None = None
    """Batches per ``create_window`` seconds before creation answers 429 (Retry-After)."""
    create_window: float = 1.0
    hold: dict[str, float] = field(default_factory=dict)
    """Route -> seconds to hold its reply AFTER doing its work (``upload``, ``create``,
    ``content``): the client may be killed while waiting."""
    seed: int = 0
    require_auth: bool = True


@dataclass
class _Batch:
    id: str
    input_file_id: str
    endpoint: str
    window: str
    metadata: dict[str, Any]
    requests: list[dict[str, Any]]
    created_at: float
    status: str = "validating"
    errors: dict[str, Any] | None = None
    times: dict[str, float] = field(default_factory=dict)
    done: int = 0
    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    failed_ids: set[str] = field(default_factory=set)
    output_file_id: str | None = None
    error_file_id: str | None = None
    anthropic: bool = False


class FakeBatchServer:
    """The fake Batch API on 127.0.0.1; use as a context manager (serves from a thread)."""

    def __init__(self, config: BatchServerConfig | None = None, *,
                 answerer: Answerer | None = None, **overrides: Any) -> None:
        self.config = config or BatchServerConfig(**overrides)
        check_loopback(self.config.host)
        self._answer = answerer or stable_answerer(self.config.seed)
        self._rng = random.Random(self.config.seed)
        self.files: dict[str, dict[str, Any]] = {}
        self.batches: dict[str, _Batch] = {}
        self.processed: Counter[str] = Counter()
        """custom_id -> times a batch processed it (each one billed)."""
        self.answered: Counter[str] = Counter()
        """custom_id -> times a batch answered it successfully."""
        self.downloads: Counter[str] = Counter()
        """File id -> times its content was asked for."""
        self.online: Counter[str] = Counter()
        """Request fingerprint -> times the online chat route answered it."""
        self.created = 0
        self.create_429 = 0
        self._creates: list[float] = []
        self._lock = threading.Lock()
        self._runner: web.AppRunner | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._port = 0

    @property
    def url(self) -> str:
        return f"http://{self.config.host}:{self._port}/v1"

    # -- state machine ------------------------------------------------------------------
    def _advance(self, b: _Batch, now: float) -> None:
        c = self.config
        if b.status == "validating" and now >= b.created_at + c.validating_s:
            if len(b.requests) > c.max_requests:
                b.status, b.errors = "failed", {"object": "list", "data": [{
                    "code": "too_many_requests", "line": None, "param": None,
                    "message": f"the batch holds {len(b.requests)} requests; the limit is "
                               f"{c.max_requests}"}]}
                b.times["failed_at"] = now
                return
            b.status = "in_progress"
            b.times["in_progress_at"] = b.created_at + c.validating_s
        if b.status == "in_progress":
            start = b.times["in_progress_at"]
            share = 1.0 if c.in_progress_s <= 0 else min(1.0, (now - start) / c.in_progress_s)
            self._work(b, int(share * len(b.requests)))
            expired = (c.expire_after_s is not None and now >= b.created_at + c.expire_after_s
                       and b.done < len(b.requests))
            if expired:
                self._finish(b, "expired", now, "batch_expired",
                             "This request could not be executed before the completion "
                             "window expired.")
            elif b.done == len(b.requests):
                b.status = "finalizing"
                b.times["finalizing_at"] = now
        if b.status == "cancelling":
            self._finish(b, "cancelled", now, "batch_cancelled",
                         "This request was not executed because the batch was cancelled.")
        if b.status == "finalizing" and now >= b.times["finalizing_at"] + c.finalizing_s:
            self._finish(b, "completed", now, "", "")

    def _work(self, b: _Batch, upto: int) -> None:
        c = self.config
        while b.done < upto:
            line = b.requests[b.done]
            cid = str(line["custom_id"])
            self.processed[cid] += 1
            fail = cid in c.fail_ids or self._rng.random() < c.fail_share
            if fail:
                b.failed_ids.add(cid)
                b.results[cid] = {"status_code": 500, "body": {"error": {
                    "message": "The server had an error processing your request.",
                    "type": "server_error"}}}
            elif b.anthropic:
                b.results[cid] = {"type": "succeeded", "message": _anthropic_message(
                    line["params"], self._answer)}
            else:
                b.results[cid] = {"status_code": 200, "body": completion_body(
                    line["body"], self._answer)}
            if not fail:
                self.answered[cid] += 1
            b.done += 1

    def _finish(self, b: _Batch, status: str, now: float, code: str, message: str) -> None:
        out: list[dict[str, Any]] = []
        err: list[dict[str, Any]] = []
        for line in b.requests:
            cid = str(line["custom_id"])
            res = b.results.get(cid)
            if b.anthropic:
                if res is not None and res.get("type") == "succeeded":
                    result = res
                elif res is not None:
                    result = {"type": "errored", "error": {"type": "api_error",
                                                           "message": "server error"}}
                else:
                    result = {"type": "expired" if status == "expired" else "canceled"}
                out.append({"custom_id": cid, "result": result})
                continue
            row: dict[str, Any] = {"id": f"batch_req_{uuid.uuid4().hex[:12]}", "custom_id": cid}
            if res is None:
                err.append({**row, "response": None,
                            "error": {"code": code, "message": message}})
            elif res["status_code"] == 200:
                out.append({**row, "response": {"status_code": 200, "request_id": uuid.uuid4().hex,
                                                "body": res["body"]}, "error": None})
            else:
                err.append({**row, "response": {"status_code": res["status_code"],
                                                 "request_id": uuid.uuid4().hex,
                                                 "body": res["body"]}, "error": None})
        if out:
            b.output_file_id = self._store_file(_jsonl(out), f"{b.id}_output.jsonl",
                                                "batch_output")
        if err:
            b.error_file_id = self._store_file(_jsonl(err), f"{b.id}_error.jsonl",
                                               "batch_output")
        b.status = "ended" if b.anthropic else status
        b.times[f"{status}_at"] = now

    def _store_file(self, data: bytes, name: str, purpose: str) -> str:
        fid = f"file-{uuid.uuid4().hex[:20]}"
        self.files[fid] = {"id": fid, "object": "file", "bytes": len(data),
                           "created_at": int(time.time()), "filename": name, "purpose": purpose,
                           "data": data}
        return fid

    def _view(self, b: _Batch) -> dict[str, Any]:
        failed = len(b.failed_ids) + (len(b.requests) - b.done
                                      if b.status in ("expired", "cancelled") else 0)
        return {
            "id": b.id, "object": "batch", "endpoint": b.endpoint, "errors": b.errors,
            "input_file_id": b.input_file_id, "completion_window": b.window,
            "status": b.status, "output_file_id": b.output_file_id,
            "error_file_id": b.error_file_id, "created_at": int(b.created_at),
            "expires_at": int(b.created_at + 86400), "metadata": b.metadata,
            **{k: int(v) for k, v in b.times.items()},
            "request_counts": {"total": len(b.requests), "completed": b.done - len(b.failed_ids),
                               "failed": failed},
        }

    # -- routes -------------------------------------------------------------------------
    def _app(self) -> web.Application:
        app = web.Application(client_max_size=self.config.max_bytes + 1024 * 1024)
        app.middlewares.append(self._auth)
        r = app.router
        r.add_post("/v1/chat/completions", self._chat)
        r.add_post("/v1/files", self._upload)
        r.add_get("/v1/files/{id}", self._file)
        r.add_get("/v1/files/{id}/content", self._content)
        r.add_post("/v1/batches", self._create)
        r.add_get("/v1/batches", self._list)
        r.add_get("/v1/batches/{id}", self._get)
        r.add_post("/v1/batches/{id}/cancel", self._cancel)
        r.add_post("/v1/messages/batches", self._anthropic_create)
        r.add_get("/v1/messages/batches", self._anthropic_list)
        r.add_get("/v1/messages/batches/{id}", self._anthropic_get)
        r.add_get("/v1/messages/batches/{id}/results", self._anthropic_results)
        r.add_post("/v1/messages/batches/{id}/cancel", self._anthropic_cancel)
        return app

    @web.middleware
    async def _auth(self, request: web.Request,
                    handler: Callable[[web.Request], Any]) -> web.StreamResponse:
        auth = request.headers.get("Authorization", "") or request.headers.get("x-api-key", "")
        if self.config.require_auth and not auth.strip():
            return _error(401, "missing API key", "invalid_request_error")
        resp: web.StreamResponse = await handler(request)
        return resp

    async def _chat(self, request: web.Request) -> web.Response:
        """The online lane of the same provider (the same answers as its batches)."""
        body = await request.json()
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            return _error(400, "body must be a JSON object with messages")
        with self._lock:
            self.online[fingerprint(body)] += 1
        return web.json_response(completion_body(body, self._answer))

    async def _hold(self, route: str) -> None:
        seconds = self.config.hold.get(route, 0.0)
        if seconds > 0:
            await asyncio.sleep(seconds)

    async def _upload(self, request: web.Request) -> web.Response:
        form = await request.post()
        purpose, upload = form.get("purpose"), form.get("file")
        if purpose != "batch" or not isinstance(upload, web.FileField):
            return _error(400, "expected multipart fields purpose=batch and file")
        data = upload.file.read()
        if len(data) > self.config.max_bytes:
            return _error(400, f"file is {len(data)} bytes; the limit is {self.config.max_bytes}")
        for i, line in enumerate(data.decode("utf-8").splitlines()):
            try:
                row = json.loads(line)
                assert isinstance(row, dict) and row["method"] == "POST" and row["custom_id"]
                assert isinstance(row["body"], dict) and row["url"]
            except (ValueError, KeyError, AssertionError):
                return _error(400, f"line {i + 1} is not a batch request")
        with self._lock:
            fid = self._store_file(data, str(upload.filename), "batch")
        await self._hold("upload")
        return web.json_response(self._file_view(fid))

    def _file_view(self, fid: str) -> dict[str, Any]:
        return {k: v for k, v in self.files[fid].items() if k != "data"}

    async def _file(self, request: web.Request) -> web.Response:
        fid = request.match_info["id"]
        if fid not in self.files:
            return _error(404, f"no file {fid}")
        return web.json_response(self._file_view(fid))

    async def _content(self, request: web.Request) -> web.Response:
        fid = request.match_info["id"]
        if fid not in self.files:
            return _error(404, f"no file {fid}")
        self.downloads[fid] += 1
        await self._hold("content")
        return web.Response(body=self.files[fid]["data"], content_type="application/jsonl")

    def _rate_limited(self) -> float | None:
        c = self.config
        now = time.monotonic()
        self._creates = [t for t in self._creates if t > now - c.create_window]
        if c.create_limit is not None and len(self._creates) >= c.create_limit:
            self.create_429 += 1
            return self._creates[0] + c.create_window - now
        self._creates.append(now)
        return None

    async def _create(self, request: web.Request) -> web.Response:
        body = await request.json()
        fid = body.get("input_file_id")
        if fid not in self.files or body.get("completion_window") != "24h":
            return _error(400, "need an uploaded input_file_id and completion_window 24h")
        if body.get("endpoint") != "/v1/chat/completions":
            return _error(400, f"unsupported endpoint {body.get('endpoint')!r}")
        with self._lock:
            wait = self._rate_limited()
            if wait is not None:
                return _error(429, "too many batches created", "rate_limit_exceeded",
                              retry_after=wait)
            lines = [json.loads(x) for x in self.files[fid]["data"].decode().splitlines() if x]
            ids = [str(x["custom_id"]) for x in lines]
            if len(set(ids)) != len(ids):
                return _error(400, "custom_id values must be unique within a batch")
            b = _Batch(f"batch_{uuid.uuid4().hex[:20]}", fid, body["endpoint"], "24h",
                       dict(body.get("metadata") or {}), lines, time.time())
            self.batches[b.id] = b
            self.created += 1
            view = self._view(b)
        await self._hold("create")
        return web.json_response(view)

    async def _list(self, request: web.Request) -> web.Response:
        limit = int(request.query.get("limit", "20"))
        after = request.query.get("after")
        with self._lock:
            now = time.time()
            ordered = sorted(self.batches.values(), key=lambda b: b.created_at, reverse=True)
            ids = [b.id for b in ordered]
            start = ids.index(after) + 1 if after in ids else 0
            page = ordered[start:start + limit]
            for b in page:
                self._advance(b, now)
            data = [self._view(b) for b in page if not b.anthropic]
        return web.json_response({"object": "list", "data": data,
                                  "first_id": data[0]["id"] if data else None,
                                  "last_id": data[-1]["id"] if data else None,
                                  "has_more": start + limit < len(ordered)})

    async def _get(self, request: web.Request) -> web.Response:
        with self._lock:
            b = self.batches.get(request.match_info["id"])
            if b is None:
                return _error(404, "no such batch")
            self._advance(b, time.time())
            return web.json_response(self._view(b))

    async def _cancel(self, request: web.Request) -> web.Response:
        with self._lock:
            b = self.batches.get(request.match_info["id"])
            if b is None:
                return _error(404, "no such batch")
            self._advance(b, time.time())
            if b.status in ("validating", "in_progress"):
                b.status = "cancelling"
                b.times["cancelling_at"] = time.time()
            return web.json_response(self._view(b))

    # -- Anthropic Message Batches -------------------------------------------------------
    async def _anthropic_create(self, request: web.Request) -> web.Response:
        body = await request.json()
        reqs = body.get("requests")
        if not isinstance(reqs, list) or not reqs:
            return _error(400, "requests: a non-empty list", "invalid_request_error")
        with self._lock:
            wait = self._rate_limited()
            if wait is not None:
                return _error(429, "too many batches created", "rate_limit_error",
                              retry_after=wait)
            b = _Batch(f"msgbatch_{uuid.uuid4().hex[:20]}", "", "/v1/messages", "24h", {},
                       list(reqs), time.time(), anthropic=True)
            b.times["in_progress_at"] = b.created_at
            b.status = "in_progress"
            self.batches[b.id] = b
            self.created += 1
            view = self._anthropic_view(b)
        await self._hold("create")
        return web.json_response(view)

    def _anthropic_view(self, b: _Batch) -> dict[str, Any]:
        ended = b.status == "ended"
        return {"id": b.id, "type": "message_batch",
                "processing_status": "ended" if ended else (
                    "canceling" if b.status == "cancelling" else "in_progress"),
                "request_counts": {"processing": len(b.requests) - b.done if not ended else 0,
                                   "succeeded": b.done - len(b.failed_ids),
                                   "errored": len(b.failed_ids), "canceled": 0, "expired": 0},
                "results_url": f"{self.url}/messages/batches/{b.id}/results" if ended else None,
                "created_at": int(b.created_at)}

    async def _anthropic_list(self, request: web.Request) -> web.Response:
        limit = int(request.query.get("limit", "20"))
        with self._lock:
            now = time.time()
            mine = sorted((b for b in self.batches.values() if b.anthropic),
                          key=lambda b: b.created_at, reverse=True)[:limit]
            for b in mine:
                self._advance(b, now)
            data = [self._anthropic_view(b) for b in mine]
        return web.json_response({"data": data, "has_more": False,
                                  "first_id": data[0]["id"] if data else None,
                                  "last_id": data[-1]["id"] if data else None})

    async def _anthropic_get(self, request: web.Request) -> web.Response:
        with self._lock:
            b = self.batches.get(request.match_info["id"])
            if b is None or not b.anthropic:
                return _error(404, "no such batch")
            self._advance(b, time.time())
            return web.json_response(self._anthropic_view(b))

    async def _anthropic_results(self, request: web.Request) -> web.Response:
        b = self.batches.get(request.match_info["id"])
        if b is None or b.status != "ended" or b.output_file_id is None:
            return _error(404, "results are not ready")
        return web.Response(body=self.files[b.output_file_id]["data"],
                            content_type="application/binary")

    async def _anthropic_cancel(self, request: web.Request) -> web.Response:
        with self._lock:
            b = self.batches.get(request.match_info["id"])
            if b is None or not b.anthropic:
                return _error(404, "no such batch")
            if b.status == "in_progress":
                b.status = "cancelling"
            self._advance(b, time.time())
            return web.json_response(self._anthropic_view(b))

    # -- lifecycle ----------------------------------------------------------------------
    async def start(self) -> None:
        self._runner = web.AppRunner(self._app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.config.host, self.config.port)
        await site.start()
        server: Any = site._server
        self._port = int(server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def __enter__(self) -> FakeBatchServer:
        ready = threading.Event()

        def main() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            loop.run_until_complete(self.start())
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self.stop())
            loop.close()

        self._thread = threading.Thread(target=main, name="fake-batch-server", daemon=True)
        self._thread.start()
        ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)


def _anthropic_message(params: dict[str, Any], answer: Answerer) -> dict[str, Any]:
    """A Messages API answer: the forced tool's input when a tool is required, else text."""
    tools = params.get("tools") or []
    body: JSONObject = {"messages": params.get("messages", []),
                        "system": params.get("system", "")}
    if tools:
        body = {**body, "response_format": {"type": "json_schema", "json_schema": {
            "schema": tools[0].get("input_schema", {})}}}
        content = [{"type": "tool_use", "id": f"toolu_{uuid.uuid4().hex[:12]}",
                    "name": tools[0].get("name", "answer"), "input": json.loads(answer(body))}]
    else:
        content = [{"type": "text", "text": answer(body)}]
    prompt = approx_tokens(prompt_text(body))
    return {"id": f"msg_{uuid.uuid4().hex[:12]}", "type": "message", "role": "assistant",
            "content": content, "stop_reason": "tool_use" if tools else "end_turn",
            "usage": {"input_tokens": prompt, "output_tokens": approx_tokens(json.dumps(content))}}


def _jsonl(rows: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def _error(status: int, message: str, kind: str = "invalid_request_error", *,
           retry_after: float | None = None) -> web.Response:
    headers = {"Retry-After": f"{max(0.0, retry_after):.3f}"} if retry_after is not None else {}
    return web.json_response({"error": {"message": message, "type": kind}}, status=status,
                             headers=headers)


def key_digest(key: str) -> str:
    """A short name of a key (what a test may print)."""
    return text_digest(key, 8)
