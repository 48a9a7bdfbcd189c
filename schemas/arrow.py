"""Versioned Arrow schemas for the files pluralign writes.

Every table carries ``pluralign.schema_version`` in its metadata; readers refuse another version
with a clear error instead of guessing.
"""

from __future__ import annotations

import pyarrow as pa

SCHEMA_VERSION = "1"
"""Bump when any stored layout changes incompatibly."""

_VERSION_KEY = b"pluralign.schema_version"
_KIND_KEY = b"pluralign.kind"


def with_version(schema: pa.Schema, kind: str) -> pa.Schema:
    """Attach the schema version and the table kind to ``schema``'s metadata."""
    meta = dict(schema.metadata or {})
    meta[_VERSION_KEY] = SCHEMA_VERSION.encode()
    meta[_KIND_KEY] = kind.encode()
    return schema.with_metadata(meta)


def schema_version_of(schema: pa.Schema) -> tuple[str | None, str | None]:
    """Return ``(version, kind)`` recorded in ``schema``'s metadata (None where absent)."""
    meta = schema.metadata or {}
    version = meta.get(_VERSION_KEY)
    kind = meta.get(_KIND_KEY)
    return (
        version.decode() if version is not None else None,
        kind.decode() if kind is not None else None,
    )


BENCHMARK_SCHEMA = with_version(
    pa.schema(
        [
            pa.field("scenario", pa.string(), nullable=False),
            pa.field("prompt", pa.string(), nullable=False),
            pa.field("response", pa.int32(), nullable=False),
            pa.field("text", pa.string(), nullable=False),
            pa.field("labels", pa.map_(pa.string(), pa.float64()), nullable=False),
            pa.field("reasonings", pa.map_(pa.string(), pa.string())),
        ]
    ),
    "benchmark",
)
"""One row per (scenario, response)."""

TARGET_SCHEMA = with_version(
    pa.schema(
        [
            pa.field("target", pa.string(), nullable=False),
            pa.field("values", pa.map_(pa.string(), pa.float64()), nullable=False),
            pa.field("n_attributes", pa.int32(), nullable=False),
        ]
    ),
    "targets",
)
"""One row per alignment target; ``target`` is the canonical JSON text."""

SCORE_SCHEMA = with_version(
    pa.schema(
        [
            pa.field("key", pa.string(), nullable=False),
            pa.field("benchmark", pa.string(), nullable=False),
            pa.field("scenario", pa.string(), nullable=False),
            pa.field("response", pa.int32(), nullable=False),
            pa.field("attribute", pa.string(), nullable=False),
            pa.field("scorer", pa.string(), nullable=False),
            pa.field("sample", pa.int32(), nullable=False),
            pa.field("score", pa.float64()),
            pa.field("reasoning", pa.string()),
            pa.field("error", pa.string()),
            pa.field("meta", pa.string()),
        ]
    ),
    "scores",
)
"""One row per predicted attribute score (or per failed item, with ``error`` set and no score)."""

PER_TARGET_SCHEMA = with_version(
    pa.schema(
        [
            pa.field("set", pa.string(), nullable=False),
            pa.field("name", pa.string()),
            pa.field("target", pa.string(), nullable=False),
            pa.field("n_attributes", pa.int32(), nullable=False),
            pa.field("accuracy", pa.float64()),
            pa.field("counted", pa.int64(), nullable=False),
            pa.field("correct", pa.int64(), nullable=False),
            pa.field("weighted_score", pa.float64()),
        ]
    ),
    "per_target",
)
"""One row per target of a sweep; ``accuracy`` is null where undefined."""

PER_SCENARIO_SCHEMA = with_version(
    pa.schema(
        [
            pa.field("set", pa.string(), nullable=False),
            pa.field("target", pa.string(), nullable=False),
            pa.field("scenario", pa.string(), nullable=False),
            pa.field("chosen", pa.int32(), nullable=False),
            pa.field("correct", pa.list_(pa.int32()), nullable=False),
            pa.field("counted", pa.bool_(), nullable=False),
            pa.field("predicted_distance", pa.list_(pa.float64()), nullable=False),
            pa.field("label_distance", pa.list_(pa.float64()), nullable=False),
        ]
    ),
    "per_scenario",
)
"""One row per (target, scenario) of a sweep: the chosen response, the label-closest
(``correct``) responses, whether the scenario counts, and every response's predicted and label
distance to the target; join on (benchmark, scenario) with the score cache's reasonings."""
