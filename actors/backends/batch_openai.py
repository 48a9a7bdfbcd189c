"""OpenAI's Batch API (and any server speaking it): upload a JSONL of chat requests, create a
batch with a 24 h window, look at it, download its output and error files, and turn each line
back into the :class:`GenerationResult` of its ``custom_id``, judged exactly as an online
answer is (the same parsing, schema checks and failure kinds as ``api_client``).

Plain aiohttp like the online client: we own retries and error text, and the key never leaves
this module except in the Authorization header.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Protocol

from pluralign.actors.backends.api_client import (
    APIClientConfig,
    OpenAIBackend,
    classify_status,
    parse_retry_after,
    parse_sample,
    parse_top_logprobs,
    problems_failure,
    read_api_key,
    route_url,
)
from pluralign.engine.errors import PluralignError
from pluralign.engine.jsontypes import UntrustedJSON
from pluralign.engine.run.backend import (
    NO_LOGPROBS,
    Failure,
    FailureKind,
    GenerationRequest,
    GenerationResult,
    Usage,
)
from pluralign.engine.store.redaction import redact

if TYPE_CHECKING:
    import aiohttp

log = logging.getLogger(__name__)

CHAT_URL = "/v1/chat/completions"
TERMINAL = frozenset({"completed", "failed", "expired", "cancelled"})
"""Batch statuses after which nothing more happens at the provider."""
MAX_REQUESTS = 50_000
"""Most requests OpenAI takes in one batch."""
MAX_BYTES = 190 * 1024 * 1024
"""Largest input file we upload (OpenAI's limit is 200 MB; a margin for the multipart)."""


class BatchAPIError(PluralignError):
    """The provider refused a batch call (the message says which and why; never the key)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class BatchView:
    """What the provider says about one batch."""

    id: str
    status: str
    input_file_id: str | None
    output_file_id: str | None
    error_file_id: str | None
    total: int
    completed: int
    failed: int
    errors: str
    """The batch-level errors (why it failed validation), as text."""

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    @classmethod
    def of(cls, raw: Mapping[str, Any]) -> BatchView:
        counts = raw.get("request_counts") or {}
        errors = raw.get("errors") or {}
        data = errors.get("data") if isinstance(errors, Mapping) else None
        text = "; ".join(f"{e.get('code')}: {e.get('message')}" for e in data or []
                         if isinstance(e, Mapping))
        return cls(str(raw["id"]), str(raw.get("status")), raw.get("input_file_id"),
                   raw.get("output_file_id"), raw.get("error_file_id"),
                   int(counts.get("total", 0) or 0), int(counts.get("completed", 0) or 0),
                   int(counts.get("failed", 0) or 0), text)


def request_line(body: Mapping[str, object], custom_id: str) -> bytes:
    """One line of a batch input file."""
    line = {"custom_id": custom_id, "method": "POST", "url": CHAT_URL, "body": dict(body)}
    return (json.dumps(line, separators=(",", ":")) + "\n").encode()


def split_lines(lines: Sequence[bytes], *, max_requests: int = MAX_REQUESTS,
                max_bytes: int = MAX_BYTES) -> list[list[int]]:
    """Indices of ``lines`` grouped into batches within the provider's request and byte
    limits, in order. A single line over ``max_bytes`` goes alone (the provider will say)."""
    groups: list[list[int]] = []
    size = 0
    for i, line in enumerate(lines):
        if not groups or len(groups[-1]) >= max_requests or size + len(line) > max_bytes:
            groups.append([])
            size = 0
        groups[-1].append(i)
        size += len(line)
    return groups


class BatchClient(Protocol):
    """A provider's Batch API as the batch lane uses it (OpenAI's, Anthropic's)."""

    provider: str

    def line(self, req: GenerationRequest, custom_id: str) -> bytes:
        """One request of a batch input, as a JSONL line."""
        ...

    async def upload(self, lines: Sequence[bytes], name: str) -> str:
        """Make ``lines`` available to :meth:`create`; returns their reference."""
        ...

    async def create(self, input_ref: str, metadata: Mapping[str, str]) -> BatchView: ...

    async def find(self, input_ref: str, since: float = 0.0) -> BatchView | None:
        """The batch already created from ``input_ref`` (after ``since``), if any."""
        ...

    async def get(self, batch_id: str) -> BatchView: ...

    async def cancel(self, batch_id: str) -> BatchView: ...

    async def content(self, file_id: str) -> bytes: ...

    def results(self, data: bytes, requests: Mapping[str, GenerationRequest]
                ) -> dict[str, GenerationResult]:
        """custom_id -> result of each line of a downloaded output or error file."""
        ...

    async def close(self) -> None: ...


class OpenAIBatchClient:
    """The Batch API of an OpenAI-compatible endpoint (``config.base_url``, key from
    ``config.api_key_env`` as the online client reads it)."""

    provider = "openai"

    def __init__(self, config: APIClientConfig, *, retries: int = 8) -> None:
        self.config = config
        self._online = OpenAIBackend(config)  # its request bodies: one shape for both lanes
        self._key: str | None = None
        self._session: aiohttp.ClientSession | None = None
        self._retries = retries

    def __repr__(self) -> str:
        return f"OpenAIBatchClient(model={self.config.model!r})"

    def body(self, req: GenerationRequest) -> dict[str, object]:
        """The request body the online lane would send for ``req``."""
        return self._online.request_body(req)

    def line(self, req: GenerationRequest, custom_id: str) -> bytes:
        return request_line(self.body(req), custom_id)

    def results(self, data: bytes, requests: Mapping[str, GenerationRequest]
                ) -> dict[str, GenerationResult]:
        return results_of(data, requests)

    async def start(self) -> None:
        if self._session is not None:
            return
        import aiohttp

        self._key = read_api_key(self.config)
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=max(self.config.timeout, 300.0)))

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
        await self._online.close()

    def _url(self, path: str) -> str:
        if path.startswith(("http://", "https://")):
            return path
        return route_url(self.config.base_url, path.lstrip("/"))

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._key}"} if self._key else {}

    async def _call(self, method: str, path: str, *, json_body: object = None,
                    data: Any = None, raw: bool = False) -> Any:
        """One API call with retries on 429/5xx/connection errors (Retry-After honoured)."""
        import aiohttp

        await self.start()
        assert self._session is not None
        delay = 1.0
        for attempt in range(self._retries + 1):
            try:
                async with self._session.request(method, self._url(path), json=json_body,
                                                 data=data, headers=self._headers()) as resp:
                    status = resp.status
                    body = await resp.read()
                    wait = parse_retry_after(resp.headers)
            except (aiohttp.ClientError, OSError, TimeoutError) as e:
                if attempt == self._retries:
                    raise BatchAPIError(self._redact(
                        f"{method} {path}: {type(e).__name__}: {e}")) from None
                await asyncio.sleep(delay)
                delay = min(60.0, delay * 2)
                continue
            if status == 200:
                return body if raw else json.loads(body)
            kind = classify_status(status)
            if kind in (FailureKind.RATE_LIMITED, FailureKind.TRANSIENT) and \
                    attempt < self._retries:
                await asyncio.sleep(max(delay, wait or 0.0))
                delay = min(60.0, delay * 2)
                continue
            detail = "" if status in (401, 403) else self._redact(_message(body))[:200]
            raise BatchAPIError(f"{method} {path}: HTTP {status}" +
                                (f": {detail}" if detail else ""), status)
        raise AssertionError("unreachable")

    def _redact(self, text: str) -> str:
        return redact(text, (self._key,)) if self._key else text

    async def upload(self, lines: Sequence[bytes], name: str) -> str:
        """Upload a batch input file; its id."""
        import aiohttp

        form = aiohttp.FormData()
        form.add_field("purpose", "batch")
        form.add_field("file", b"".join(lines), filename=f"{name}.jsonl",
                       content_type="application/jsonl")
        got = await self._call("POST", "files", data=form)
        return str(got["id"])

    async def create(self, input_file_id: str, metadata: Mapping[str, str]) -> BatchView:
        got = await self._call("POST", "batches", json_body={
            "input_file_id": input_file_id, "endpoint": CHAT_URL, "completion_window": "24h",
            "metadata": dict(metadata)})
        return BatchView.of(got)

    async def get(self, batch_id: str) -> BatchView:
        return BatchView.of(await self._call("GET", f"batches/{batch_id}"))

    async def cancel(self, batch_id: str) -> BatchView:
        return BatchView.of(await self._call("POST", f"batches/{batch_id}/cancel"))

    async def find(self, input_file_id: str, since: float = 0.0,
                   pages: int = 20) -> BatchView | None:
        """The batch created from ``input_file_id``, if the provider has one (newest first;
        what a process killed between creating a batch and writing its id down looks up)."""
        after: str | None = None
        for _ in range(pages):
            path = "batches?limit=100" + (f"&after={after}" if after else "")
            got = await self._call("GET", path)
            for raw in got.get("data") or []:
                if raw.get("input_file_id") == input_file_id:
                    return BatchView.of(raw)
            if not got.get("has_more") or not got.get("last_id"):
                return None
            after = str(got["last_id"])
        return None

    async def content(self, file_id: str) -> bytes:
        data: bytes = await self._call("GET", f"files/{file_id}/content", raw=True)
        return data


def results_of(data: bytes, requests: Mapping[str, GenerationRequest]) -> dict[str, GenerationResult]:
    """custom_id -> result for each line of an output or error file whose custom_id is one of
    ``requests`` (others are ignored: never trust a file to name only our items)."""
    out: dict[str, GenerationResult] = {}
    for line in data.decode("utf-8", errors="replace").splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        cid = row.get("custom_id") if isinstance(row, dict) else None
        req = requests.get(str(cid)) if cid is not None else None
        if req is None:
            continue
        out[req.id] = line_result(req, row)
    return out


def line_result(req: GenerationRequest, row: Mapping[str, UntrustedJSON]) -> GenerationResult:
    """The result of one output/error line, judged as the online client judges an answer."""
    error, response = row.get("error"), row.get("response")
    if not isinstance(response, Mapping):
        code = error.get("code") if isinstance(error, Mapping) else None
        message = error.get("message") if isinstance(error, Mapping) else None
        # Expired or cancelled before it ran: not answered, nothing paid; send it again.
        return GenerationResult(req.id, failure=Failure(
            FailureKind.TRANSIENT, f"batch: {code or 'no response'}: {message or ''}"[:300]))
    status = int(response.get("status_code") or 0)
    body = response.get("body")
    if status != 200 or not isinstance(body, Mapping):
        err = body.get("error") if isinstance(body, Mapping) else None
        message = err.get("message") if isinstance(err, Mapping) else str(err or "")
        return GenerationResult(req.id, failure=Failure(
            classify_status(status), f"batch: HTTP {status}: {message}"[:300], status=status))
    raw_usage = body.get("usage") or {}
    usage = Usage(int(raw_usage.get("prompt_tokens", 0) or 0),
                  int(raw_usage.get("completion_tokens", 0) or 0)) \
        if isinstance(raw_usage, Mapping) else Usage()
    choices = body.get("choices")
    samples, problems = [], []
    for choice in choices if isinstance(choices, list) else []:
        sample, problem = parse_sample(choice, req.json_schema)
        if sample is not None and req.top_logprobs is not None:
            top = parse_top_logprobs(choice)
            if top is None:
                return GenerationResult(req.id, (), usage, Failure(
                    FailureKind.FATAL_ITEM, NO_LOGPROBS, status=200))
            sample = replace(sample, top_logprobs=top)
        if sample is not None:
            samples.append(sample)
        else:
            problems.append(problem)
    if len(samples) >= req.n:
        return GenerationResult(req.id, tuple(samples[:req.n]), usage)
    failure = problems_failure(req, problems, status=200) or Failure(
        FailureKind.BAD_ANSWER, "fewer choices than asked", status=200)
    return GenerationResult(req.id, (), usage, failure)


def _message(body: bytes) -> str:
    try:
        data = json.loads(body)
        err = data.get("error", data) if isinstance(data, dict) else data
        return str(err.get("message", "") if isinstance(err, dict) else err)
    except ValueError:
        return body.decode("utf-8", errors="replace").strip()
