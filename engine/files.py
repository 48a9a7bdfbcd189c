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
from typing import Any

from pluralign.engine.errors import CacheSchemaError, InputError
from pluralign.schemas.arrow import SCHEMA_VERSION, schema_version_of


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
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_bytes(dest: str | os.PathLike[str], data: bytes) -> Path:
    with atomic_path(dest) as tmp:
        tmp.write_bytes(data)
    return Path(dest)


def write_json(dest: str | os.PathLike[str], data: Any) -> Path:
    """JSON without NaN (undefined figures must be written as null by the caller)."""
    text = json.dumps(data, indent=2, allow_nan=False, default=_json_default) + "\n"
    return write_bytes(dest, text.encode())


def write_parquet(table: Any, dest: str | os.PathLike[str]) -> Path:
    import pyarrow.parquet as pq

    with atomic_path(dest) as tmp:
        pq.write_table(table, tmp)
    return Path(dest)


def read_json(path: str | os.PathLike[str]) -> Any:
    """Parse a JSON file, or raise InputError naming the file (missing, unreadable, bad JSON)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError("file not found", file=p) from None
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"cannot read: {e}", file=p) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(f"not valid JSON: {e.msg} at line {e.lineno} column {e.colno}",
                         file=p) from None


def require_layout(schema: Any, kind: str, file: str | os.PathLike[str], fix: str) -> None:
    """Refuse a stored table of another kind or schema version, naming the file, both versions
    and ``fix`` (what the user can do about it)."""
    version, found = schema_version_of(schema)
    if found != kind or version != SCHEMA_VERSION:
        raise CacheSchemaError(
            f"{file}: written as {found!r} table with schema version {version or '(none)'}; "
            f"this pluralign reads {kind!r} schema version {SCHEMA_VERSION} ({fix})"
        )


def _json_default(o: Any) -> Any:
    import numpy as np

    if isinstance(o, np.generic):
        return o.item()
    raise TypeError(f"not JSON serializable: {type(o).__name__}")
