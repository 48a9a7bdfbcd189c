"""Prompts as data: judges' templates and attribute definitions from a user file (TOML or JSON).

The layout is documented in docs/prompts.md: a ``[definitions]`` table (attribute -> text) and
one table per judge (``comparative-regression``, ``regression``, ``prompt-aligned``,
``unaligned``) overriding any of that judge's templates. Whatever is not given keeps our
wording. The file's content hash goes into the scorer identity.
"""

from __future__ import annotations

import json
import string
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pluralign.engine.errors import InputError
from pluralign.engine.jsontypes import UntrustedJSON
from pluralign.engine.store.hashing import text_digest

TEMPLATE_FIELDS: Mapping[str, Mapping[str, frozenset[str]]] = {
    "comparative-regression": {
        "system": frozenset({"attribute", "definition", "scale", "mid"}),
        "user": frozenset({"question", "responses", "attribute", "scale"}),
        "response": frozenset({"letter", "text"}),
        "separator": frozenset(),
    },
    "regression": {
        "system": frozenset({"attribute", "definition", "scale", "mid"}),
        "user": frozenset({"question", "text", "attribute", "scale"}),
    },
    "prompt-aligned": {
        "system": frozenset({"criteria"}),
        "none": frozenset(),
        "user": frozenset({"question", "responses"}),
        "response": frozenset({"letter", "text"}),
        "separator": frozenset(),
        "example_user": frozenset({"question", "responses"}),
        "example_reasoning": frozenset({"letter"}),
    },
    "unaligned": {
        "system": frozenset(),
        "user": frozenset({"question", "responses"}),
        "response": frozenset({"letter", "text"}),
        "separator": frozenset(),
    },
}
"""Per judge, the templates a prompts file may set and the placeholders each may use."""


@dataclass(frozen=True)
class PromptFile:
    """Templates and definitions read from a user file."""

    templates: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    """Judge name -> template name -> text (only what the file sets)."""
    definitions: Mapping[str, str] = field(default_factory=dict)
    """Attribute -> definition (only what the file sets)."""
    sha256: str = ""
    """Hash (16 hex) of the file's decoded content (part of the scorer identity)."""

    def for_judge(self, name: str) -> dict[str, str]:
        return dict(self.templates.get(name, {}))


def _parse(path: Path) -> UntrustedJSON:
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise InputError(f"cannot read prompts file ({e.strerror})", file=str(path)) from None
    try:
        if path.suffix.lower() == ".toml":
            return tomllib.loads(raw.decode("utf-8"))
        return json.loads(raw)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"prompts file does not parse ({e})", file=str(path),
                         hint="write TOML (.toml) or JSON; see docs/prompts.md") from None


def _check_template(path: Path, judge: str, name: str, text: object) -> str:
    allowed = TEMPLATE_FIELDS[judge].get(name)
    if allowed is None:
        raise InputError(f"unknown template {name!r}", file=str(path), record=judge,
                         field=name, hint=f"templates of {judge}: "
                                          f"{', '.join(TEMPLATE_FIELDS[judge])}")
    if not isinstance(text, str):
        raise InputError("template must be a string", file=str(path), record=judge, field=name)
    try:
        used = {f for _, f, _, _ in string.Formatter().parse(text) if f is not None}
    except ValueError as e:
        raise InputError(f"template does not format ({e})", file=str(path), record=judge,
                         field=name, hint="write literal braces as {{ and }}") from None
    bad = sorted(used - allowed)
    if bad:
        raise InputError(f"unknown placeholders {bad}", file=str(path), record=judge,
                         field=name, hint=f"allowed: {sorted(allowed) or 'none'}")
    return text


def load_prompts(path: str | Path) -> PromptFile:
    """Read and check a prompts file; errors name the file, table and key."""
    p = Path(path)
    data = _parse(p)
    if not isinstance(data, dict):
        raise InputError("prompts file must hold a table/object", file=str(p))
    templates: dict[str, dict[str, str]] = {}
    definitions: dict[str, str] = {}
    for key, value in data.items():
        if not isinstance(value, dict):
            raise InputError("must be a table/object", file=str(p), record=key)
        if key == "definitions":
            for attr, text in value.items():
                if not isinstance(text, str) or not text.strip():
                    raise InputError("definition must be a non-empty string", file=str(p),
                                     record="definitions", field=attr)
                definitions[attr] = text
        elif key in TEMPLATE_FIELDS:
            templates[key] = {n: _check_template(p, key, n, t) for n, t in value.items()}
        else:
            raise InputError(f"unknown table {key!r}", file=str(p), record=key,
                             hint=f"tables: definitions, {', '.join(TEMPLATE_FIELDS)}")
    blob = json.dumps({"templates": templates, "definitions": definitions}, sort_keys=True)
    return PromptFile(templates, definitions, text_digest(blob, 16))
