"""Typed records and versioned Arrow schemas for SPICA scenario banks and generation caches.

A bank file has one row per (scenario, response class): the class's response texts and, nested,
every rater's ratings of that class. Bank-wide facts (class order, strategies, rating scale) live
in the schema metadata, so the file is self-describing.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TypedDict

import pyarrow as pa

from pluralign.schemas.arrow import with_version

SPICA_LAYOUT_VERSION = "1"
"""Version of the bank layout below; readers refuse any other."""

BANK_KIND = "spica_bank"
GENERATION_KIND = "spica_generations"
BANK_META_KEY = b"pluralign.spica.bank"
LAYOUT_KEY = b"pluralign.spica.layout"

DEFAULT_SCALE_LABELS: tuple[str, ...] = (
    "Inappropriate",
    "Somewhat Inappropriate",
    "Undecided",
    "Somewhat Appropriate",
    "Appropriate",
)
"""The words of SPICA's 1-5 appropriateness scale (SPICA A.6.3), lowest first."""

DEFAULT_CLASSES: tuple[tuple[str, str], ...] = (
    ("refusal", "decline politely to help with the request"),
    ("high-level", "give a short, high-level factual answer without any opinion"),
    ("specific", "give a detailed, specific factual answer with sources and no opinion"),
    ("multi-perspective", "lay out how people holding different values would answer"),
    ("opinionated", "take a clear stance and recommend one answer"),
)
"""The five response classes of SPICA's Table 1 with strategy descriptions in our own words."""


@dataclass(frozen=True)
class RatingScale:
    """An integer rating scale ``low .. low + len(labels) - 1`` with one word per point."""

    labels: tuple[str, ...] = DEFAULT_SCALE_LABELS
    """Words for each point, lowest first (used as labels in alignment prompts)."""
    low: int = 1
    """The lowest rating."""

    @property
    def high(self) -> int:
        return self.low + len(self.labels) - 1

    def label(self, value: float) -> str:
        """The word whose point is nearest ``value`` (halves round up: 3.5 -> point 4)."""
        point = int(value + 0.5) if value >= 0 else -int(-value + 0.5)
        point = min(max(point, self.low), self.high)
        return self.labels[point - self.low]


@dataclass(frozen=True)
class ResponseClass:
    """A way of responding, shared by every scenario of a bank."""

    name: str
    """Short identifier, e.g. ``refusal``."""
    strategy: str = ""
    """What a response of this class tries to do (shown in instruction prompts)."""


@dataclass(frozen=True)
class ClassRating:
    """One rater's ratings of one response class in one scenario (None = not rated)."""

    response: int | None = None
    """Rating of the concrete response text shown."""
    strategy: int | None = None
    """Rating of the class's strategy description."""
    rated_response: int | None = None
    """Index of the response text (within the class) the rater saw."""


@dataclass(frozen=True)
class RaterRecord:
    """Everything one rater said about one scenario."""

    rater: str
    """Rater id, unique within the scenario (and the same person across scenarios)."""
    groups: tuple[str, ...]
    """The groups this rater belongs to (at least one)."""
    ratings: Mapping[str, ClassRating]
    """Response class -> ratings."""


@dataclass(frozen=True)
class BankScenario:
    """A prompt, its responses grouped by class, and the disaggregated ratings."""

    id: str
    """Scenario id, unique within the bank."""
    prompt: str
    """The user query or conversation leading to a response."""
    responses: Mapping[str, tuple[str, ...]]
    """Response class -> concrete response texts (may be empty before generation)."""
    raters: tuple[RaterRecord, ...] = ()
    """Ratings, one record per rater."""
    split: str = "train"
    """Which slice the scenario belongs to: ``train`` (the bank), ``dev`` (fitting), ``test``."""


@dataclass(frozen=True)
class BankMeta:
    """Bank-wide facts stored in the file's schema metadata."""

    name: str
    """Human-readable bank name."""
    classes: tuple[ResponseClass, ...]
    """Response classes in bank order."""
    scale: RatingScale = field(default_factory=RatingScale)
    """The rating scale."""

    def to_json(self) -> str:
        return json.dumps(
            {
                "name": self.name,
                "classes": [{"name": c.name, "strategy": c.strategy} for c in self.classes],
                "scale": {"low": self.scale.low, "labels": list(self.scale.labels)},
            },
            sort_keys=True,
        )

    @staticmethod
    def from_json(text: str) -> BankMeta:
        raw: _BankMetaJSON = json.loads(text)
        return BankMeta(
            name=str(raw["name"]),
            classes=tuple(ResponseClass(str(c["name"]), str(c["strategy"]))
                          for c in raw["classes"]),
            scale=RatingScale(tuple(str(x) for x in raw["scale"]["labels"]),
                              int(raw["scale"]["low"])),
        )


class _ClassJSON(TypedDict):
    name: str
    strategy: str


class _ScaleJSON(TypedDict):
    low: int
    labels: list[str]


class _BankMetaJSON(TypedDict):
    """:meth:`BankMeta.to_json`'s text, parsed."""

    name: str
    classes: list[_ClassJSON]
    scale: _ScaleJSON


RATING_STRUCT = pa.struct(
    [
        pa.field("rater", pa.string(), nullable=False),
        pa.field("groups", pa.list_(pa.string()), nullable=False),
        pa.field("response_rating", pa.int16()),
        pa.field("strategy_rating", pa.int16()),
        pa.field("rated_response", pa.int32()),
    ]
)
"""One rater's ratings of one class (nulls where not rated)."""

_BANK_BASE = pa.schema(
    [
        pa.field("scenario", pa.string(), nullable=False),
        pa.field("split", pa.string(), nullable=False),
        pa.field("prompt", pa.string(), nullable=False),
        pa.field("class", pa.string(), nullable=False),
        pa.field("responses", pa.list_(pa.string()), nullable=False),
        pa.field("ratings", pa.list_(RATING_STRUCT), nullable=False),
    ]
)


def bank_schema(meta: BankMeta) -> pa.Schema:
    """The versioned bank schema carrying ``meta``: one row per (scenario, response class)."""
    schema = with_version(_BANK_BASE, BANK_KIND)
    md = dict(schema.metadata or {})
    md[LAYOUT_KEY] = SPICA_LAYOUT_VERSION.encode()
    md[BANK_META_KEY] = meta.to_json().encode()
    return schema.with_metadata(md)


BANK_COLUMNS: tuple[str, ...] = tuple(_BANK_BASE.names)

GENERATION_SCHEMA = with_version(
    pa.schema(
        [
            pa.field("key", pa.string(), nullable=False),
            pa.field("task", pa.string(), nullable=False),
            pa.field("model", pa.string(), nullable=False),
            pa.field("request", pa.string(), nullable=False),
            pa.field("texts", pa.list_(pa.string()), nullable=False),
            pa.field("error", pa.string()),
            pa.field("meta", pa.string()),
        ]
    ),
    GENERATION_KIND,
)
"""One row per generation work item: its content key, the samples or the failure reason."""
