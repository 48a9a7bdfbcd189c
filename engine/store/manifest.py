"""The run manifest: what produced a result file, written into every ``summary.json`` and as
schema metadata of every Parquet table a command writes.

It records the pluralign version and git commit, the command line with secrets redacted, start
and end time, host count, the benchmark and its data files with checksums, the decoded scorer
settings, the counts of what was scored, and whether the run stopped early. Credentials never
enter it: every string is passed through :func:`redact` before it is stored.
"""

from __future__ import annotations

import contextvars
import json
import os
import subprocess
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TypedDict
from urllib.parse import urlsplit, urlunsplit

from pluralign.engine.jsontypes import JSONDict, JSONObject
from pluralign.engine.store.hashing import file_digest

# The one redactor (engine/store/redaction.py); these names stay importable from here.
from pluralign.engine.store.redaction import REDACTED as REDACTED
from pluralign.engine.store.redaction import environment_secrets as environment_secrets
from pluralign.engine.store.redaction import redact as redact
from pluralign.engine.store.redaction import redact_argv as redact_argv
from pluralign.engine.store.redaction import scrub as scrub

if TYPE_CHECKING:
    import pyarrow as pa

MANIFEST_VERSION = 1
"""Bump when the manifest's layout changes."""
METADATA_KEY = b"pluralign.manifest"
"""Parquet schema-metadata key holding the manifest JSON."""
def endpoint_host(url: str | None) -> str | None:
    """``scheme://host:port/path`` of an endpoint, without user info or query."""
    if not url:
        return None
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


class FileRecord(TypedDict):
    """A data file in a manifest: its name (never the path), size and SHA-256."""

    name: str
    bytes: int
    sha256: str


def file_record(path: str | os.PathLike[str]) -> FileRecord:
    """Name, size and SHA-256 of a data file (the name only: absolute paths stay private)."""
    p = Path(path)
    return {"name": p.name, "bytes": p.stat().st_size, "sha256": file_digest(p)}


def git_commit(start: str | os.PathLike[str] | None = None) -> str | None:
    """The commit of the checkout holding ``start`` (default: this package), else None."""
    here = Path(start) if start is not None else Path(__file__).resolve().parent
    if not any((d / ".git").exists() for d in (here, *here.parents)):
        return None
    try:
        done = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True,
                              text=True, timeout=5, check=False)
        dirty = subprocess.run(["git", "-C", str(here), "status", "--porcelain",
                                "--untracked-files=no"], capture_output=True, text=True,
                               timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    commit = done.stdout.strip()
    if done.returncode != 0 or not commit:
        return None
    return commit + ("+dirty" if dirty.stdout.strip() else "")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("pluralign")
    except PackageNotFoundError:
        return "0+unknown"


def _utc(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


@dataclass
class Manifest:
    """What one command run did; filled in as the command learns it."""

    command: str
    """Subcommand name (``sweep``, ``align`` ...)."""
    argv: list[str]
    """Command line, secrets redacted."""
    started: float = field(default_factory=time.time)
    """Start time (seconds since the epoch)."""
    ended: float | None = None
    """End time; set when the manifest is written."""
    hosts: int = 1
    """Hosts the run used (Ray nodes alive, else 1)."""
    benchmark: dict[str, object] = field(default_factory=dict)
    """Benchmark identity, split, scenario count and data files with checksums."""
    scorer: dict[str, object] = field(default_factory=dict)
    """Scorer identity and its decoded settings (never credentials)."""
    counts: dict[str, object] = field(default_factory=dict)
    """Items, cached, sent, retried, failed by reason, tokens, estimated cost."""
    interrupted: bool = False
    """True when the run stopped before every item was answered (budget, interruption)."""
    stop_reason: str | None = None
    """Why it stopped early, when it did."""
    secrets: tuple[str, ...] = field(default=(), repr=False)
    """Values never to write (API keys from the environment); not part of the output."""

    def note_benchmark(self, identity: str, split: str, scenarios: int,
                       files: Iterable[str | os.PathLike[str]] = ()) -> None:
        self.benchmark = {"identity": identity, "split": split, "scenarios": int(scenarios),
                          "files": [file_record(f) for f in files if Path(f).is_file()]}

    def note_scorer(self, settings: Mapping[str, object]) -> None:
        self.scorer = dict(settings)

    def note_counts(self, counts: JSONObject) -> None:
        self.counts.update(counts)
        stop = counts.get("stopped")
        if stop or int(counts.get("not_started", 0) or 0) > 0:
            self.interrupted = True
            self.stop_reason = str(stop) if stop else "items left unsent"

    def as_dict(self) -> dict[str, object]:
        """The manifest as JSON-able data, every string redacted."""
        ended = self.ended if self.ended is not None else time.time()
        data = {
            "manifest_version": MANIFEST_VERSION,
            "pluralign": _version(),
            "git_commit": git_commit(),
            "command": self.command,
            "argv": self.argv,
            "started": _utc(self.started),
            "ended": _utc(ended),
            "seconds": round(ended - self.started, 3),
            "hosts": self.hosts,
            "benchmark": self.benchmark,
            "scorer": self.scorer,
            "counts": self.counts,
            "interrupted": self.interrupted,
            "stop_reason": self.stop_reason,
        }
        return scrub(data, self.secrets)

    def metadata(self) -> dict[bytes, bytes]:
        """Parquet schema metadata carrying this manifest."""
        return {METADATA_KEY: json.dumps(self.as_dict(), sort_keys=True).encode()}


def with_manifest(table: pa.Table, manifest: Manifest | None) -> pa.Table:
    """``table`` (a pyarrow Table) with the manifest added to its schema metadata."""
    if manifest is None:
        return table
    meta = dict(table.schema.metadata or {})
    meta.update(manifest.metadata())
    return table.replace_schema_metadata(meta)


def read_manifest(schema_metadata: Mapping[bytes, bytes] | None) -> JSONDict | None:
    """The manifest stored in a Parquet schema's metadata, or None."""
    raw = (schema_metadata or {}).get(METADATA_KEY)
    return None if raw is None else dict(json.loads(raw))


_CURRENT: contextvars.ContextVar[Manifest | None] = contextvars.ContextVar(
    "pluralign_manifest", default=None)


def begin(command: str, argv: Sequence[str]) -> Manifest:
    """Start the manifest of this command run (the writers of result files attach it)."""
    secrets = environment_secrets()
    m = Manifest(command=command, argv=redact_argv(argv, secrets), secrets=secrets)
    _CURRENT.set(m)
    return m


def current() -> Manifest | None:
    """The manifest of the running command, if one was begun."""
    return _CURRENT.get()


def end() -> None:
    """Forget the current manifest (the command is over)."""
    _CURRENT.set(None)
