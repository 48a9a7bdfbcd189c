"""The ``annotators`` job: juries of real annotators (the pluralism roadmap, Sorensen et al.
2024, §4.3). Jurors are annotator ids with their own ratings of responses, read from
pluralign's ratings layout or a field dataset as published (PRISM, Community Alignment,
PERSONA, DICES, label sets); per group, the welfare-optimal response of every scenario for each
α, and a system's picks scored the same way. Layouts: docs/pluralism.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pluralign.engine.align.results import rows_table
from pluralign.engine.data import field_data as fd
from pluralign.engine.errors import InputError
from pluralign.engine.pluralism.annotators import AnnotatorReport, Ratings, evaluate
from pluralign.engine.pluralism.welfare import parse_alphas
from pluralign.engine.store.files import check_output, read_json
from pluralign.engine.store.manifest import current, file_record
from pluralign.jobs.runtime import write_json_atomic, write_parquet_atomic

__all__ = ["DATASETS", "AnnotatorsConfig", "AnnotatorsResult", "load_annotators",
           "run_annotators"]

Dataset = Literal["ratings", "prism", "community-alignment", "persona", "dices", "labels"]
DATASETS: tuple[Dataset, ...] = ("ratings", "prism", "community-alignment", "persona", "dices",
                                 "labels")


@dataclass(frozen=True, kw_only=True)
class AnnotatorsConfig:
    """Whose ratings ``pluralign annotators`` reads, how it groups and scores them, and where
    it writes."""

    path: str
    """The ratings file or dataset folder."""
    dataset: Dataset = "ratings"
    """Layout of the path (ratings: pluralign's own)."""
    scale: str = "1,5"
    """ratings layout: lowest,highest rating."""
    demographics: str | None = None
    """ratings layout: annotator demographics (CSV or JSONL: an annotator column and one per
    field)."""
    item: str = "item"
    """labels layout: item column."""
    annotator: str = "annotator"
    """labels layout: annotator column."""
    label: str | None = None
    """labels layout: label column (default label; dices: Q_overall)."""
    demographic_columns: str | None = None
    """labels layout: comma-separated columns holding annotator demographics, so the groups
    can be formed by them (dices reads every rater_* column)."""
    group_by: str | None = None
    """Demographic field forming the groups."""
    alpha: str = "0,1,inf"
    """Welfare inequality aversions α ≥ 0, comma-separated (inf: the worst-off juror)."""
    tau: float = 0.5
    """Threshold of the share of jurors above tau."""
    choices: str | None = None
    """A system's picks: JSON object scenario id -> response id."""
    out: str
    """Folder for summary.json, groups.parquet and selection.parquet."""


@dataclass(frozen=True)
class AnnotatorsResult:
    """What an annotators run read, computed and wrote."""

    ratings: Ratings
    """The ratings read (with what the loader skipped and how it resolved repeats)."""
    alphas: tuple[float, ...]
    """The αs."""
    report: AnnotatorReport
    """Per group rows, per (group, scenario, α) picks and the counts."""
    choices: Mapping[str, str] | None
    """The system's picks, when given."""
    out: Path
    """The folder written."""


def load_annotators(config: AnnotatorsConfig) -> Ratings:
    """The ratings of ``config.path`` in the ``config.dataset`` layout."""
    if config.dataset == "prism":
        return fd.load_prism(config.path)
    if config.dataset == "community-alignment":
        return fd.load_community_alignment(config.path)
    if config.dataset == "persona":
        return fd.load_persona(config.path)
    if config.dataset == "dices":
        return fd.load_dices(config.path, label=config.label or fd.DICES_LABEL)
    if config.dataset == "labels":
        demo = [c.strip() for c in (config.demographic_columns or "").split(",") if c.strip()]
        return fd.load_label_sets(config.path, item=config.item, annotator=config.annotator,
                                  label=config.label or "label", demographics=demo)
    try:
        lo, hi = (float(x) for x in config.scale.split(","))
    except ValueError:
        raise InputError(f"`scale` {config.scale!r} must be lowest,highest",
                         field="scale") from None
    return fd.load_ratings(config.path, (lo, hi), config.demographics)


def _choices(path: str | None) -> dict[str, str] | None:
    if not path:
        return None
    picks = read_json(path)
    if not isinstance(picks, dict) or not all(isinstance(v, str) for v in picks.values()):
        raise InputError("must be a JSON object scenario id -> response id", file=path)
    return {str(k): str(v) for k, v in picks.items()}


def run_annotators(config: AnnotatorsConfig) -> AnnotatorsResult:
    """Read the ratings, evaluate every group and write summary.json, groups.parquet and
    selection.parquet (each with the manifest, which records the data file and what the
    loader skipped) under ``config.out``."""
    check_output(config.out)
    alphas = parse_alphas(config.alpha)
    ratings = load_annotators(config)
    choices = _choices(config.choices)
    report = evaluate(ratings, alphas, config.group_by, choices, config.tau)
    m = current()
    if m is not None:
        m.benchmark = {"dataset": config.dataset, "files": [file_record(ratings.source)],
                       "scenarios": report["scenarios"], "skipped": ratings.skipped,
                       "notes": ratings.notes}
    out = Path(config.out)
    write_parquet_atomic(out / "groups.parquet", rows_table(report["groups"], "annotator_groups"))
    if report["selection"]:
        write_parquet_atomic(out / "selection.parquet",
                             rows_table(report["selection"], "annotator_selection"))
    write_json_atomic(out / "summary.json", {
        "dataset": config.dataset, "path": str(config.path), "group_by": config.group_by,
        "alphas": [str(a) for a in alphas], "tau": config.tau, "jurors": report["jurors"],
        "scenarios": report["scenarios"], "shared_scenarios": report["shared_scenarios"],
        "ratings": report["ratings"], "skipped": ratings.skipped, "notes": ratings.notes, "groups": report["groups"]})
    return AnnotatorsResult(ratings, tuple(alphas), report, choices, out)
