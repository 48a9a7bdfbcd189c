"""The ``distribution`` job: distributional pluralism from given distributions (the pluralism
roadmap, Sorensen et al. 2024, §3.3).

Compares each question's answer distribution of every model with every population's:
Jensen-Shannon distance, the entropy of each and a shuffled-label control. File format:
docs/juries.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pluralign.engine.align.results import rows_table
from pluralign.engine.errors import InputError
from pluralign.engine.pluralism.distributional import (
    DistributionReport,
    Question,
    entropy,
    evaluate_distributions,
    load_distributions,
)
from pluralign.engine.store.files import check_output
from pluralign.engine.store.manifest import current, file_record
from pluralign.jobs.runtime import write_json_atomic, write_parquet_atomic

__all__ = ["DistributionConfig", "DistributionResult", "group_entropies", "run_distribution"]


@dataclass(frozen=True, kw_only=True)
class DistributionConfig:
    """The distributions ``pluralign distribution`` compares and where it writes."""

    file: str
    """Distribution file (JSON; see docs/juries.md)."""
    shuffles: int = 100
    """Random permutations for the shuffled-label control."""
    seed: int = 0
    """Seed of the shuffles."""
    out: str
    """Folder for summary.json and distribution.parquet."""


@dataclass(frozen=True)
class DistributionResult:
    """What a distribution run compared and wrote."""

    questions: list[Question]
    """The questions of the file."""
    report: DistributionReport
    """Per (model, group) averages and per-question rows."""
    group_entropy: dict[str, float]
    """Mean entropy (bits) of each population's distributions."""
    out: Path
    """The folder written: summary.json (and distribution.parquet when any model answered)."""


def run_distribution(config: DistributionConfig) -> DistributionResult:
    """Compare the file's model and population distributions; write the per-question table
    and summary.json under ``config.out``."""
    check_output(config.out)
    if config.shuffles < 1:
        raise InputError("`shuffles` must be at least 1", field="shuffles")
    questions = load_distributions(config.file)
    m = current()
    if m is not None:
        m.benchmark = {"files": [file_record(config.file)], "questions": len(questions)}
    report = evaluate_distributions(questions, n_shuffles=config.shuffles, seed=config.seed)
    entropies = group_entropies(questions)
    out = Path(config.out)
    if report.questions:
        write_parquet_atomic(out / "distribution.parquet",
                             rows_table(report.questions, "distribution"))
    write_json_atomic(out / "summary.json", {
        "file": str(config.file), "questions": len(questions), "shuffles": config.shuffles,
        "seed": config.seed, "pairs": report.pairs, "group_entropy": entropies,
    })
    return DistributionResult(questions, report, entropies, out)


def group_entropies(questions: Sequence[Question]) -> dict[str, float]:
    """Each population's mean entropy (bits) over the questions it answered."""
    by: dict[str, list[float]] = {}
    for q in questions:
        for g, p in q.groups.items():
            by.setdefault(g, []).append(float(entropy(p)))
    return {g: float(np.mean(v)) for g, v in by.items()}
