"""Names for JSON-shaped values, so that annotations say what a value is.

Parsed JSON whose shape is free-form (request bodies, JSON schemas, provider answers) is read by
key and narrowed where it is used; these aliases keep ``Any`` to that one honest place. Values
that are only passed through (dumped, hashed, compared) are annotated ``object`` instead, and
JSON with a fixed set of keys gets a ``TypedDict`` next to the code that builds it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeAlias

JSONObject: TypeAlias = Mapping[str, Any]
"""A parsed JSON object, read by key (its values are checked where they are used)."""

JSONDict: TypeAlias = dict[str, Any]
"""A JSON object being built or changed (its values are arbitrary JSON)."""

JSONSchema: TypeAlias = Mapping[str, Any]
"""A JSON schema (``{"type": "object", "properties": {...}}``), read by key."""

UntrustedJSON: TypeAlias = Any
"""Parsed JSON of unchecked shape (a provider's answer), indexed into inside ``try`` blocks
that catch the ``KeyError``/``TypeError`` of a wrong shape."""
