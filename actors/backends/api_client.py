"""Backend for any OpenAI-compatible chat endpoint (OpenAI, ``vllm serve``, the fake server).

Plain aiohttp rather than the openai SDK: we own retries, Retry-After, timeouts and error text, so
no hidden SDK retry inflates request counts and no SDK object holding the key lands in an error.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import math
import os
import random
import socket
import time
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import ModuleType
from typing import TYPE_CHECKING, Literal, NoReturn, Protocol
from urllib.parse import urlsplit, urlunsplit

from pluralign.actors.ratelimit import Limiter, key_id, make_limiter
from pluralign.engine.errors import InputError, PluralignError
from pluralign.engine.jsontypes import JSONSchema, UntrustedJSON
from pluralign.engine.judges.base import loads_answer
from pluralign.engine.run.backend import (
    NO_LOGPROBS,
    Failure,
    FailureKind,
    GenerationRequest,
    GenerationResult,
    Sample,
    Usage,
)
from pluralign.engine.store.redaction import (
    credential_values,
    redact,
    redact_json,
    register_secret,
    safe_url,
    url_credentials,
)

if TYPE_CHECKING:
    import aiohttp

log = logging.getLogger(__name__)

StructuredMode = Literal["response_format", "vllm", "vllm_guided", "none"]
_RETRYABLE = (FailureKind.RATE_LIMITED, FailureKind.TRANSIENT, FailureKind.BAD_ANSWER)
TRUNCATED = "truncated at max_tokens"
"""Start of the problem text of a cut-off answer (``finish_reason == "length"``)."""
_LIVE: weakref.WeakSet[OpenAIBackend] = weakref.WeakSet()
_MIN_CREDENTIAL = 4
"""Shorter "credentials" are not hunted for as text (they would shred every message); their
URL and JSON forms are still redacted."""


def stop_sending() -> int:
    """Drain every API client of this process: no request is sent from now on (answers in
    flight still arrive). Called on the first Ctrl-C; returns how many clients were drained."""
    live = list(_LIVE)
    for backend in live:
        backend.drain()
    return len(live)


@dataclass(frozen=True)
class APIClientConfig:
    """How to reach an OpenAI-compatible endpoint; holds the key's env var name, never the key."""

    base_url: str = "https://api.openai.com/v1"
    """Endpoint root, ending in /v1."""
    model: str = "gpt-4o-mini"
    """Model name sent with every request."""
    api_key_env: str | None = "OPENAI_API_KEY"
    """Name of the environment variable that holds the key; None for servers without auth."""
    max_concurrency: int = 16
    """Requests in flight at once (per backend instance)."""
    rpm: float | None = None
    """Requests per minute for this key (shared over the cluster when ``redis_url`` is set)."""
    tpm: float | None = None
    """Tokens per minute for this key, counted as prompt estimate + max_tokens × n per request."""
    rate_period: float = 60.0
    """Window the rpm/tpm budgets refer to, seconds (shorter only to scale benchmarks down)."""
    redis_url: str | None = None
    """If set, the budgets live in Redis and are shared by every client of the same key."""
    adaptive: bool = False
    """Adapt concurrency to the endpoint (AIMD on 429s, up to ``max_concurrency``; see
    ``AdaptiveLimiter``), below the rpm/tpm budget where one is given."""
    timeout: float = 60.0
    """Seconds before one HTTP attempt counts as timed out (then retried)."""
    max_retries: int = 6
    """Retries after the first attempt for 429, 5xx, timeouts and connection errors."""
    max_bad_answers: int = 2
    """Retries of a request whose answer does not parse or validate, before BAD_ANSWER."""
    backoff_base: float = 0.5
    """First backoff ceiling in seconds; doubles per retry."""
    backoff_max: float = 30.0
    """Largest backoff ceiling; a Retry-After longer than this is handed to the caller instead."""
    jitter: bool = True
    """Full jitter: sleep uniform(0, ceiling) instead of the ceiling itself."""
    structured_output: StructuredMode = "response_format"
    """How the schema is sent: OpenAI ``response_format``; vLLM ``structured_outputs`` (>= 0.10.2);
    vLLM ``guided_json`` (older); or ``none`` (prompt only, the answer is still validated)."""
    extra_body: Mapping[str, object] = field(default_factory=dict, hash=False)
    """Extra JSON fields merged into every request body (provider-specific options)."""

    def __post_init__(self) -> None:
        if self.structured_output not in ("response_format", "vllm", "vllm_guided", "none"):
            raise ValueError(f"structured_output={self.structured_output!r}: use response_format, "
                             "vllm, vllm_guided or none")
        for name in ("max_concurrency", "timeout"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        check_base_url(self.base_url, self.api_key_env)
        check_extra_body(self.extra_body)

    def __repr__(self) -> str:
        # The URL's user info and query keys, and credentials in extra_body, never show.
        return (f"APIClientConfig(base_url={safe_url(self.base_url)!r}, model={self.model!r}, "
                f"api_key_env={self.api_key_env!r}, "
                f"extra_body={redact_json(dict(self.extra_body))!r})")

    def credentials(self) -> tuple[str, ...]:
        """The credentials this config carries (the base URL's user info and key parameters,
        credential-named fields of ``extra_body``), never the key itself: what is registered
        so that no echo of them is stored."""
        found = (*url_credentials(self.base_url), *credential_values(self.extra_body))
        return tuple(v for v in found if len(v) >= _MIN_CREDENTIAL)


RESERVED_BODY_KEYS: Mapping[str, str] = {
    "model": "`model`", "messages": "the judge's prompt (`prompts`)",
    "n": "the work item (`samples` asks for more)", "best_of": "the work item",
    "temperature": "`temperature`", "max_tokens": "`max_tokens`",
    "max_completion_tokens": "`max_tokens`", "seed": "`sampling_seed`",
    "logprobs": "the judge", "top_logprobs": "the judge",
    "response_format": "`structured_output`", "structured_outputs": "`structured_output`",
    "guided_json": "`structured_output`", "guided_regex": "`structured_output`",
    "guided_choice": "`structured_output`", "guided_grammar": "`structured_output`",
    "stream": "the client (answers are read whole)",
    "stream_options": "the client (answers are read whole)",
}
"""Request-body fields ``extra_body`` may not set, and what sets them: they identify the work
(or, like ``n``, multiply what one item costs)."""


def check_extra_body(extra: Mapping[str, object]) -> None:
    """Refuse ``extra_body`` fields that would override what identifies the work (model,
    messages, ``n``, sampling settings, the answer schema), naming the first such key."""
    for key in extra:
        if key in RESERVED_BODY_KEYS:
            raise InputError(f"{key!r} is part of what identifies the work and is set by "
                             f"{RESERVED_BODY_KEYS[key]}",
                             field="extra_body", hint=f"drop {key!r} from `extra_body`")


def check_base_url(url: str, api_key_env: str | None = None) -> None:
    """Refuse an endpoint root that is not an http(s) URL with a host, or that carries a
    password beside another credential (an API key from ``api_key_env``, or a query
    string): one line saying what to do, showing the URL without its credentials."""
    shown = safe_url(str(url))
    try:
        parts = urlsplit(str(url))
        host, _ = parts.hostname, parts.port  # .port raises on a port out of range
    except ValueError as e:
        raise InputError(f"{shown!r} is not a URL ({e})", field="base_url",
                         hint="e.g. http://127.0.0.1:8000/v1") from None
    if parts.scheme not in ("http", "https") or not host or any(c.isspace() for c in url):
        raise InputError(f"{shown!r} is not an http(s) URL with a host",
                         field="base_url", hint="e.g. http://127.0.0.1:8000/v1 or "
                                                "https://api.openai.com/v1")
    if parts.fragment:
        raise InputError(f"{shown!r} has a #fragment, which is never sent",
                         field="base_url", hint="drop the #... part")
    if parts.password is None:
        return
    if api_key_env:
        raise InputError(f"{shown!r} carries a password and `api_key_env` names a key "
                         f"(${api_key_env}): an endpoint takes one credential",
                         field="base_url", hint="drop user:password@ from `base_url`, or "
                                                "set `api_key_env` to none")
    if parts.query:
        raise InputError(f"{shown!r} carries a password and a query string: keep the "
                         "credential in one place", field="base_url",
                         hint="drop user:password@ or the ?query from `base_url`")


def route_url(base_url: str, route: str) -> str:
    """``route`` under ``base_url``, before any query: a route starting with ``/`` from the
    server root, any other joined to the base path (``https://h/v1?api-version=X`` and
    ``chat/completions`` -> ``https://h/v1/chat/completions?api-version=X``)."""
    parts = urlsplit(base_url)
    path = route if route.startswith("/") else parts.path.rstrip("/") + "/" + route
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))


def chat_url(base_url: str) -> str:
    """The chat-completions URL under ``base_url``."""
    return route_url(base_url, "chat/completions")


def read_api_key(config: APIClientConfig) -> str | None:
    """The key from ``config.api_key_env`` (None without one), or a clear error; the key and
    the credentials the URL and extra body carry are registered for redaction."""
    key = None
    if env := config.api_key_env:
        key = os.environ.get(env, "")
        if not key:
            raise PluralignError(f"environment variable {env} is not set: export the API key "
                                 "there (or set api_key_env to None for servers without auth)")
        register_secret(key)  # the cache redacts it from every stored text
    for credential in config.credentials():
        register_secret(credential)  # and what the URL and extra_body carry
    return key


class _Secret:
    """Holds the key; shows only its hash and refuses to be pickled."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def redact(self, text: str, others: Sequence[str] = ()) -> str:
        return redact(text, (self._value, *others))

    def __repr__(self) -> str:
        return f"<secret {key_id(self._value)}>"

    def __reduce__(self) -> NoReturn:
        raise TypeError("an API key is never pickled; pass the env var name instead")


@dataclass
class _Attempt:
    """What one HTTP round trip gave: valid samples, tokens spent, or why not."""

    samples: list[Sample] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    failure: Failure | None = None


class OpenAIBackend:
    """Async backend over HTTP; one result per request, failures classified, key kept secret."""

    name = "openai"

    def __init__(self, config: APIClientConfig | None = None, *,
                 limiter: Limiter | None = None) -> None:
        self.config = config or APIClientConfig()
        self._limiter = limiter
        self._secret: _Secret | None = None
        self._session: aiohttp.ClientSession | None = None
        self._sem: asyncio.Semaphore | None = None
        self._rng = random.Random()
        self._draining = False
        _LIVE.add(self)

    def drain(self) -> None:
        """Send nothing more (in-flight requests finish); pending retries fail as interrupted."""
        self._draining = True

    def __repr__(self) -> str:
        return (f"OpenAIBackend(base_url={safe_url(self.config.base_url)!r}, "
                f"model={self.config.model!r})")

    def __reduce__(self) -> tuple[type[OpenAIBackend], tuple[APIClientConfig]]:
        # Ship the config (which names the env var) and rebuild; the key is re-read on start.
        return (OpenAIBackend, (self.config,))

    async def start(self) -> None:
        """Read the key from the environment, open the HTTP session and the limiter."""
        if self._session is not None:
            return
        import aiohttp

        value = read_api_key(self.config)
        if value:
            self._secret = _Secret(value)
        if self._limiter is None:
            self._limiter = make_limiter(
                self.config.rpm, self.config.tpm, redis_url=self.config.redis_url,
                key=key_id(self._secret.reveal() if self._secret else None),
                period=self.config.rate_period,
                adaptive=self.config.max_concurrency if self.config.adaptive else 0)
        self._sem = asyncio.Semaphore(self.config.max_concurrency)
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.config.timeout))

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._limiter is not None:
            await self._limiter.close()

    async def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        """One result per request, in order; never raises for one item."""
        try:
            await self.start()
        except Exception as e:  # no key, no aiohttp, no redis: nothing here can be answered
            text = str(e) if isinstance(e, PluralignError) else f"{type(e).__name__}: {e}"
            failure = Failure(FailureKind.FATAL_REPLICA, self._redact(text))
            return [GenerationResult(r.id, failure=failure, attempts=0) for r in requests]
        results = await asyncio.gather(*(self._guarded(r) for r in requests))
        return list(results)

    async def _guarded(self, req: GenerationRequest) -> GenerationResult:
        try:
            return await self._one(req)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # a bug here must cost one item, not the batch
            log.exception("request %s: unexpected error", req.id)
            return GenerationResult(req.id, failure=Failure(
                FailureKind.TRANSIENT, self._redact(f"{type(e).__name__}: {e}")))

    async def _one(self, req: GenerationRequest) -> GenerationResult:
        """Attempts until n valid samples, a fatal error, or the retry budgets run out."""
        samples: list[Sample] = []
        prompt = completion = attempts = retries = bad = 0
        while True:
            attempts += 1
            got = await self._attempt(req, want=req.n - len(samples), offset=len(samples))
            samples += got.samples
            prompt += got.usage.prompt_tokens
            completion += got.usage.completion_tokens
            usage = Usage(prompt, completion)
            if len(samples) >= req.n:
                return GenerationResult(req.id, tuple(samples[: req.n]), usage, None, attempts)
            failure = got.failure or Failure(FailureKind.BAD_ANSWER, "fewer choices than asked")
            if failure.kind is FailureKind.BAD_ANSWER and not got.samples:
                bad += 1
            elif failure.kind is not FailureKind.BAD_ANSWER:
                retries += 1
            if req.max_sends is not None and attempts >= req.max_sends:
                failure = Failure(failure.kind, f"{failure.message} (send budget of "
                                  f"{req.max_sends} spent)"[:300], failure.retry_after,
                                  failure.status)
                return GenerationResult(req.id, (), usage, failure, attempts)
            if not self._may_retry(failure, retries, bad):
                log.debug("request %s: giving up after %d attempts (%s)", req.id, attempts,
                          failure.kind.value)
                return GenerationResult(req.id, (), usage, failure, attempts)
            await asyncio.sleep(self._backoff(failure, retries + bad))

    def _may_retry(self, failure: Failure, retries: int, bad: int) -> bool:
        if failure.kind not in _RETRYABLE:
            return False
        if failure.kind is FailureKind.BAD_ANSWER:
            return bad <= self.config.max_bad_answers
        if failure.retry_after is not None and failure.retry_after > self.config.backoff_max:
            return False  # a long pause is the scheduler's call, not ours
        return retries <= self.config.max_retries

    def _backoff(self, failure: Failure, n: int) -> float:
        ceiling = min(self.config.backoff_max, self.config.backoff_base * 2 ** max(0, n - 1))
        wait = self._rng.uniform(0.0, ceiling) if self.config.jitter else ceiling
        return max(wait, failure.retry_after or 0.0)

    async def _attempt(self, req: GenerationRequest, *, want: int, offset: int) -> _Attempt:
        assert self._limiter is not None and self._sem is not None
        body = self.request_body(req, want=want, offset=offset)
        headers = {"Content-Type": "application/json"}
        if self._secret is not None:
            headers["Authorization"] = f"Bearer {self._secret.reveal()}"
        async with self._sem:
            await self._limiter.acquire(1, estimate_tokens(req, want))
            seen: tuple[int | None, float | None] = (None, None)  # for the limiter
            if self._draining:
                self._limiter.settle(None)
                return _Attempt(failure=Failure(FailureKind.FATAL_REPLICA,
                                                "interrupted: not sent"))
            session = self._session
            assert session is not None, "start() opens the session"
            try:
                async with session.post(chat_url(self.config.base_url),
                                        data=json.dumps(body), headers=headers) as resp:
                    status, text = resp.status, await resp.text()
                    retry_after = parse_retry_after(resp.headers)
                    seen = (status, retry_after)
            except TimeoutError:
                return _Attempt(failure=Failure(
                    FailureKind.TRANSIENT, f"timed out after {self.config.timeout:g}s"))
            except Exception as e:
                import aiohttp

                if isinstance(e, aiohttp.ClientConnectorError):
                    # Never delivered (refused, DNS, TLS): the endpoint is not there. Say so at
                    # once instead of retrying for minutes; a rerun resumes where this stopped.
                    return _Attempt(failure=Failure(FailureKind.FATAL_REPLICA,
                                                    self._redact(self._unreachable(e))))
                if not isinstance(e, aiohttp.ClientError | OSError):
                    raise
                # Reset or cut mid-answer, payload errors: transient (it may have been paid).
                return _Attempt(failure=Failure(
                    FailureKind.TRANSIENT, self._redact(f"{type(e).__name__}: {e}")))
            finally:
                self._limiter.settle(*seen)  # adaptive limits learn from it
        log.debug("request %s: HTTP %d (want %d)", req.id, status, want)
        if status != 200:
            return _Attempt(failure=self._http_failure(status, text, retry_after))
        return self._parse(req, text)

    def request_body(self, req: GenerationRequest, *, want: int | None = None,
                     offset: int = 0) -> dict[str, object]:
        """The JSON body for ``req`` asking ``want`` choices (top-ups shift the seed)."""
        body: dict[str, object] = {
            "model": self.config.model,
            "messages": [{"role": m.role, "content": m.content} for m in req.messages],
            "n": req.n if want is None else want,
            "temperature": req.temperature,
            "max_tokens": req.max_tokens,
        }
        if req.seed is not None:
            body["seed"] = req.seed + offset
        if req.top_logprobs is not None:
            body["logprobs"] = True
            body["top_logprobs"] = req.top_logprobs
        schema = req.json_schema
        mode = self.config.structured_output
        if schema is not None and mode == "response_format":
            body["response_format"] = {"type": "json_schema", "json_schema": {
                "name": "answer", "schema": dict(schema)}}
        elif schema is not None and mode == "vllm":
            body["structured_outputs"] = {"json": dict(schema)}
        elif schema is not None and mode == "vllm_guided":
            body["guided_json"] = dict(schema)
        body.update(self.config.extra_body)
        return body

    def _unreachable(self, e: Exception) -> str:
        os_error = getattr(e, "os_error", None)
        if isinstance(os_error, ConnectionRefusedError):
            reason = "connection refused"
        elif isinstance(os_error, socket.gaierror) or "DNS" in type(e).__name__:
            reason = "host name not resolved"
        elif isinstance(os_error, TimeoutError):
            reason = "connect timed out"
        else:
            reason = str(getattr(os_error, "strerror", None) or type(os_error or e).__name__)
        return (f"cannot connect to {safe_url(self.config.base_url)} ({reason}): is the server "
                "running? check `base_url`")

    def _http_failure(self, status: int, text: str, retry_after: float | None) -> Failure:
        kind = classify_status(status)
        # Auth errors may echo fragments of the key: never repeat their text.
        detail = "" if status in (401, 403) else self._redact(_error_message(text))[:200]
        message = f"HTTP {status}" + (f": {detail}" if detail else "")
        url = safe_url(self.config.base_url)
        if status in (401, 403):
            message += (f" from {url}: the key in ${self.config.api_key_env} was refused"
                        if self.config.api_key_env else
                        f" from {url}: the endpoint wants a key (`api_key_env`)")
        elif status == 404:
            message += f" (check `base_url` {url} and `model`)"
        return Failure(kind, message, retry_after=retry_after, status=status)

    def _parse(self, req: GenerationRequest, text: str) -> _Attempt:
        try:
            data = json.loads(text)
            choices = data["choices"]
            raw_usage = data.get("usage") or {}
            usage = Usage(int(raw_usage.get("prompt_tokens", 0)),
                          int(raw_usage.get("completion_tokens", 0)))
        except (ValueError, KeyError, TypeError) as e:
            return _Attempt(failure=Failure(FailureKind.TRANSIENT,
                                            f"malformed response body ({type(e).__name__})",
                                            status=200))
        got, problems = [], []
        for choice in choices if isinstance(choices, list) else []:
            sample, problem = parse_sample(choice, req.json_schema)
            if sample is not None and req.top_logprobs is not None:
                top = parse_top_logprobs(choice)
                if top is None:
                    return _Attempt(usage=usage, failure=Failure(
                        FailureKind.FATAL_ITEM, NO_LOGPROBS, status=200))
                sample = replace(sample, top_logprobs=top)
            if sample is not None:
                got.append(sample)
            else:
                problems.append(problem)
        return _Attempt(got, usage, problems_failure(req, problems, status=200))

    def _redact(self, text: str) -> str:
        # Always by form too: a URL's password or an extra_body key needs no API key to leak.
        others = self.config.credentials()
        return self._secret.redact(text, others) if self._secret else redact(text, others)


def problems_failure(req: GenerationRequest, problems: Sequence[str],
                     status: int | None = None) -> Failure | None:
    """The verdict on an attempt whose samples had ``problems`` (from :func:`parse_sample`):
    TRUNCATED when any answer was cut off at ``max_tokens`` (resending buys the same cut),
    else BAD_ANSWER for the first problem, else None. Every backend words it this way."""
    cut = [p for p in problems if p.startswith(TRUNCATED)]
    if cut:
        return Failure(FailureKind.TRUNCATED,
                       f"answer {cut[0]} = {req.max_tokens}: raise `max_tokens`"[:300],
                       status=status)
    if problems:
        return Failure(FailureKind.BAD_ANSWER, f"answer rejected: {problems[0]}"[:300],
                       status=status)
    return None


def parse_sample(choice: UntrustedJSON, schema: JSONSchema | None) -> tuple[Sample | None, str]:
    """A validated Sample from one choice, or (None, why not)."""
    try:
        content = choice["message"]["content"]
    except (KeyError, TypeError):
        return None, "choice without message content"
    if not isinstance(content, str):
        return None, "choice content is not text"
    truncated = isinstance(choice, Mapping) and choice.get("finish_reason") == "length"
    if schema is None:
        return Sample(content), ""
    try:
        value = loads_answer(content)
    except json.JSONDecodeError as e:
        if truncated:
            return None, f"{TRUNCATED} (finish_reason length; cut at character {e.pos})"
        return None, f"not JSON ({e.msg} at {e.pos})"
    errors = schema_errors(value, schema)
    if errors:
        return None, f"schema: {errors[0]}"
    return Sample(content, value), ""


def parse_top_logprobs(choice: UntrustedJSON) -> dict[str, float] | None:
    """The first generated token's alternatives (token -> logprob) from a chat choice's
    ``logprobs.content[0].top_logprobs``; None when the answer carries none."""
    try:
        first = choice["logprobs"]["content"][0]
        alternatives = first["top_logprobs"]
    except (KeyError, IndexError, TypeError):
        return None
    out: dict[str, float] = {}
    for alt in alternatives if isinstance(alternatives, list) else []:
        try:
            token, lp = str(alt["token"]), float(alt["logprob"])
        except (KeyError, TypeError, ValueError):
            continue
        out[token] = max(lp, out.get(token, -math.inf))
    return out or None


def classify_status(status: int) -> FailureKind:
    """What an HTTP status means for the scheduler."""
    if status == 429:
        return FailureKind.RATE_LIMITED
    if status in (401, 403, 404):
        return FailureKind.FATAL_REPLICA  # bad key, no access, wrong model/url: not the item
    if status in (408, 409, 425) or status >= 500:
        return FailureKind.TRANSIENT
    return FailureKind.FATAL_ITEM  # 400, 413, 422...: this request cannot succeed as sent


def parse_retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds from ``retry-after-ms``, ``Retry-After`` (seconds or an HTTP date), else None."""
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = headers.get("Retry-After")
    if not value:
        return None
    try:
        seconds = float(value)
        return max(0.0, seconds) if math.isfinite(seconds) else None
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def estimate_tokens(req: GenerationRequest, want: int) -> int:
    """What a provider charges a rate limit before answering: ~4 characters per prompt token plus
    the most the answers may use."""
    chars = sum(len(m.content) for m in req.messages)
    return chars // 4 + req.max_tokens * want


def _error_message(text: str) -> str:
    try:
        data = json.loads(text)
        err = data.get("error", data) if isinstance(data, dict) else data
        msg = err.get("message", "") if isinstance(err, dict) else str(err)
        return str(msg)
    except ValueError:
        return text.strip()


# -- answer validation: JSON Schema (draft 2020-12) by the jsonschema library -------------------
class _SchemaError(Protocol):
    """What is read of a jsonschema ValidationError (jsonschema ships no types)."""

    @property
    def json_path(self) -> str: ...

    @property
    def message(self) -> str: ...


class _Validator(Protocol):
    """What is used of a compiled jsonschema validator."""

    def iter_errors(self, instance: object, /) -> Iterator[_SchemaError]: ...


_Check = Callable[[object], bool]
"""A plain-Python test that an answer is valid (True only where jsonschema would agree)."""

_VALIDATORS: dict[str, tuple[_Validator, _Check | None]] = {}
"""One compiled validator per schema (keyed by its canonical JSON), with its quick check where
the schema has one: judges reuse a handful."""


def _jsonschema() -> ModuleType:
    try:
        import jsonschema
    except ImportError as e:
        raise PluralignError("checking answers against their schema needs jsonschema: "
                             "pip install 'pluralign[distributed]'") from e
    return jsonschema


_LAST: list[tuple[JSONSchema, tuple[_Validator, _Check | None]]] = []
"""The schema last checked against (a copy) and its validator: a judge sends equal schemas with
every request, and comparing one is cheaper than serializing it for :data:`_VALIDATORS`."""


def _validator(schema: JSONSchema) -> tuple[_Validator, _Check | None]:
    """The draft 2020-12 validator of ``schema`` (SchemaError when the schema is malformed) and
    its quick check (:func:`quick_check`)."""
    if _LAST and _LAST[0][0] == schema:
        return _LAST[0][1]
    key = json.dumps(schema, sort_keys=True, default=str)
    found = _VALIDATORS.get(key)
    if found is None:
        cls = _jsonschema().Draft202012Validator
        cls.check_schema(schema)
        found = _VALIDATORS[key] = (cls(schema), quick_check(schema))
    _LAST[:] = [(json.loads(key), found)]  # a copy: a schema changed later is not the same
    return found


def _is_int(v: object) -> bool:
    return type(v) is int  # JSON integers only; 5.0 and booleans go to jsonschema


def _is_number(v: object) -> bool:
    return type(v) is int or type(v) is float


_QUICK_TYPES: dict[str, _Check] = {
    "object": lambda v: type(v) is dict, "array": lambda v: type(v) is list,
    "string": lambda v: type(v) is str, "integer": _is_int, "number": _is_number,
    "boolean": lambda v: type(v) is bool, "null": lambda v: v is None,
}
_QUICK_KEYWORDS = frozenset({"type", "properties", "required", "additionalProperties",
                             "minLength", "maxLength", "minimum", "maximum", "title",
                             "description"})


def _bound(value: object) -> bool:
    return value is None or type(value) in (int, float)


def quick_check(schema: object) -> _Check | None:
    """A plain-Python test for the small part of JSON Schema our judges' answer schemas use
    (``type`` as one name, ``properties``, ``required``, ``additionalProperties`` true or false,
    ``minLength``/``maxLength``, ``minimum``/``maximum``); None for any other schema.

    It is a shortcut, never the judge: True only where jsonschema also finds the value valid
    (it is stricter: an integer written ``5.0`` is left to jsonschema), so a False sends the
    value to jsonschema, which decides and says why.
    """
    if not isinstance(schema, dict) or not schema.keys() <= _QUICK_KEYWORDS:
        return None
    kind = schema.get("type")
    type_ok = _QUICK_TYPES.get(kind) if isinstance(kind, str) else None
    if kind is not None and type_ok is None:
        return None
    props = schema.get("properties", {})
    required = schema.get("required", [])
    extra = schema.get("additionalProperties", True)
    lo_len, hi_len = schema.get("minLength"), schema.get("maxLength")
    lo, hi = schema.get("minimum"), schema.get("maximum")
    if (not isinstance(props, dict) or type(required) is not list
            or not all(type(r) is str for r in required) or type(extra) is not bool
            or not all(v is None or type(v) is int for v in (lo_len, hi_len))
            or not (_bound(lo) and _bound(hi))):
        return None
    checks: dict[str, _Check] = {}
    for name, sub in props.items():
        check = quick_check(sub)
        if check is None:
            return None
        checks[name] = check
    needed = tuple(required)

    def ok(v: object) -> bool:
        if type_ok is not None and not type_ok(v):
            return False
        t = type(v)
        if t is dict:
            assert isinstance(v, dict)
            for name in needed:
                if name not in v:
                    return False
            for name, x in v.items():
                check = checks.get(name)
                if check is None:
                    if not extra:
                        return False
                elif not check(x):
                    return False
            return True
        if t is str:
            assert isinstance(v, str)
            return (lo_len is None or len(v) >= lo_len) and (hi_len is None or len(v) <= hi_len)
        if t is int or t is float:
            assert isinstance(v, int | float)
            return (lo is None or v >= lo) and (hi is None or v <= hi)
        return t is bool or t is list or v is None  # anything else is left to jsonschema

    return ok


def schema_errors(value: object, schema: JSONSchema) -> list[str]:
    """Why ``value`` is not valid against ``schema`` (JSON Schema draft 2020-12; empty when
    valid), the most telling first, each as ``<JSON path>: <what is wrong>``.

    A schema that cannot be checked (malformed, or a reference that does not resolve) gives an
    error too, never a pass: a schema we cannot check must not let bad answers through.
    """
    try:
        validator, quick = _validator(schema)
        if quick is not None and quick(value):
            return []
        errors = list(validator.iter_errors(value))
    except Exception as e:  # SchemaError, or an unresolvable $ref raised while validating
        why = getattr(e, "message", None) or str(e) or type(e).__name__
        return [f"$: schema cannot be checked: {why}"]
    if not errors:
        return []
    exceptions = _jsonschema().exceptions
    best = exceptions.best_match(errors)
    rest = sorted((e for e in errors if e is not best), key=exceptions.relevance, reverse=True)
    return [f"{e.json_path}: {e.message}" for e in (best, *rest)]
