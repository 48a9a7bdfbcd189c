"""Anthropic's Message Batches (``POST /v1/messages/batches``): the batch lane's client for
Claude models. Requests go inline (no file upload), each ``{"custom_id", "params"}`` in the
Messages API's own shape: the system prompt apart, structured answers through one forced tool
whose ``input_schema`` is the answer schema. Results come as JSONL by ``custom_id`` from the
batch's ``results_url`` and are judged as every other answer (schema checked, same failure
kinds).

Since nothing is uploaded, the input is kept beside the batch journal (``<cache>/.batches/``),
so a run killed between writing it and creating the batch still has it; a batch whose creation
was cut off is found again among the provider's newest batches by its size and time (Anthropic
lists neither metadata nor custom ids).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from pluralign.actors.backends.api_client import (
    APIClientConfig,
    classify_status,
    problems_failure,
    schema_errors,
)
from pluralign.actors.backends.batch_openai import BatchView, OpenAIBatchClient
from pluralign.engine.errors import InputError
from pluralign.engine.jsontypes import UntrustedJSON
from pluralign.engine.run.backend import (
    Failure,
    FailureKind,
    GenerationRequest,
    GenerationResult,
    Sample,
    Usage,
)

ANTHROPIC_VERSION = "2023-06-01"
TOOL = "answer"
"""Name of the forced tool that carries a structured answer."""
_STATUS = {"in_progress": "in_progress", "canceling": "cancelling", "ended": "completed"}


def is_anthropic(model: str, base_url: str) -> bool:
    """Whether the batch lane speaks Anthropic's Message Batches for this model/endpoint."""
    return model.rsplit("/", 1)[-1].startswith("claude") or "anthropic.com" in base_url


class AnthropicBatchClient(OpenAIBatchClient):
    """Message Batches over the HTTP plumbing (retries, Retry-After, redaction) of the OpenAI
    batch client; ``spool`` is where inputs wait to be sent (the journal's folder)."""

    provider = "anthropic"

    def __init__(self, config: APIClientConfig, spool: Path, *, retries: int = 8) -> None:
        super().__init__(config, retries=retries)
        self.spool = Path(spool)

    def _headers(self) -> dict[str, str]:
        headers = {"anthropic-version": ANTHROPIC_VERSION}
        if self._key:
            headers["x-api-key"] = self._key
        return headers

    def params(self, req: GenerationRequest) -> dict[str, object]:
        """The Messages API body of ``req`` (one sample: Anthropic has no ``n``)."""
        if req.n != 1:
            raise InputError(f"Anthropic answers one sample per request, this one asks {req.n}",
                             field="samples", hint="each sample is its own item and request")
        system = "\n\n".join(m.content for m in req.messages if m.role == "system")
        params: dict[str, object] = {
            "model": self.config.model, "max_tokens": req.max_tokens,
            "temperature": req.temperature,
            "messages": [{"role": m.role, "content": m.content} for m in req.messages
                         if m.role != "system"],
        }
        if system:
            params["system"] = system
        if req.json_schema is not None:
            params["tools"] = [{"name": TOOL, "description": "Give the answer.",
                                "input_schema": dict(req.json_schema)}]
            params["tool_choice"] = {"type": "tool", "name": TOOL}
        params.update(self.config.extra_body)
        return params

    def line(self, req: GenerationRequest, custom_id: str) -> bytes:
        row = {"custom_id": custom_id, "params": self.params(req)}
        return (json.dumps(row, separators=(",", ":")) + "\n").encode()

    async def upload(self, lines: Sequence[bytes], name: str) -> str:
        self.spool.mkdir(parents=True, exist_ok=True)
        path = self.spool / f"{name}.jsonl"
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(b"".join(lines))
        tmp.replace(path)
        return f"local:{path.name}"

    def _requests(self, input_ref: str) -> list[Any]:
        path = self.spool / input_ref.removeprefix("local:")
        return [json.loads(x) for x in path.read_bytes().decode().splitlines() if x]

    async def create(self, input_ref: str, metadata: Mapping[str, str]) -> BatchView:
        got = await self._call("POST", "messages/batches",
                               json_body={"requests": self._requests(input_ref)})
        return view_of(got)

    async def get(self, batch_id: str) -> BatchView:
        return view_of(await self._call("GET", f"messages/batches/{batch_id}"))

    async def cancel(self, batch_id: str) -> BatchView:
        return view_of(await self._call("POST", f"messages/batches/{batch_id}/cancel"))

    async def content(self, file_id: str) -> bytes:
        """The results JSONL at a batch's ``results_url``."""
        data: bytes = await self._call("GET", file_id, raw=True)
        return data

    async def find(self, input_ref: str, since: float = 0.0,
                   pages: int = 5) -> BatchView | None:
        """The newest batch created after ``since`` with as many requests as ``input_ref``."""
        want = len(self._requests(input_ref))
        got = await self._call("GET", "messages/batches?limit=100")
        for raw in got.get("data") or []:
            counts = raw.get("request_counts") or {}
            if sum(int(v or 0) for v in counts.values()) == want and \
                    _epoch(raw.get("created_at")) >= since:
                return view_of(raw)
        return None

    def results(self, data: bytes, requests: Mapping[str, GenerationRequest]
                ) -> dict[str, GenerationResult]:
        out: dict[str, GenerationResult] = {}
        for text in data.decode("utf-8", errors="replace").splitlines():
            try:
                row = json.loads(text)
            except ValueError:
                continue
            req = requests.get(str(row.get("custom_id"))) if isinstance(row, dict) else None
            if req is not None:
                out[req.id] = result_of(req, row.get("result") or {})
        return out


def view_of(raw: Mapping[str, Any]) -> BatchView:
    """A Message Batch as the lane sees batches (``ended`` is ``completed``; its results URL
    is the one file to download)."""
    counts = raw.get("request_counts") or {}
    status = _STATUS.get(str(raw.get("processing_status")), str(raw.get("processing_status")))
    return BatchView(str(raw["id"]), status, None, raw.get("results_url"), None,
                     sum(int(v or 0) for v in counts.values()),
                     int(counts.get("succeeded", 0) or 0),
                     sum(int(counts.get(k, 0) or 0) for k in ("errored", "canceled", "expired")),
                     "")


def result_of(req: GenerationRequest, result: Mapping[str, UntrustedJSON]) -> GenerationResult:
    """One result line: a succeeded message (the forced tool's input, or its text), or why
    not (errored: by its error type; canceled and expired: not run, send again)."""
    kind = result.get("type")
    if kind != "succeeded":
        err = result.get("error")
        etype = err.get("type") if isinstance(err, Mapping) else None
        status = {"invalid_request_error": 400, "rate_limit_error": 429,
                  "overloaded_error": 529}.get(str(etype), 500)
        failure_kind = FailureKind.TRANSIENT if kind in ("canceled", "expired") else \
            classify_status(status)
        return GenerationResult(req.id, failure=Failure(failure_kind,
                                                        f"batch: {kind}: {etype or ''}"[:300]))
    message = result.get("message")
    message = message if isinstance(message, Mapping) else {}
    raw_usage = message.get("usage")
    usage = Usage(int(raw_usage.get("input_tokens", 0) or 0),
                  int(raw_usage.get("output_tokens", 0) or 0)) \
        if isinstance(raw_usage, Mapping) else Usage()
    content = message.get("content")
    blocks = [b for b in content if isinstance(b, Mapping)] if isinstance(content, list) else []
    truncated = message.get("stop_reason") == "max_tokens"
    if req.json_schema is None:
        text = "".join(str(b.get("text", "")) for b in blocks if b.get("type") == "text")
        return GenerationResult(req.id, (Sample(text),), usage)
    tool = next((b for b in blocks if b.get("type") == "tool_use"), None)
    value = tool.get("input") if tool is not None else None
    problems = ["truncated at max_tokens (stop_reason max_tokens)"] if truncated else []
    if value is None:
        problems.append("no tool_use answer")
    else:
        errors = schema_errors(value, req.json_schema)
        if not errors:
            return GenerationResult(req.id, (Sample(json.dumps(value), value),), usage)
        problems.append(f"schema: {errors[0]}")
    failure = problems_failure(req, problems, status=200)
    assert failure is not None
    return GenerationResult(req.id, (), usage, failure)


def _epoch(value: object) -> float:
    """Seconds since the epoch of an RFC 3339 time (Anthropic) or a number."""
    if isinstance(value, int | float):
        return float(value)
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return time.time()
