"""The field's pluralism datasets in their published layouts, in one place: GlobalOpinionQA and
OpinionQA (survey distributions), ValuePrism and OvertonBench (Overton windows and people's
coverage ratings), PRISM, Community Alignment, PERSONA, DICES and per-annotator label sets
(annotators' ratings). Sources and layouts: docs/pluralism.md.

None of their data ships with pluralign and nothing here downloads: a missing file gets an
error saying where to get it (gated ones need the user to accept their terms first).
"""

from __future__ import annotations

from pluralign.engine.data.field_files import SOURCES, find_files, read_jsonl, require
from pluralign.engine.data.field_ratings import (
    DICES_LABEL,
    PRISM_SCENARIO,
    load_community_alignment,
    load_dices,
    load_label_sets,
    load_persona,
    load_prism,
    load_ratings,
)
from pluralign.engine.data.field_surveys import (
    OVERTONBENCH_COLUMNS,
    VRD,
    SurveyLoad,
    load_global_opinions,
    load_opinionqa,
    load_overtonbench,
    load_valueprism,
    option_label,
)

__all__ = [
    "DICES_LABEL", "OVERTONBENCH_COLUMNS", "PRISM_SCENARIO", "SOURCES", "VRD", "SurveyLoad", "find_files",
    "load_community_alignment", "load_dices", "load_global_opinions", "load_label_sets",
    "load_opinionqa", "load_overtonbench", "load_persona", "load_prism", "load_ratings",
    "load_valueprism", "option_label", "read_jsonl", "require",
]
