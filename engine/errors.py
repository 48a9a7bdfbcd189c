"""Errors users see: each names where the problem is and what would fix it."""

from __future__ import annotations


class PluralignError(Exception):
    """Base class of every error pluralign raises on purpose (shown as one line by the CLI)."""


class InputError(PluralignError, ValueError):
    """Malformed user input: names the file, the record and the field."""

    def __init__(
        self,
        message: str,
        *,
        file: object | None = None,
        record: object | None = None,
        field: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.file = None if file is None else str(file)
        self.record = record
        self.field = field
        self.hint = hint
        where = []
        if self.file is not None:
            where.append(self.file)
        if record is not None:
            where.append(f"record {record}")
        if field is not None:
            where.append(f"field {field!r}")
        text = (": ".join([", ".join(where), message]) if where else message)
        if hint:
            text += f" ({hint})"
        super().__init__(text)


class DataNotFoundError(PluralignError, FileNotFoundError):
    """A benchmark's data is not where we looked; the message says how to provide it."""


class CacheSchemaError(PluralignError):
    """A cache or result file was written by another schema version."""


class TooLarge(PluralignError):
    """A request beyond the query service's size limits (HTTP 413)."""


class NotCached(PluralignError):
    """The score cache holds no complete scores for a query (HTTP 404)."""


class IncompleteScoring(PluralignError):
    """Scores are missing after a scoring run: nothing is re-aligned on incomplete scores (a
    rerun sends only the missing items)."""


class ScoringInterrupted(KeyboardInterrupt):
    """A scoring run was interrupted (Ctrl-C or SIGTERM); the answers received are stored."""
