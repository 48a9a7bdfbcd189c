"""Shared machinery of the judges that score responses (comparative and per-response regression).

Holds the benchmark, settings, attribute definitions and optional few-shot selector; builds the
judge identity, remembers the in-context examples per (scenario, attribute) and writes rows.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

from pluralign.engine.data.benchmark import Benchmark
from pluralign.engine.judges.attributes import definitions_for
from pluralign.engine.judges.base import (
    SCALE,
    BuiltRequests,
    ItemKind,
    JudgeSettings,
    usage_meta,
)
from pluralign.engine.judges.fewshot import Example, FewShotSelector
from pluralign.engine.run.backend import GenerationResult, Message
from pluralign.engine.store.cache import ScoreRow, score_key, scorer_identity
from pluralign.engine.store.hashing import digest

ORDER_SCHEME = "rotation-v1"
"""How response orders are balanced across samples (part of the identity)."""


class ScoringJudge:
    """Base of judges whose answers are attribute scores per response."""

    name = "scoring"
    kind: ItemKind = "scores"

    def __init__(
        self,
        bench: Benchmark,
        settings: JudgeSettings,
        *,
        attributes: Sequence[str] | None = None,
        definitions: Mapping[str, str] | None = None,
        fewshot: FewShotSelector | None = None,
        templates: Mapping[str, str] | None = None,
    ) -> None:
        self.template_overrides: dict[str, str] = dict(templates or {})
        """Templates a user prompts file sets (the rest keep our wording)."""
        self.bench = bench
        """The benchmark whose scenarios are scored."""
        self.settings = settings
        """Model and sampling settings."""
        self.attributes = tuple(attributes) if attributes is not None else bench.attributes
        """Attributes to score (default: all of the benchmark's)."""
        self.definitions = definitions_for(bench.attributes, definitions)
        """Definition per attribute, as shown in the system prompt."""
        if settings.few_shot and fewshot is None:
            raise ValueError("few_shot settings need a FewShotSelector")
        self.fewshot = fewshot if settings.few_shot else None
        """Source of in-context examples, or None for zero-shot."""
        self._examples: dict[tuple[int, str], list[Example]] = {}
        self.built = BuiltRequests()
        """Requests built and not yet parsed (parsing reuses their order and fingerprint)."""
        self.identity = scorer_identity(self.name, self.identity_settings())
        """Name plus a hash of everything that changes the answers."""

    # -- identity ------------------------------------------------------------------------
    def templates(self) -> Mapping[str, str]:
        """The prompt templates (hashed into the identity)."""
        raise NotImplementedError

    def example_schema(self) -> Mapping[str, object]:
        """A representative answer schema (hashed into the identity)."""
        raise NotImplementedError

    def identity_settings(self) -> dict[str, object]:
        """Every setting that changes an answer; the sample count is not one (the sample index
        is in each row key, so asking for more samples later only sends the new ones)."""
        return {
            "templates": digest(dict(self.templates())),
            "schema": digest(self.example_schema()),
            "definitions": dict(sorted(self.definitions.items())),
            "model": self.settings.model,
            "temperature": self.settings.temperature,
            "max_tokens": self.settings.max_tokens,
            "seed": self.settings.seed,
            "few_shot": None if self.fewshot is None else self.fewshot.identity,
            "orders": ORDER_SCHEME,
            "scale": SCALE,
            **self.settings.identity_extra(),
        }

    def describe(self) -> dict[str, object]:
        """Decoded settings for the run manifest: identity, settings, templates by hash and
        text, definitions and the few-shot rule."""
        return {
            "identity": self.identity, "name": self.name, "kind": self.kind,
            "settings": self.settings.as_dict(),
            "templates": template_record(self.templates()),
            "definitions": dict(sorted(self.definitions.items())),
            "few_shot": None if self.fewshot is None else self.fewshot.identity,
            "orders": ORDER_SCHEME, "scale": SCALE,
        }

    # -- examples -----------------------------------------------------------------------
    def examples(self, scenario: int, attribute: str) -> list[Example]:
        """In-context examples for (scenario, attribute); [] when zero-shot."""
        if self.fewshot is None:
            return []
        key = (scenario, attribute)
        if key not in self._examples:
            text, sims = self.fewshot.query_row(self.bench, scenario)
            self._examples[key] = self.fewshot.select(text, attribute, sims)
        return self._examples[key]

    # -- rows ---------------------------------------------------------------------------
    def row_key(self, scenario: int, response: int, attribute: str, sample: int) -> str:
        sc = self.bench.scenarios[scenario]
        return score_key(self.bench.identity, sc.id, response, attribute, self.identity, sample)

    def row(
        self,
        scenario: int,
        response: int,
        attribute: str,
        sample: int,
        *,
        score: float | None,
        reasoning: str | None,
        error: str | None,
        meta: str,
    ) -> ScoreRow:
        """One score-cache row (a failure when ``error`` is set)."""
        return {
            "key": self.row_key(scenario, response, attribute, sample),
            "benchmark": self.bench.identity,
            "scenario": self.bench.scenarios[scenario].id,
            "response": response,
            "attribute": attribute,
            "scorer": self.identity,
            "sample": sample,
            "score": score,
            "reasoning": reasoning,
            "error": error,
            "meta": meta,
        }


def template_record(templates: Mapping[str, str]) -> dict[str, dict[str, str]]:
    """Each template's SHA-256 (16 hex) and text."""
    return {name: {"sha256": digest(text), "text": text} for name, text in templates.items()}


def json_answer(value: object) -> str:
    """An example answer as the model should write it (compact JSON, keys in schema order)."""
    return json.dumps(value, ensure_ascii=False)


RAW_MAX = 8192
"""Longest raw answer text kept in a cache row's meta (longer text is cut, and marked)."""


def meta_with(result: GenerationResult, **extra: object) -> str:
    """Usage meta plus provenance for audit: the raw answer text (the cache redacts
    credentials when it writes), and judge-specific fields such as the letter a response was
    shown as and the request's ``prompt`` fingerprint (``GenerationRequest.fingerprint``:
    rebuild the exact prompt with ``judge.request(item)``)."""
    usage, attempts = result.usage, result.attempts
    if type(usage.prompt_tokens) is type(usage.completion_tokens) is type(attempts) is int:
        meta: dict[str, object] = {"prompt_tokens": usage.prompt_tokens,  # usage_meta's, as read
                                   "completion_tokens": usage.completion_tokens,
                                   "attempts": attempts}
    else:
        meta = json.loads(usage_meta(result))
    raw = result.samples[0].text if result.samples else ""
    meta["raw"] = raw if len(raw) <= RAW_MAX else raw[:RAW_MAX] + "...[cut]"
    meta.update(extra)
    return json.dumps(meta, sort_keys=True)


def system_then(system: str, pairs: Sequence[tuple[str, str]], user: str) -> tuple[Message, ...]:
    """System message, example (user, assistant) pairs, then the query."""
    msgs = [Message("system", system)]
    for u, a in pairs:
        msgs.append(Message("user", u))
        msgs.append(Message("assistant", a))
    msgs.append(Message("user", user))
    return tuple(msgs)
