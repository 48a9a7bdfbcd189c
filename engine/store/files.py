"""File I/O every loader and writer shares.

Writes are atomic: everything is written beside its destination under a temporary name and
renamed into place only once complete, so no reader ever sees half a file. Reads of JSON input
fail with an error naming the file and what is wrong with it.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from pluralign.engine.errors import CacheSchemaError, InputError
from pluralign.engine.errors import DuplicateKeyError as DuplicateKeyError
from pluralign.engine.jsontypes import UntrustedJSON
from pluralign.schemas.arrow import SCHEMA_VERSION, schema_version_of

if TYPE_CHECKING:
    import pyarrow as pa


@contextmanager
def atomic_path(dest: str | os.PathLike[str], suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path beside ``dest``; rename it onto ``dest`` when the block succeeds,
    remove it when the block raises (whatever it raises, interrupts included)."""
    target = Path(dest)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=suffix)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        # mkstemp creates 0600; result files get what the user's umask allows (a group on a
        # shared folder can read them), as an ordinary open() would have.
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _umask() -> int:
    """The process umask (read by setting it and putting it straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_bytes(dest: str | os.PathLike[str], data: bytes) -> Path:
    with atomic_path(dest) as tmp:
        tmp.write_bytes(data)
    return Path(dest)


def write_json(dest: str | os.PathLike[str], data: object) -> Path:
    """JSON without NaN (undefined figures must be written as null by the caller)."""
    text = json.dumps(data, indent=2, allow_nan=False, default=_json_default) + "\n"
    return write_bytes(dest, text.encode())


def write_parquet(table: pa.Table, dest: str | os.PathLike[str]) -> Path:
    import pyarrow.parquet as pq

    with atomic_path(dest) as tmp:
        pq.write_table(table, tmp)
    return Path(dest)


def unique_pairs(pairs: list[tuple[str, object]]) -> dict[str, object]:
    """``object_pairs_hook`` that refuses a repeated key instead of keeping the last value."""
    out: dict[str, object] = {}
    for k, v in pairs:
        if k in out:
            raise DuplicateKeyError(k)
        out[k] = v
    return out


def loads_unique(text: str) -> UntrustedJSON:
    """``json.loads`` refusing repeated keys (DuplicateKeyError) and deep nesting (ValueError)."""
    try:
        return json.loads(text, object_pairs_hook=unique_pairs)
    except RecursionError:
        raise ValueError("JSON nested too deeply to read") from None


def read_json(path: str | os.PathLike[str], *, unique_keys: bool = False) -> UntrustedJSON:
    """Parse a JSON file, or raise InputError naming the file (missing, unreadable, bad JSON,
    nested too deeply; with ``unique_keys``, an object naming a key twice)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError("file not found", file=p) from None
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"cannot read: {e}", file=p) from None
    try:
        return json.loads(text, object_pairs_hook=unique_pairs if unique_keys else None)
    except DuplicateKeyError as e:
        raise InputError(str(e), file=p, field=e.key,
                         hint="each attribute once per object") from None
    except json.JSONDecodeError as e:
        raise InputError(f"not valid JSON: {e.msg} at line {e.lineno} column {e.colno}",
                         file=p) from None
    except RecursionError:
        raise InputError("JSON nested too deeply to read (no input of ours nests more than a "
                         "few levels)", file=p) from None


def check_output(path: str | os.PathLike[str] | None, *, field: str = "out",
                 folder: bool = True) -> Path:
    """Refuse, before any work, an output path that cannot be written: empty, a file where a
    folder is wanted (or a folder where a file is), under a file, or not writable."""
    text = "" if path is None else os.fspath(path)
    if not text.strip():
        raise InputError(f"empty path: name the {'folder' if folder else 'file'} to write",
                         field=field)
    p = Path(text).expanduser()
    if p.exists() and folder and not p.is_dir():
        raise InputError("exists and is a file, not a folder", file=p, field=field,
                         hint="remove it or name another folder")
    if p.exists() and not folder and p.is_dir():
        raise InputError("exists and is a folder, not a file", file=p, field=field)
    probe = p if p.is_dir() else p.parent
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise InputError(f"cannot be created: {probe} is a file", file=p, field=field)
    if not os.access(probe, os.W_OK | os.X_OK):
        raise InputError(f"not writable: no permission to write in {probe}", file=p, field=field)
    if p.is_file() and not os.access(p, os.W_OK):
        raise InputError("not writable: the file is read-only", file=p, field=field)
    return p


MEMORY_SHARE = 0.5
"""Share of the memory available now that one input may claim before it is refused."""


def memory_available() -> int:
    """Bytes of memory available to this process now (MemAvailable; else physical memory)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_PHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (OSError, ValueError, AttributeError):
        return 8 * 2**30


def format_bytes(n: float) -> str:
    """``37.3 GiB``-style size."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover


def require_memory(need: float, what: str, *, file: object | None = None,
                   record: object | None = None, field: str | None = None,
                   hint: str | None = None) -> None:
    """Refuse, before any work, an input whose size would need more memory than this machine
    can give it (:data:`MEMORY_SHARE` of what is available), saying how much it would need."""
    avail = memory_available()
    if need > MEMORY_SHARE * avail:
        raise InputError(f"{what} would need about {format_bytes(need)} of memory; "
                         f"{format_bytes(avail)} is available", file=file, record=record,
                         field=field, hint=hint)


def require_layout(schema: pa.Schema, kind: str, file: str | os.PathLike[str], fix: str) -> None:
    """Refuse a stored table of another kind or schema version, naming the file, both versions
    and ``fix`` (what the user can do about it)."""
    version, found = schema_version_of(schema)
    if found != kind or version != SCHEMA_VERSION:
        raise CacheSchemaError(
            f"{file}: written as {found!r} table with schema version {version or '(none)'}; "
            f"this pluralign reads {kind!r} schema version {SCHEMA_VERSION} ({fix})"
        )


def _json_default(o: object) -> object:
    import numpy as np

    if isinstance(o, np.generic):
        return o.item()
    raise TypeError(f"not JSON serializable: {type(o).__name__}")
