"""The ``report`` job: one self-contained HTML file over one or more run folders.

Reads each run's summary.json (and per_target.parquet, manifest.json where present) and draws
the papers' figures as inline SVG (:mod:`pluralign.jobs.report`); the page needs no network
and opens from disk. The figures need matplotlib, the optional ``report`` extra.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pluralign.engine.errors import InputError
from pluralign.engine.store.files import write_bytes
from pluralign.jobs.report import build_report

__all__ = ["ReportConfig", "ReportResult", "run_report"]


@dataclass(frozen=True, kw_only=True)
class ReportConfig:
    """The runs ``pluralign report`` shows and the page it writes."""

    runs: tuple[str, ...]
    """Sweep or jury output folders, or SPICA evaluation JSON files."""
    out: str
    """HTML file to write."""
    title: str = "pluralign report"
    """Page title."""


@dataclass(frozen=True)
class ReportResult:
    """The page written."""

    path: Path
    """The HTML file."""
    size: int
    """Its length in characters."""
    runs: int
    """Runs it shows."""


def run_report(config: ReportConfig) -> ReportResult:
    """Build the page over ``config.runs`` and write it to ``config.out``."""
    try:
        import matplotlib  # noqa: F401  (the optional `report` extra draws the figures)
    except ImportError as e:
        raise InputError(f"the report needs matplotlib ({e})",
                         hint="pip install 'pluralign[report]'") from None
    page = build_report([Path(r) for r in config.runs], title=config.title)
    path = write_bytes(config.out, page.encode())
    return ReportResult(path, len(page), len(config.runs))
