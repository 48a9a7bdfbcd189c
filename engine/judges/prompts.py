"""Prompts as data: judges' templates and attribute definitions from a user file (TOML or JSON).

The layout is documented in docs/prompts.md: a ``[definitions]`` table (attribute -> text) and
one table per judge (``comparative-regression``, ``regression``, ``prompt-aligned``,
``unaligned``) overriding any of that judge's templates. Whatever is not given keeps our
wording. The file's content hash goes into the scorer identity.

Templates are parsed the way ``str.format`` parses them (format specs included) and rendered by
:func:`render`, which resolves nothing but the placeholders a template may use: no attribute or
index access, only fill, alignment, width and precision in a spec, bounded sizes.
"""

from __future__ import annotations

import functools
import json
import re
import string
import tomllib
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pluralign.engine.errors import InputError
from pluralign.engine.jsontypes import UntrustedJSON
from pluralign.engine.judges.attributes import check_definitions
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

MAX_FILE_BYTES = 4 << 20
"""Largest prompts file read."""
MAX_TEMPLATE_CHARS = 65_536
"""Longest template (a template repeated 200,000 times once rendered into gigabytes)."""
MAX_PLACEHOLDERS = 64
"""Most placeholders in one template."""
MAX_WIDTH = 1_000
"""Largest width in a format spec (``{question:>400000000}`` once grew one sweep to 23 GB)."""
MAX_PRECISION = 100_000
"""Largest precision (a cut: ``{text:.2000}`` keeps the first 2,000 characters)."""
MAX_RENDERED_CHARS = 1_000_000
"""Longest rendered template (far beyond any model's context)."""

_SPEC = re.compile(r"(?:(?P<fill>[^{}])?(?P<align>[<>^]))?(?P<width>[0-9]+)?"
                   r"(?:\.(?P<precision>[0-9]+))?s?", re.DOTALL)
"""A simple format spec for text: ``[[fill]align][width][.precision][s]``."""


class TemplateError(ValueError):
    """A template that does not parse into the allowed placeholders and simple specs."""


@dataclass(frozen=True)
class _Field:
    """One ``{name!conversion:spec}`` of a compiled template."""

    literal: str
    name: str | None
    conversion: str | None
    spec: str


def _check_spec(name: str, spec: str) -> None:
    nested = "{" in spec or "}" in spec
    if not nested:
        try:
            nested = any(f is not None for _, f, _, _ in string.Formatter().parse(spec))
        except ValueError:
            nested = True
    if nested:
        raise TemplateError(f"a placeholder inside the format spec of {{{name}}} is not allowed")
    m = _SPEC.fullmatch(spec)
    if m is None:
        raise TemplateError(f"format spec {spec!r} of {{{name}}} is not allowed: only fill, "
                            f"alignment, width and precision (e.g. {{{name}:>20}}, "
                            f"{{{name}:.500}})")
    if int(m["width"] or 0) > MAX_WIDTH or int(m["precision"] or 0) > MAX_PRECISION:
        raise TemplateError(f"format spec {spec!r} of {{{name}}} is too wide (width at most "
                            f"{MAX_WIDTH:,}, precision at most {MAX_PRECISION:,})")


@functools.lru_cache(maxsize=256)
def compile_template(text: str, allowed: frozenset[str]) -> tuple[_Field, ...]:
    """``text`` parsed as ``str.format`` parses it, every field checked: a placeholder from
    ``allowed`` by plain name (no ``.attr``, ``[index]`` or position), conversion ``!s`` or
    ``!r`` at most, a simple spec; sizes bounded. Raises :class:`TemplateError`."""
    if len(text) > MAX_TEMPLATE_CHARS:
        raise TemplateError(f"template of {len(text):,} characters is too long (at most "
                            f"{MAX_TEMPLATE_CHARS:,})")
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError as e:
        raise TemplateError(f"template does not format ({e}); write literal braces as {{{{ "
                            "and }}") from None
    out = []
    for literal, name, spec, conversion in parsed:
        if name is not None:
            _check_field(name, conversion, spec or "", allowed)
        out.append(_Field(literal, name, conversion, spec or ""))
    if sum(f.name is not None for f in out) > MAX_PLACEHOLDERS:
        raise TemplateError(f"more than {MAX_PLACEHOLDERS} placeholders in one template")
    return tuple(out)


def _check_field(name: str, conversion: str | None, spec: str,
                 allowed: Collection[str]) -> None:
    shown = ", ".join(f"{{{a}}}" for a in sorted(allowed)) or "none"
    if name not in allowed:
        plain = re.match(r"[A-Za-z_][A-Za-z0-9_]*", name)
        what = ("attribute or index access" if plain and plain.end() < len(name)
                else "an unknown placeholder")
        raise TemplateError(f"{{{name[:40]}}} is {what} (allowed: {shown})")
    if conversion not in (None, "s", "r"):
        raise TemplateError(f"conversion !{conversion} of {{{name}}} is not allowed "
                            "(!s or !r at most)")
    _check_spec(name, spec)


def render(template: str, **values: object) -> str:
    """``template`` with its placeholders filled from ``values`` (each as text), as
    ``template.format(**values)`` would, but resolving nothing else; a template outside the
    rules, or one that renders to more than :data:`MAX_RENDERED_CHARS`, raises InputError."""
    try:
        fields = compile_template(template, frozenset(values))
    except TemplateError as e:
        raise InputError(str(e), field="template", hint="see docs/prompts.md") from None
    parts: list[str] = []
    size = 0
    for f in fields:
        parts.append(f.literal)
        size += len(f.literal)
        if f.name is not None:
            text = str(values[f.name])
            text = repr(text) if f.conversion == "r" else text
            parts.append(format(text, f.spec))
            size += len(parts[-1])
        if size > MAX_RENDERED_CHARS:
            raise InputError(f"a template renders to more than {MAX_RENDERED_CHARS:,} "
                             "characters", field="template", hint="shorten the template")
    return "".join(parts)


@dataclass(frozen=True)
class PromptFile:
    """Templates and definitions read from a user file."""

    templates: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    """Judge name -> template name -> text (only what the file sets)."""
    definitions: Mapping[str, str] = field(default_factory=dict)
    """Attribute -> definition (only what the file sets)."""
    sha256: str = ""
    """Hash (16 hex) of the file's decoded content (part of the scorer identity)."""
    path: str = ""
    """The file it was read from (named in errors; not part of the identity)."""

    def for_judge(self, name: str) -> dict[str, str]:
        return dict(self.templates.get(name, {}))

    def check_definitions(self, attributes: Iterable[str]) -> None:
        """Refuse a definition for an attribute that is neither the benchmark's nor one with
        a built-in definition (a typo would otherwise be ignored silently)."""
        check_definitions(self.definitions, attributes, file=self.path or None)



def _parse(path: Path) -> UntrustedJSON:
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise InputError(f"prompts file is larger than {MAX_FILE_BYTES >> 20} MiB",
                             file=str(path))
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
    except RecursionError:
        raise InputError("prompts file is nested too deeply to read", file=str(path),
                         hint="tables of strings; see docs/prompts.md") from None


def _check_template(path: Path, judge: str, name: str, text: object) -> str:
    allowed = TEMPLATE_FIELDS[judge].get(name)
    if allowed is None:
        raise InputError(f"unknown template {name[:40]!r}", file=str(path), record=judge,
                         field=name[:40], hint=f"templates of {judge}: "
                                          f"{', '.join(TEMPLATE_FIELDS[judge])}")
    if not isinstance(text, str):
        raise InputError("template must be a string", file=str(path), record=judge, field=name)
    try:
        compile_template(text, allowed)
    except TemplateError as e:
        raise InputError(str(e), file=str(path), record=judge, field=name) from None
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
            raise InputError("must be a table/object", file=str(p), record=key[:40])
        if key == "definitions":
            for attr, text in value.items():
                if not isinstance(text, str) or not text.strip():
                    raise InputError("definition must be a non-empty string", file=str(p),
                                     record="definitions", field=attr[:40])
                if len(text) > MAX_TEMPLATE_CHARS:
                    raise InputError(f"definition is longer than {MAX_TEMPLATE_CHARS:,} "
                                     "characters", file=str(p), record="definitions",
                                     field=attr[:40])
                definitions[attr] = text
        elif key in TEMPLATE_FIELDS:
            templates[key] = {n: _check_template(p, key, n, t) for n, t in value.items()}
        else:
            raise InputError(f"unknown table {key[:40]!r}", file=str(p), record=key[:40],
                             hint=f"tables: definitions, {', '.join(TEMPLATE_FIELDS)}")
    blob = json.dumps({"templates": templates, "definitions": definitions}, sort_keys=True)
    return PromptFile(templates, definitions, text_digest(blob, 16), str(p))
