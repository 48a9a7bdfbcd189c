"""SPICA (Chen et al., "SPICA: Retrieving Scenarios for Pluralistic In-Context Alignment"):
scenario banks with disaggregated group ratings, group-informed retrieval, in-context alignment
prompts and their evaluation. Formats and choices: docs/spica.md."""

from pluralign.engine.spica.authors import load_spica_layout
from pluralign.engine.spica.bank import ALL, ScenarioBank, make_bank
from pluralign.engine.spica.evaluate import GroupEvaluation, evaluate_retrieval
from pluralign.engine.spica.group_metrics import (
    GroupNorms,
    group_norms,
    mismatch,
    pairwise_mismatch,
)
from pluralign.engine.spica.io import read_bank, write_bank
from pluralign.engine.spica.prompts import SETUPS, AlignmentPrompt, build_prompt
from pluralign.engine.spica.retrieval import Retriever, Weights
from pluralign.engine.spica.synthetic_bank import SyntheticConfig, synthetic_bank

__all__ = [
    "ALL",
    "SETUPS",
    "AlignmentPrompt",
    "GroupEvaluation",
    "GroupNorms",
    "Retriever",
    "ScenarioBank",
    "SyntheticConfig",
    "Weights",
    "build_prompt",
    "evaluate_retrieval",
    "group_norms",
    "load_spica_layout",
    "make_bank",
    "mismatch",
    "pairwise_mismatch",
    "read_bank",
    "synthetic_bank",
    "write_bank",
]
