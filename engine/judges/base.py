"""What every LLM judge shares: settings, work items, answer errors and cache-row helpers.

A judge is pure: it turns (scenario, attribute or target, sample index) into a
:class:`GenerationRequest` and parses the :class:`GenerationResult` back into cache rows.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Protocol

from pluralign.engine.data.benchmark import Benchmark
from pluralign.engine.errors import AnswerError as AnswerError
from pluralign.engine.jsontypes import UntrustedJSON
from pluralign.engine.run.backend import GenerationRequest, GenerationResult
from pluralign.engine.store.hashing import digest

SCALE = 100
"""Judges answer integer scores on 0..SCALE; predictions are score / SCALE."""

REASONING_MAX = 512
"""Longest reasoning the answer schema allows."""

ItemKind = Literal["scores", "choice", "generation"]
"""Where an item's rows go: the score cache, the choice cache, or the generation cache."""


@dataclass(frozen=True)
class JudgeSettings:
    """Everything about the model call that changes the answer (part of the judge identity)."""

    model: str
    """Model name (and revision, when the endpoint has several)."""
    temperature: float = 0.0
    """Sampling temperature; 0 is greedy (then one sample is enough)."""
    max_tokens: int = 1024
    """Upper bound on generated tokens per answer."""
    seed: int | None = None
    """Base sampling seed; each request gets a seed derived from it and the item key."""
    few_shot: bool = False
    """Add in-context examples from the training split (comparative and regression judges)."""
    similarity: str = "tfidf"
    """Text similarity that ranks in-context examples: ``tfidf`` or ``embedding``."""
    decoding: str | None = None
    """The backend's structured-output mode where it changes answers (a vLLM replica's
    grammar backend and whitespace rule); None where the endpoint decides (HTTP backends)."""

    revision: str | None = None
    """Model revision (a commit or tag of the weights); None where the endpoint has one."""
    backend: str = "openai"
    """Backend kind: ``openai`` (any OpenAI-compatible HTTP endpoint) or ``vllm``."""
    structured_output: str = "response_format"
    """How an HTTP request asks for the answer schema (``response_format``, ``vllm``,
    ``vllm_guided``, ``none``): constrained decoding changes what the model writes."""
    extra_body: str = "{}"
    """Extra request-body fields as canonical JSON (they reach the model, e.g. top_p)."""
    prompts: str | None = None
    """Hash of a user prompts file (templates and definitions); None for our wording."""
    shots: int | None = None
    """In-context examples per query of a few-shot judge (per label level for the regression
    judges' rubric); None is the judge's default (``make_judge`` turns an explicit default
    into None, so asking for the default keeps the identity)."""

    def identity_extra(self) -> dict[str, object]:
        """Identity settings recorded only when they differ from the default (so older
        identities stay valid)."""
        defaults = {"decoding": None, "revision": None, "backend": "openai",
                    "structured_output": "response_format", "extra_body": "{}",
                    "prompts": None, "shots": None}
        return {k: getattr(self, k) for k, d in defaults.items() if getattr(self, k) != d}

    def as_dict(self) -> dict[str, Any]:
        """The fields by name (``JudgeSettings(**s.as_dict())`` rebuilds ``s``)."""
        return asdict(self)


@dataclass(frozen=True)
class WorkItem:
    """One model call's worth of work, for any LLM job (a judge's answer, a SPICA generation);
    ``key`` is content-addressed (equal work, equal key)."""

    key: str
    """Hash of the cache keys this item fills; duplicates share it. For a generation item it is
    the generation cache key, which is also its request's id."""
    kind: ItemKind
    """``scores`` (rows in the score cache), ``choice`` (a row in the choice cache) or
    ``generation`` (one outcome in the generation cache)."""
    scenario: int
    """Scenario index in the benchmark; a generation item's position among its prompts."""
    sample: int
    """Sample index (self-consistency, or a generation's seed); 0 for greedy."""
    attribute: str | None = None
    """Attribute scored (regression judges)."""
    response: int | None = None
    """Response scored (per-response regression only)."""
    target: str | None = None
    """Canonical target JSON (prompt-aligned); ``""`` for the target-free unaligned judge."""
    row_keys: tuple[str, ...] = field(default=())
    """Cache keys of the rows this item writes; the item is done when all are cached."""
    request: GenerationRequest | None = None
    """The prepared model call, where the item carries one (generation items: the prompt is
    built before the key, which hashes it); judges build theirs from the fields above."""
    task: str | None = None
    """What a generation is for (``class-response`` or ``aligned``, stored with its outcome);
    None for judges."""
    labels: Mapping[str, str] = field(default_factory=dict, hash=False)
    """What a generation's answer belongs to (scenario/class/sample, or query/group/setup);
    empty for judges. Left out of the hash, so items stay hashable."""


class Task(Protocol):
    """What the scheduler needs of any LLM job (a judge, SPICA generation): one request per
    work item and the rows its answer, or its failure, becomes."""

    name: str
    """Job name, e.g. ``comparative-regression``."""
    identity: str
    """Identity used in cache lookups and progress (a judge's: name plus a hash of everything
    that changes answers; a generation's: the model identity)."""
    kind: ItemKind

    def request(self, item: WorkItem) -> GenerationRequest:
        """The model call for ``item`` (id = item key)."""
        ...

    def parse(self, item: WorkItem, result: GenerationResult) -> Sequence[Mapping[str, object]]:
        """Rows for a successful result; raises :class:`AnswerError` for a malformed answer."""
        ...

    def failure_rows(self, item: WorkItem, reason: str) -> Sequence[Mapping[str, object]]:
        """Rows recording that ``item`` failed (error set, no answer)."""
        ...

    def describe(self) -> dict[str, object]:
        """Decoded settings for the run manifest (a judge's: identity, settings, templates
        with hash and text, definitions, few-shot rule)."""
        ...


class Judge(Task, Protocol):
    """An LLM judge: a :class:`Task` that also lists its own work items."""

    def items(
        self, scenarios: Sequence[int], samples: int, targets: Sequence[str] | None = None
    ) -> list[WorkItem]:
        """Work items for these scenario indices and sample count (targets: prompt-aligned)."""
        ...


BUILT_MAX = 1 << 16
"""Most requests a judge keeps for its answers to come back (:class:`BuiltRequests`)."""


class BuiltRequests:
    """The requests a judge built, by item, until their answers are parsed.

    Parsing an answer needs what its request was built from (the response order, the prompt's
    fingerprint for provenance); taking them from the request that was sent costs nothing, where
    building the request again cost as much as the first time. Bounded by ``most``: the oldest
    are forgotten first (an item whose answer never comes back), and a forgotten one is built
    again, so what is parsed never depends on what was kept.
    """

    def __init__(self, most: int = BUILT_MAX) -> None:
        self.most = most
        self._by_key: dict[str, tuple[WorkItem, GenerationRequest, tuple[int, ...]]] = {}

    def keep(self, item: WorkItem, request: GenerationRequest,
             order: tuple[int, ...] = ()) -> GenerationRequest:
        """Remember ``request`` (and the response ``order`` it shows) for ``item``; returns it."""
        if item.key not in self._by_key and len(self._by_key) >= self.most:
            del self._by_key[next(iter(self._by_key))]
        self._by_key[item.key] = (item, request, order)
        return request

    def take(self, item: WorkItem,
             build: Callable[[WorkItem], GenerationRequest]) -> tuple[GenerationRequest,
                                                                      tuple[int, ...]]:
        """The request kept for ``item`` and its order, forgotten here; when none is kept (or
        one for another item with the same key), ``build`` makes it again (and keeps it)."""
        found = self._by_key.pop(item.key, None)
        if found is None or (found[0] is not item and found[0] != item):
            build(item)
            found = self._by_key.pop(item.key)
        return found[1], found[2]

    def drop(self, item: WorkItem) -> None:
        """Forget ``item``'s request (it failed: no answer will be parsed)."""
        self._by_key.pop(item.key, None)

    def __len__(self) -> int:
        return len(self._by_key)


def item_key(row_keys: Sequence[str]) -> str:
    """Content address of a work item: the hash of the row keys it fills."""
    return digest(list(row_keys), 32)


def letters(k: int) -> tuple[str, ...]:
    """``A``, ``B``, ... for k choices (at most 26)."""
    if not 1 <= k <= 26:
        raise ValueError(f"cannot letter {k} responses (1..26)")
    return tuple(chr(ord("A") + i) for i in range(k))


_FENCE = re.compile(r"\A```[A-Za-z0-9_-]*[ \t]*\r?\n?(.*?)\r?\n?[ \t]*```\Z", re.DOTALL)


def loads_answer(text: str) -> UntrustedJSON:
    """The JSON value of an answer as real engines send it: surrounding whitespace and one
    Markdown code fence (```json ... ```) are removed, and raw control characters inside
    strings (tab, U+0015: valid to grammar-constrained decoders, refused by a strict
    ``json.loads``) are accepted. Raises ``json.JSONDecodeError`` for anything else."""
    body = text.strip()
    fenced = _FENCE.match(body)
    if fenced is not None:
        body = fenced.group(1).strip()
    return json.loads(body, strict=False)


def answer_json(result: GenerationResult) -> UntrustedJSON:
    """The first sample's JSON value (the backend's parsed value, else the text parsed here)."""
    if not result.samples:
        raise AnswerError("no samples in the answer")
    s = result.samples[0]
    if s.parsed is not None:
        return s.parsed
    if not isinstance(s.text, str):
        raise AnswerError("answer is not text")
    try:
        return loads_answer(s.text)
    except json.JSONDecodeError as e:
        raise AnswerError(f"answer is not JSON ({e.msg} at {e.pos})") from None


def check_reasoning(value: object, where: str) -> str:
    """A reasoning string of 1..REASONING_MAX characters."""
    if not isinstance(value, str) or not value.strip():
        raise AnswerError(f"{where}.reasoning must be a non-empty string")
    if len(value) > REASONING_MAX:
        raise AnswerError(f"{where}.reasoning is longer than {REASONING_MAX} characters")
    return value


def check_score(value: object, where: str, scale: int = SCALE) -> int:
    """An integer score in 0..scale (an integral float such as 70.0 is accepted)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise AnswerError(f"{where}.score must be an integer, got {value!r}")
    if isinstance(value, float) and not value.is_integer():
        raise AnswerError(f"{where}.score must be an integer, got {value!r}")
    score = int(value)
    if not 0 <= score <= scale:
        raise AnswerError(f"{where}.score {score} is outside 0..{scale}")
    return score


def request_seed(base: int | None, key: str, temperature: float = 0.0) -> int | None:
    """Per-request seed: stable for an item, different across items and samples.

    Sampling without a base seed still gets one derived from the item key, so identical
    prompts of different samples (per-response regression) are not answered identically by a
    seed-honouring backend; greedy requests without a base seed send none.
    """
    if base is None:
        if temperature <= 0:
            return None
        base = 0
    return (base + int(key[:8], 16)) % (2**31 - 1)


def usage_meta(result: GenerationResult) -> str:
    """Provenance stored with rows: token usage and attempts (never part of a key)."""
    return json.dumps(
        {
            "prompt_tokens": result.usage.prompt_tokens,
            "completion_tokens": result.usage.completion_tokens,
            "attempts": result.attempts,
        },
        sort_keys=True,
    )


def scenario_text(bench: Benchmark, index: int) -> str:
    """The text a similarity measure compares: the prompt followed by the responses."""
    sc = bench.scenarios[index]
    return "\n\n".join([sc.prompt, *sc.responses])

