"""Errors users see, every public one in this module: each names where the problem is and what
would fix it.

Messages speak of the Python API's argument names, each in backticks: "raise `max_tokens`",
"pass `data` or set PLURALIGN_DATA", "`few_shot=False`". The command line shows the same text
with flags instead (:func:`cli_text`): "raise --max-tokens", "pass --data or set ...".
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pluralign.engine.spica.generate import GenerationReport


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


class GenerationInterrupted(KeyboardInterrupt):
    """Generation was interrupted; the answers received are stored and a rerun resumes."""

    def __init__(self, report: GenerationReport) -> None:
        super().__init__(f"interrupted: {report.not_sent} generations not sent")
        self.report = report


class DownloadError(DataNotFoundError):
    """A first-use download failed (network, HTTP status or checksum); nothing was kept."""


class CacheCorruptError(PluralignError):
    """A cache part cannot be read, or is not what it claims (another schema, keys that do not
    match their fields); the message names the file and what is wrong."""


class DuplicateKeyError(ValueError):
    """A JSON object names one key twice (``json`` would keep the last value silently)."""

    def __init__(self, key: str) -> None:
        self.key = key
        super().__init__(f"key {key!r} appears twice in one object")


class AnswerError(ValueError):
    """A model answer that does not fit the judge's schema (the scheduler retries it)."""


class ReplicaStartError(PluralignError):
    """No vLLM replica could start (vLLM missing on the node, the model, the engine)."""


class VLLMUnavailable(PluralignError):
    """vLLM cannot be imported where the replica runs."""


_ARGUMENT = re.compile(r"(?<!`)`([^`\n]+)`(?!`)")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def cli_text(message: str, aliases: Mapping[str, str] | None = None) -> str:
    """``message`` as the command line says it: each backticked argument becomes its flag.

    `` `some_arg` `` -> ``--some-arg``, `` `some_arg=VALUE` `` -> ``--some-arg VALUE``,
    `` `flag=True` `` -> ``--flag`` and `` `flag=False` `` -> ``--no-flag``. ``aliases`` maps a
    whole backticked text to the command line's own words where they differ (e.g.
    ``{"few_shot=False": "--zero-shot"}``). Backticked text that is no argument name (code,
    a command) keeps its backticks.
    """
    def flag(m: re.Match[str]) -> str:
        text = m.group(1)
        if aliases and text in aliases:
            return aliases[text]
        name, eq, value = text.partition("=")
        if not _NAME.fullmatch(name):
            return m.group(0)
        option = "--" + name.replace("_", "-")
        if not eq:
            return option
        if value == "True":
            return option
        if value == "False":
            return "--no-" + name.replace("_", "-")
        return f"{option} {value}"

    return _ARGUMENT.sub(flag, message)
