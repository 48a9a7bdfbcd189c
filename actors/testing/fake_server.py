"""A FAKE OpenAI-compatible chat server for tests and offline demos (loopback only).

It answers schema-valid JSON (a seeded schema walk, or a pluggable answerer such as a noisy label
oracle) and can be told to rate-limit, fail, stall or garble answers; it counts everything.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import random
import re
import string
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from typing import Any, TypedDict

from aiohttp import web

from pluralign.engine.jsontypes import JSONDict, JSONObject, JSONSchema
from pluralign.engine.run.hosts import is_loopback
from pluralign.engine.store.hashing import digest, text_digest

Answerer = Callable[[JSONObject], str]
"""Takes the request body (parsed JSON) and returns one choice's message content."""

_WORDS = ("clear", "helpful", "concise", "accurate", "kind", "vague", "wrong", "careful", "fair")


def value_for_schema(schema: JSONSchema, rng: random.Random) -> object:
    """A random value valid against ``schema`` (objects, arrays, enum, const, numbers, strings)."""
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return rng.choice(list(schema["enum"]))
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return value_for_schema(rng.choice(list(schema[key])), rng)
    kind = schema.get("type", "object" if "properties" in schema else "string")
    if isinstance(kind, list):
        kind = rng.choice([k for k in kind if k != "null"] or ["null"])
    return _MAKERS[kind](schema, rng)


def _make_object(schema: JSONSchema, rng: random.Random) -> dict[str, object]:
    # Every property, in schema order (so "reasoning before score" orders are kept).
    return {name: value_for_schema(sub, rng) for name, sub in schema.get("properties", {}).items()}


def _make_array(schema: JSONSchema, rng: random.Random) -> list[object]:
    lo = int(schema.get("minItems", 1))
    hi = int(schema.get("maxItems", max(lo, 3)))
    items = schema.get("items", {"type": "string"})
    return [value_for_schema(items, rng) for _ in range(rng.randint(lo, hi))]


def _bounds(schema: JSONSchema, default: tuple[float, float]) -> tuple[float, float]:
    lo = schema.get("minimum", schema.get("exclusiveMinimum", default[0]))
    hi = schema.get("maximum", schema.get("exclusiveMaximum", default[1]))
    return float(lo), float(hi)


def _make_integer(schema: JSONSchema, rng: random.Random) -> int:
    lo, hi = _bounds(schema, (0, 100))
    lo_i = int(lo) + (1 if "exclusiveMinimum" in schema and "minimum" not in schema else 0)
    hi_i = int(hi) - (1 if "exclusiveMaximum" in schema and "maximum" not in schema else 0)
    return rng.randint(lo_i, hi_i)


def _make_number(schema: JSONSchema, rng: random.Random) -> float:
    lo, hi = _bounds(schema, (0.0, 1.0))
    return round(rng.uniform(lo, hi), 4)


def _make_string(schema: JSONSchema, rng: random.Random) -> str:
    lo = int(schema.get("minLength", 1))
    hi = int(schema.get("maxLength", max(lo, 80)))
    want = rng.randint(lo, min(hi, max(lo, 80)))
    text = " ".join(rng.choice(_WORDS) for _ in range(want // 4 + 1))
    text = (text + string.ascii_lowercase * (want // 26 + 1))[:want] if want else ""
    return text


_MAKERS: dict[str, Callable[[JSONSchema, random.Random], object]] = {
    "object": _make_object,
    "array": _make_array,
    "integer": _make_integer,
    "number": _make_number,
    "string": _make_string,
    "boolean": lambda s, rng: rng.random() < 0.5,
    "null": lambda s, rng: None,
}


def request_schema(body: JSONObject) -> JSONSchema | None:
    """The JSON schema a request asks for: response_format, guided_json or structured_outputs."""
    fmt = body.get("response_format")
    if isinstance(fmt, Mapping) and fmt.get("type") == "json_schema":
        spec = fmt.get("json_schema") or {}
        schema = spec.get("schema") if isinstance(spec, Mapping) else None
        if isinstance(schema, Mapping):
            return schema
    guided = body.get("guided_json")
    structured = body.get("structured_outputs")
    if isinstance(structured, Mapping):
        guided = structured.get("json", guided)
    if isinstance(guided, str):
        guided = json.loads(guided)
    return guided if isinstance(guided, Mapping) else None


def prompt_text(body: JSONObject) -> str:
    """All message contents of a request, joined (what markers are searched in)."""
    parts = [m.get("content") for m in body.get("messages", []) if isinstance(m, Mapping)]
    return "\n".join(p for p in parts if isinstance(p, str))


def schema_answerer(seed: int = 0) -> Answerer:
    """The default answerer: a seeded schema walk (a short sentence when there is no schema)."""
    rng = random.Random(seed)

    def answer(body: JSONObject) -> str:
        schema = request_schema(body)
        if schema is None:
            return _make_string({"minLength": 10, "maxLength": 60}, rng)
        return json.dumps(value_for_schema(schema, rng))

    return answer


def label_oracle_answerer(
    truth: Mapping[str, Mapping[str, float]],
    *,
    noise: float = 0.1,
    seed: int = 0,
) -> Answerer:
    """Noisy true scores: ``truth[marker][path]`` in [0, 1] for the first marker in the prompt.

    ``path`` is a dotted path into the answer ("A.score"); the value is scaled to the field's
    minimum..maximum, Gaussian noise of sd ``noise`` (in [0, 1] units) added, and clipped. Fields
    without a truth, and prompts without a marker, get the seeded schema walk.
    """
    rng = random.Random(seed)

    def answer(body: JSONObject) -> str:
        schema = request_schema(body) or {"type": "string"}
        text = prompt_text(body)
        scores = next((truth[m] for m in truth if m in text), {})
        return json.dumps(_oracle_value(schema, "", scores, noise, rng))

    return answer


def _oracle_value(schema: JSONSchema, path: str, scores: Mapping[str, float],
                  noise: float, rng: random.Random) -> object:
    if path in scores and schema.get("type") in ("integer", "number"):
        lo, hi = _bounds(schema, (0.0, 1.0))
        x = min(1.0, max(0.0, scores[path] + rng.gauss(0.0, noise)))
        v = lo + x * (hi - lo)
        return round(v) if schema.get("type") == "integer" else v
    if schema.get("type") == "object" or "properties" in schema:
        return {name: _oracle_value(sub, f"{path}.{name}" if path else name, scores, noise, rng)
                for name, sub in schema.get("properties", {}).items()}
    return value_for_schema(schema, rng)


_LETTER_STYLES = ("{}", " {}", "({}")


class TopLogprob(TypedDict):
    """One first-token alternative, as OpenAI's ``top_logprobs`` entries."""

    token: str
    logprob: float
    bytes: list[int]


class TokenLogprob(TopLogprob):
    """The chosen token with its alternatives."""

    top_logprobs: list[TopLogprob]


class ChoiceLogprobs(TypedDict):
    """A choice's ``logprobs``: one entry per answered token."""

    content: list[TokenLogprob]


def option_logprobs(body: JSONObject, k: int) -> list[TopLogprob]:
    """Plausible first-token alternatives for a multiple-choice prompt, most likely first: the
    option letters (lines ``A. ...``) in several token styles (``A``, `` B``, ``(C``; the first
    letter also as `` A``), plus a non-letter token, with log-probabilities seeded by the prompt
    (the same question gets the same answer). At most ``k`` entries."""
    text = prompt_text(body)
    lets = re.findall(r"^([A-Z])\. ", text, flags=re.MULTILINE) or ["Yes", "No"]
    rng = random.Random(text_digest(text))
    tokens = [_LETTER_STYLES[i % len(_LETTER_STYLES)].format(x) for i, x in enumerate(lets)]
    tokens += [f" {lets[0]}", "The"]
    weights = [rng.uniform(0.05, 1.0) for _ in tokens]
    total = sum(weights)
    alts = sorted(((t, math.log(w / total)) for t, w in zip(tokens, weights, strict=True)),
                  key=lambda tw: -tw[1])
    return [{"token": t, "logprob": lp, "bytes": list(t.encode())} for t, lp in alts[:max(0, k)]]


def approx_tokens(text: str) -> int:
    """Roughly 1.3 tokens per word, as the usage figures of the fake."""
    return round(len(text.split()) * 1.3)


def fingerprint(body: JSONObject) -> str:
    """SHA-256 (16 hex) of the canonical request body: equal requests, equal fingerprints."""
    return digest(body, 16)


@dataclass
class FakeServerConfig:
    """How the fake server behaves."""

    host: str = "127.0.0.1"
    """Loopback address to bind (anything else is refused)."""
    port: int = 0
    """Port; 0 picks a free one."""
    model: str = "fake-model"
    """Model name reported by /v1/models and in answers."""
    rpm: int | None = None
    """Requests per window per API key before answering 429 with Retry-After; None = no limit."""
    rpm_window: float = 60.0
    """Sliding window of the RPM limit, seconds (shorter only to scale benchmarks down)."""
    latency: float = 0.0
    """Fixed seconds before each answer."""
    jitter: float = 0.0
    """Extra uniform random seconds (0..jitter) before each answer."""
    fault_429: float = 0.0
    """Share of requests answered 429 (with Retry-After ``retry_after``)."""
    retry_after: float = 1.0
    """Retry-After seconds sent with injected 429s."""
    fault_5xx: float = 0.0
    """Share of requests answered 500/502/503."""
    fault_timeout: float = 0.0
    """Share of requests that stall ``timeout_sleep`` seconds (past the client's timeout)."""
    timeout_sleep: float = 30.0
    """How long a stalled request sleeps before answering 504."""
    fault_malformed: float = 0.0
    """Share of requests answered 200 with a body that is not JSON."""
    fault_bad_content: float = 0.0
    """Share of requests whose choices' content does not match the schema."""
    fault_control_chars: float = 0.0
    """Share of requests answered with raw control characters (tab, U+0015) inside the JSON
    strings, as grammar-constrained decoders send them (valid to the grammar, not to a strict
    ``json.loads``)."""
    fault_fenced: float = 0.0
    """Share of requests answered with the JSON wrapped in whitespace and a Markdown code fence."""
    fault_truncated: float = 0.0
    """Share of requests answered cut in half with ``finish_reason == "length"``."""
    fault_reset: float = 0.0
    """Share of requests whose connection is dropped after the request was read (and counted):
    the client sees a reset or a disconnected server, and the answer is lost."""
    force_status: int | None = None
    """Answer every authorised request with this HTTP status (tests of 400, 403, 413...)."""
    max_choices: int | None = None
    """Answer at most this many choices even if ``n`` asks for more (tests the client's top-up)."""
    logprobs: bool = True
    """Answer ``top_logprobs`` when a request asks for them (False: an endpoint without them)."""
    require_auth: bool = True
    """Answer 401 without ``Authorization: Bearer <key>``."""
    seed: int = 0
    """Seed for faults, latency and the default answerer."""
    answerer: Answerer | None = None
    """Makes each choice's content; None = seeded schema walk."""

    def __post_init__(self) -> None:
        check_loopback(self.host)
        shares = fault_shares(self)
        for name, share in shares.items():
            if not 0.0 <= share <= 1.0:
                raise ValueError(f"{name} must be a share in [0, 1], got {share}")
        total = sum(shares.values())
        if total > 1.0 + SHARE_TOLERANCE:
            given = ", ".join(f"{k}={v:g}" for k, v in shares.items() if v)
            raise ValueError(f"fault shares add up to {total:g} > 1 ({given}): each request "
                             "draws at most one fault")


SHARE_TOLERANCE = 1e-9
"""How far above 1 the fault shares may add up (rounding: 0.1 + 0.2 + 0.7 > 1 in floats)."""


def fault_shares(config: FakeServerConfig) -> dict[str, float]:
    """Every ``fault_*`` field of ``config`` and its share, in field order."""
    return {f.name: getattr(config, f.name) for f in fields(config) if f.name.startswith("fault_")}


def check_loopback(host: str) -> None:
    """Refuse any address that is not loopback: the fake must never face a network."""
    if not is_loopback(host):
        raise ValueError(f"fake server binds loopback only (127.0.0.1, ::1), not {host!r}")


@dataclass(frozen=True)
class Event:
    """One request as the server saw it (server clock, ``time.monotonic``)."""

    t: float
    status: int
    fingerprint: str
    key_hash: str
    fault: str
    retry_after: float | None = None


_PAID_FAULTS = ("", "bad_content", "malformed", "control_chars", "fenced", "truncated")
"""Faults whose 200 answer a real provider would have charged for."""


class FakeStats(TypedDict):
    """What :meth:`FakeOpenAIServer.stats` (and ``GET /fake/stats``) answers."""

    total: int
    by_status: dict[str, int]
    by_fingerprint: dict[str, int]
    ok_by_fingerprint: dict[str, int]
    key_hashes: list[str]
    events: list[dict[str, object]]
    """Each :class:`Event`'s fields."""
    max_in_flight: int


class _Counters:
    """Thread-safe counters read by tests from another thread."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.total = 0
        self.by_status: Counter[int] = Counter()
        self.by_fp: Counter[str] = Counter()
        self.ok_by_fp: Counter[str] = Counter()
        self.keys: set[str] = set()
        self.events: list[Event] = []
        self.in_flight = 0
        self.max_in_flight = 0

    def enter(self) -> None:
        with self.lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def leave(self) -> None:
        with self.lock:
            self.in_flight -= 1

    def record(self, ev: Event) -> None:
        with self.lock:
            self.total += 1
            self.by_status[ev.status] += 1
            self.by_fp[ev.fingerprint] += 1
            if ev.status == 200 and ev.fault in _PAID_FAULTS:
                self.ok_by_fp[ev.fingerprint] += 1
            if ev.key_hash:
                self.keys.add(ev.key_hash)
            self.events.append(ev)

    def snapshot(self) -> FakeStats:
        with self.lock:
            return {
                "total": self.total,
                "by_status": {str(k): v for k, v in sorted(self.by_status.items())},
                "by_fingerprint": dict(self.by_fp),
                "ok_by_fingerprint": dict(self.ok_by_fp),
                "key_hashes": sorted(self.keys),
                "events": [ev.__dict__.copy() for ev in self.events],
                "max_in_flight": self.max_in_flight,
            }


class FakeOpenAIServer:
    """The fake server; ``start_in_thread()`` (or ``with``) for tests, ``serve_forever()`` for CLI."""

    def __init__(self, config: FakeServerConfig | None = None, **overrides: Any) -> None:
        self.config = replace(config or FakeServerConfig(), **overrides)
        self._rng = random.Random(self.config.seed)
        self._answerer = self.config.answerer or schema_answerer(self.config.seed)
        self._counters = _Counters()
        self._windows: dict[str, deque[float]] = {}
        self._port: int | None = None
        self._runner: web.AppRunner | None = None
        self._stopping: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    # -- control -------------------------------------------------------------------------
    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("fake server not started")
        return self._port

    @property
    def url(self) -> str:
        """Base URL clients use, ending in /v1."""
        return f"http://{self.config.host}:{self.port}/v1"

    def configure(self, **changes: Any) -> None:
        """Change behaviour while running (rpm, faults, latency, answerer...)."""
        self.config = replace(self.config, **changes)
        if "answerer" in changes or "seed" in changes:
            self._answerer = self.config.answerer or schema_answerer(self.config.seed)
        if "seed" in changes:
            self._rng = random.Random(self.config.seed)

    def stats(self) -> FakeStats:
        """Counters: total, by_status, by_fingerprint, ok_by_fingerprint, key_hashes, events,
        max_in_flight (most requests being handled at once)."""
        return self._counters.snapshot()

    def reset(self) -> None:
        """Zero all counters and the RPM windows."""
        self._counters = _Counters()
        self._windows = {}

    # -- request handling ----------------------------------------------------------------
    def _app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/pooling", self._pooling)  # where vLLM serves it
        app.router.add_get("/v1/models", self._models)
        app.router.add_get("/fake/stats", self._stats)
        app.router.add_post("/fake/reset", self._reset)
        return app

    async def _pooling(self, request: web.Request) -> web.Response:
        """A reward model's pooling route: two heads per input, each a stable function of the
        text (SHA-256), so tests can recompute them; counted (an event, a paid answer) and
        delayed (latency, jitter) like chat requests."""
        body = await request.json()
        texts = body.get("input") if isinstance(body, dict) else None
        if isinstance(texts, str):
            texts = [texts]
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            return web.json_response(_err("input must be a string or a list of strings"),
                                     status=400)
        now = time.monotonic()
        delay = self.config.latency + self._rng.uniform(0.0, self.config.jitter)
        if delay > 0:  # as slow as a chat answer, so tests can interrupt a reward run
            await asyncio.sleep(delay)
        self._counters.record(Event(now, 200, fingerprint(body), self._key_hash(request) or "",
                                    ""))
        return web.json_response({"object": "list", "model": self.config.model, "data": [
            {"index": i, "object": "pooling", "data": fake_reward(t)}
            for i, t in enumerate(texts)]})

    async def _models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [
            {"id": self.config.model, "object": "model", "owned_by": "pluralign-fake"}]})

    async def _stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.stats())

    async def _reset(self, request: web.Request) -> web.Response:
        self.reset()
        return web.json_response({"reset": True})

    def _key_hash(self, request: web.Request) -> str | None:
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("Bearer ") or not auth[7:].strip():
            return None
        return text_digest(auth[7:].strip(), 12)

    def _rpm_retry_after(self, key: str, now: float) -> float | None:
        """None if the request fits the sliding window (and is counted), else seconds to wait."""
        if self.config.rpm is None:
            return None
        window = self._windows.setdefault(key, deque())
        while window and window[0] <= now - self.config.rpm_window:
            window.popleft()
        if len(window) >= self.config.rpm:
            return window[0] + self.config.rpm_window - now
        window.append(now)
        return None

    def _draw_fault(self) -> str:
        # One draw per request over every fault_* field in field order, so a new fault field
        # is drawn (and gets a command-line flag) without being listed anywhere else.
        u = self._rng.random()
        for field_name, share in fault_shares(self.config).items():
            if u < share:
                return field_name.removeprefix("fault_")
            u -= share
        return ""

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        counters = self._counters
        counters.enter()
        try:
            return await self._handle(request)
        finally:
            counters.leave()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        now = time.monotonic()
        key = self._key_hash(request)
        try:
            body = await request.json()
            fp = fingerprint(body)
        except (json.JSONDecodeError, UnicodeDecodeError):
            body, fp = None, "unparsable"
        if key is None and self.config.require_auth:
            return self._reply(now, fp, "", "", 401, {"error": {
                "message": "missing bearer token", "type": "invalid_request_error"}})
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            return self._reply(now, fp, key or "", "", 400, {"error": {
                "message": "body must be a JSON object with messages", "type": "invalid_request_error"}})
        if self.config.force_status is not None:
            return self._reply(now, fp, key or "", "forced", self.config.force_status,
                               _err(f"forced status {self.config.force_status}"))
        wait = self._rpm_retry_after(key or "", now)
        if wait is not None:
            return self._reply(now, fp, key or "", "rpm", 429, _err("rate limit reached"),
                               retry_after=wait)
        return await self._answer(now, fp, key or "", body, request)

    async def _answer(self, now: float, fp: str, key: str, body: JSONDict,
                      request: web.Request) -> web.StreamResponse:
        c = self.config
        fault = self._draw_fault()
        if fault == "429":
            return self._reply(now, fp, key, fault, 429, _err("rate limited (injected)"),
                               retry_after=c.retry_after)
        if fault == "5xx":
            status = self._rng.choice((500, 502, 503))
            return self._reply(now, fp, key, fault, status, _err("server error (injected)"))
        delay = c.latency + self._rng.uniform(0.0, c.jitter)
        if fault == "timeout":
            # Counted on arrival: the client will have given up before the 504 goes out.
            self._counters.record(Event(now, 504, fp, key, fault))
            delay = max(delay, c.timeout_sleep)
        if delay > 0 and self._stopping is not None:
            # Waiting on the stop event (not a bare sleep) lets the server shut down promptly.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)
        if fault == "timeout":
            return web.json_response(_err("timed out (injected)"), status=504)
        if fault == "reset":
            self._counters.record(Event(now, 0, fp, key, fault))
            if request.transport is not None:
                request.transport.abort()
            raise ConnectionResetError("connection reset (injected)")
        if fault == "malformed":
            self._counters.record(Event(now, 200, fp, key, fault))
            return web.Response(status=200, text='{"id": "chatcmpl-fake", "choices": [{',
                                content_type="application/json")
        try:
            payload = self._completion(body, fault=fault)
        except Exception as e:  # a broken answerer is the fake's bug: answer 500, keep serving
            return self._reply(now, fp, key, "answerer", 500, _err(f"answerer failed: {e!r}"))
        return self._reply(now, fp, key, fault, 200, payload)

    def _completion(self, body: JSONObject, *, fault: str = "") -> dict[str, object]:
        n = max(1, int(body.get("n") or 1))
        if self.config.max_choices is not None:
            n = min(n, self.config.max_choices)
        contents = ['{"not": "what you asked for"' if fault == "bad_content"
                    else _garble(self._answerer(body), fault) for _ in range(n)]
        tops: list[ChoiceLogprobs | None] = [None] * n
        if body.get("logprobs") and self.config.logprobs:
            k = int(body.get("top_logprobs") or 0)
            top = option_logprobs(body, max(1, k))
            tops = [{"content": [{**top[0], "top_logprobs": top[:k]}]}] * n
            if fault != "bad_content":
                contents = [top[0]["token"]] * n
        finish = "length" if fault == "truncated" else "stop"
        prompt = approx_tokens(prompt_text(body))
        completion = sum(approx_tokens(t) for t in contents)
        return {
            "id": f"chatcmpl-fake-{self._rng.getrandbits(48):012x}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", self.config.model),
            "choices": [{"index": i, "finish_reason": finish,
                         "message": {"role": "assistant", "content": t},
                         **({} if tops[i] is None else {"logprobs": tops[i]})}
                        for i, t in enumerate(contents)],
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                      "total_tokens": prompt + completion},
        }

    def _reply(self, now: float, fp: str, key: str, fault: str, status: int,
               payload: Mapping[str, object], retry_after: float | None = None) -> web.Response:
        self._counters.record(Event(now, status, fp, key, fault, retry_after))
        headers = {}
        if retry_after is not None:
            # Fractional seconds are kept: the window frees up at a precise instant.
            headers["Retry-After"] = f"{max(0.0, retry_after):.3f}"
        return web.json_response(dict(payload), status=status, headers=headers)

    # -- lifecycle -----------------------------------------------------------------------
    async def start(self) -> None:
        """Bind and serve on the running loop."""
        check_loopback(self.config.host)
        self._stopping = asyncio.Event()
        self._runner = web.AppRunner(self._app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.config.host, self.config.port)
        await site.start()
        # aiohttp has no public accessor for the bound port; port 0 needs it.
        server: Any = site._server
        self._port = int(server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self._stopping is not None:
            self._stopping.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def start_in_thread(self) -> FakeOpenAIServer:
        """Serve from a daemon thread with its own event loop; returns once bound."""
        ready = threading.Event()
        failure: list[BaseException] = []

        def main() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self.start())
            except BaseException as e:
                failure.append(e)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self.stop())
            loop.close()

        self._thread = threading.Thread(target=main, name="fake-openai-server", daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            raise failure[0]
        return self

    def stop_thread(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
            self._thread = None

    def __enter__(self) -> FakeOpenAIServer:
        return self.start_in_thread()

    def __exit__(self, *exc: object) -> None:
        self.stop_thread()

    def serve_forever(self, on_ready: Callable[[str], None] | None = None) -> None:
        """Block in this thread until interrupted (the CLI); ``on_ready(url)`` once bound."""

        async def main() -> None:
            await self.start()
            if on_ready is not None:
                on_ready(self.url)
            try:
                await asyncio.Event().wait()
            finally:
                await self.stop()

        asyncio.run(main())


def fake_reward(text: str) -> list[float]:
    """The fake pooling route's two head values for ``text`` (in [-4, 4))."""
    h = bytes.fromhex(text_digest(text))
    return [int.from_bytes(h[k:k + 4], "big") / 2**32 * 8 - 4 for k in (0, 4)]


def _garble(content: str, fault: str) -> str:
    """``content`` as the fault ``fault`` sends it (unchanged for the others)."""
    if fault == "truncated":
        return content[: max(1, len(content) // 2)]
    if fault == "fenced":
        return f"\n  ```json\n{content}\n```\n"
    if fault == "control_chars":
        try:
            value = json.loads(content)
        except json.JSONDecodeError:
            return content
        # Raw (unescaped) tab and U+0015 inside every string value.
        text = json.dumps(_with_controls(value))
        return text.replace("\\t", "\t").replace("\\u0015", "\x15")
    return content


def _with_controls(value: object) -> object:
    if isinstance(value, str):
        return value[:1] + "\t\x15" + value[1:]
    if isinstance(value, dict):
        return {k: _with_controls(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_with_controls(v) for v in value]
    return value


def _err(message: str) -> ErrorBody:
    return {"error": {"message": message, "type": "fake_server_error"}}


class _ErrorDetail(TypedDict):
    message: str
    type: str


class ErrorBody(TypedDict):
    """An OpenAI-style error answer."""

    error: _ErrorDetail
