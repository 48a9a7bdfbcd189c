"""Content hashes: the one place that turns values, text, bytes and files into SHA-256 names.

Every cache key, identity and seed in pluralign is built here, so that the rule for each kind of
input is written once:

* :func:`digest` — a JSON-able value (request payloads, row keys, target JSON), compact and with
  sorted keys;
* :func:`canonical_json` / :func:`settings_digest` — scorer settings, strictly (no NaN, numpy
  scalars and containers normalised) so equal settings always give equal identities;
* :func:`text_digest` — text or bytes as they are;
* :func:`file_digest` — a file's bytes, read in chunks;
* :class:`Hasher` — several pieces (arrays, length-prefixed texts) streamed into one hash;
* :func:`seed_of` — a 64-bit seed for a random generator, fixed by a text.

The serialisations are exactly those the keys were first written with, so caches built by
earlier versions keep their keys.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Iterable, Mapping

import numpy as np

_CHUNK = 1 << 20


def digest(value: object, n: int = 16) -> str:
    """SHA-256 (``n`` hex) of a JSON-able value: sorted keys, no whitespace, ASCII escapes,
    anything else JSON cannot write as its ``str``."""
    blob = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return text_digest(blob, n)


def text_digest(data: str | bytes, n: int = 64) -> str:
    """SHA-256 (``n`` hex) of text (UTF-8) or bytes."""
    raw = data.encode() if isinstance(data, str) else data
    return hashlib.sha256(raw).hexdigest()[:n]


def file_digest(path: str | os.PathLike[str], n: int = 64) -> str:
    """SHA-256 (``n`` hex) of a file's bytes."""
    return Hasher().files([path]).hexdigest(n)


def seed_of(text: str) -> int:
    """A 64-bit seed fixed by ``text`` (the first 16 hex of its SHA-256)."""
    return int(text_digest(text, 16), 16)


class Hasher:
    """One SHA-256 over several pieces, fed in order."""

    def __init__(self, first: str | bytes = b"") -> None:
        self._h = hashlib.sha256()
        if first:
            self.update(first)

    def update(self, data: str | bytes) -> Hasher:
        """Add text (UTF-8) or bytes as they are."""
        self._h.update(data.encode() if isinstance(data, str) else data)
        return self

    def array(self, a: np.ndarray) -> Hasher:
        """Add an array's raw bytes in C order (dtype and shape are the caller's business)."""
        self._h.update(np.ascontiguousarray(a).tobytes())
        return self

    def texts(self, texts: Iterable[str]) -> Hasher:
        """Add texts, each prefixed by its UTF-8 length (so the split between them counts)."""
        for t in texts:
            data = t.encode("utf-8")
            self._h.update(len(data).to_bytes(8, "little"))
            self._h.update(data)
        return self

    def files(self, paths: Iterable[str | os.PathLike[str]]) -> Hasher:
        """Add the bytes of each file in turn."""
        for p in paths:
            with open(p, "rb") as f:
                while chunk := f.read(_CHUNK):
                    self._h.update(chunk)
        return self

    def hexdigest(self, n: int = 64) -> str:
        return self._h.hexdigest()[:n]


# ---------------------------------------------------------------------------- settings


def canonical_json(obj: object) -> str:
    """JSON text with sorted keys and no whitespace: equal settings give equal text."""
    return json.dumps(_plain(obj), sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False)


def settings_digest(settings: object, n: int = 12) -> str:
    """SHA-256 (``n`` hex) of :func:`canonical_json` of ``settings``."""
    return text_digest(canonical_json(settings), n)


def _plain(obj: object) -> object:
    # Identity hashes must not depend on container types or numpy scalar types.
    if obj is None or isinstance(obj, (bool, str, int)):
        return obj
    if isinstance(obj, float):
        if not math.isfinite(obj):
            raise ValueError(f"setting value {obj!r} is not finite")
        return obj
    if isinstance(obj, np.generic):
        return _plain(obj.item())
    if isinstance(obj, np.ndarray):
        return _plain(obj.tolist())
    if isinstance(obj, Mapping):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, (set, frozenset)):
        return sorted((_plain(v) for v in obj), key=canonical_json)
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise TypeError(f"setting of type {type(obj).__name__} cannot go into a cache key")
