"""Typed records and versioned Arrow schemas for everything pluralign stores or exchanges.

Import from here; the submodules are implementation detail.
"""

from pluralign.schemas.arrow import (
    BENCHMARK_SCHEMA,
    PER_TARGET_SCHEMA,
    SCHEMA_VERSION,
    SCORE_SCHEMA,
    TARGET_SCHEMA,
    schema_version_of,
    with_version,
)
from pluralign.schemas.records import Scenario, ScoreRecord, TargetResult

__all__ = [
    "BENCHMARK_SCHEMA",
    "PER_TARGET_SCHEMA",
    "SCHEMA_VERSION",
    "SCORE_SCHEMA",
    "TARGET_SCHEMA",
    "Scenario",
    "ScoreRecord",
    "TargetResult",
    "schema_version_of",
    "with_version",
]
