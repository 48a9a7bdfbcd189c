"""The one protocol behind everything that answers prompts: API clients, vLLM replicas, fakes.

A backend takes a batch of typed requests and returns exactly one typed result per request, in
order: the samples, or a failure whose ``kind`` says what the scheduler should do. Backends
register by name as lazy ``"module:Class"`` entries so their SDKs load only when used.
"""

from __future__ import annotations

import enum
import importlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from pluralign.engine.jsontypes import JSONSchema, UntrustedJSON
from pluralign.engine.store.hashing import digest

NO_LOGPROBS = "this endpoint returns no log-probabilities: use `samples` instead"
"""Failure message when log-probabilities were asked for and the answer has none."""


@dataclass(frozen=True)
class Message:
    """One chat message."""

    role: str
    """``system``, ``user`` or ``assistant``."""
    content: str
    """The text."""


@dataclass(frozen=True)
class GenerationRequest:
    """One prompt to answer, with everything that changes the answer."""

    id: str
    """Caller's id for the request (the work item's key); echoed in the result."""
    messages: tuple[Message, ...]
    """The conversation to continue."""
    json_schema: JSONSchema | None = None
    """If set, the answer must be JSON valid against this schema (structured output)."""
    n: int = 1
    """Number of samples."""
    temperature: float = 0.0
    """Sampling temperature; 0 is greedy."""
    seed: int | None = None
    """Sampling seed, where the backend honours one."""
    max_tokens: int = 1024
    """Upper bound on generated tokens per sample."""
    max_sends: int | None = None
    """Most times a backend may send this request, its own retries included (None: its own
    limit). The scheduler sets it so that one item has one retry budget, whoever retries; it
    does not change the answer, so it is not part of the fingerprint."""
    top_logprobs: int | None = None
    """If set, also return the log-probabilities of this many most likely alternatives of the
    first generated token (``Sample.top_logprobs``); part of the fingerprint only when set."""

    def fingerprint(self) -> str:
        """SHA-256 (16 hex) of every field that changes the answer (not ``id``).

        Worked out once per request object (the fields are frozen; a ``replace`` copy works it
        out again): a judge asks for it when it stores the answer."""
        known = self.__dict__.get("_fingerprint")
        if known is not None:
            return str(known)
        payload = {
            "messages": [(m.role, m.content) for m in self.messages],
            "schema": self.json_schema,
            "n": self.n,
            "temperature": self.temperature,
            "seed": self.seed,
            "max_tokens": self.max_tokens,
        }
        if self.top_logprobs is not None:
            payload["top_logprobs"] = self.top_logprobs
        found = digest(payload, 16)
        self.__dict__["_fingerprint"] = found  # not a field: equality and repr ignore it
        return found


@dataclass(frozen=True)
class Usage:
    """Token accounting for one request."""

    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class Sample:
    """One generated answer."""

    text: str
    """Raw text as returned."""
    parsed: UntrustedJSON = None
    """The JSON value when a schema was requested and the text parsed and validated."""
    top_logprobs: Mapping[str, float] | None = None
    """When the request asked for them: the first generated token's most likely alternatives,
    token -> natural-log probability."""


class FailureKind(enum.Enum):
    """What a failure means for the scheduler (the backend decides, the scheduler acts)."""

    RATE_LIMITED = "rate_limited"
    """Slow down and retry after ``retry_after`` seconds."""
    TRANSIENT = "transient"
    """Retry with backoff (5xx, timeout, connection reset)."""
    BAD_ANSWER = "bad_answer"
    """The answer did not parse or validate; retry a bounded number of times."""
    TRUNCATED = "truncated"
    """The answer was cut off at max_tokens (``finish_reason == "length"``); resending the same
    request buys the same cut, so it is not retried (raise max_tokens instead)."""
    FATAL_ITEM = "fatal_item"
    """This request can never succeed (too long, rejected); record and move on."""
    FATAL_REPLICA = "fatal_replica"
    """The backend itself is broken (auth, dead engine); reroute the item, retire the replica."""


@dataclass(frozen=True)
class Failure:
    """Why a request produced no usable answer."""

    kind: FailureKind
    message: str
    """Human-readable reason; must never contain credentials."""
    retry_after: float | None = None
    """Seconds to wait, when the server said so."""
    status: int | None = None
    """HTTP status, where there was one."""


@dataclass(frozen=True)
class GenerationResult:
    """Exactly one per request: samples on success, else a failure."""

    id: str
    """The request's id."""
    samples: tuple[Sample, ...] = ()
    usage: Usage = field(default_factory=Usage)
    failure: Failure | None = None
    attempts: int = 1
    """How many tries it took (retries inside the backend included)."""

    @property
    def ok(self) -> bool:
        return self.failure is None


@runtime_checkable
class Backend(Protocol):
    """Anything that answers prompts."""

    name: str

    async def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        """Answer a batch: one result per request, same order, never raising for one bad item."""
        ...

    async def close(self) -> None:
        """Release connections and engines."""
        ...


_REGISTRY: dict[str, str] = {}


def register_backend(name: str, target: str) -> None:
    """Register ``"module:Class"`` under ``name``; a different target for a taken name is an
    error (collisions are bugs, not overrides)."""
    if name in _REGISTRY and _REGISTRY[name] != target:
        raise ValueError(f"backend {name!r} already registered as {_REGISTRY[name]}")
    _REGISTRY[name] = target


def backend_class(name: str) -> type:
    """Import and return the class registered as ``name`` (lazy: SDKs load only here)."""
    if name not in _REGISTRY:
        raise KeyError(f"unknown backend {name!r}; known: {', '.join(sorted(_REGISTRY))}")
    module, _, cls = _REGISTRY[name].partition(":")
    obj: type = getattr(importlib.import_module(module), cls)
    return obj


def registered_backends() -> list[str]:
    return sorted(_REGISTRY)


# Built-in backends; the modules are imported only when a backend is asked for by name.
register_backend("openai", "pluralign.actors.backends.api_client:OpenAIBackend")
register_backend("vllm", "pluralign.actors.backends.vllm_replica:VLLMBackend")
