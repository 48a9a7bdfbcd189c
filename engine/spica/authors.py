"""Loader for the layout of the SPICA authors' public annotations.

Annotation files: one JSON object mapping scenario id -> group code -> list of raters, each rater
an object class -> ``{"response-rating", "strategy-rating", "rated-response-index"}``.
Scenario files: ``{"id", "body", "responses": {class: [texts]}}`` — one object, a list of them,
or one per line. Raters have no ids there, so rater ``i`` of group ``g`` becomes ``g#i``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TypedDict

from pluralign.engine.errors import DataNotFoundError, InputError
from pluralign.engine.jsontypes import UntrustedJSON
from pluralign.engine.spica.bank import ScenarioBank, make_bank, where
from pluralign.schemas.spica import (
    DEFAULT_CLASSES,
    BankMeta,
    BankScenario,
    ClassRating,
    RaterRecord,
    RatingScale,
    ResponseClass,
)

_FIELDS = {"response-rating": "response", "strategy-rating": "strategy",
           "rated-response-index": "rated_response"}

_ALIASES = {"refusal": "refusal", "highlevel": "high-level", "highlevelfacts": "high-level",
            "specific": "specific", "specificfacts": "specific",
            "multiperspective": "multi-perspective", "opinionated": "opinionated",
            "opinion": "opinionated"}


def default_strategy(cls: str) -> str:
    """Our strategy description for a class whose name matches one of the five defaults."""
    key = _ALIASES.get(re.sub(r"[^a-z]", "", cls.lower()))
    return dict(DEFAULT_CLASSES).get(key, "") if key else ""


def _read_json(path: Path) -> UntrustedJSON:
    if not path.exists():
        raise DataNotFoundError(f"{path}: no such file")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"cannot read: {e}", file=path) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as first:
        try:  # one object per line
            return [json.loads(line) for line in text.splitlines() if line.strip()]
        except json.JSONDecodeError:
            raise InputError(f"not valid JSON ({first})", file=path) from None


class ScenarioFileEntry(TypedDict):
    """One scenario as its file gives it."""

    body: str
    responses: dict[str, list[str]]
    """Class -> response texts."""
    file: str
    """The file it came from."""


def read_scenario_files(files: Sequence[str | Path]) -> dict[str, ScenarioFileEntry]:
    """Scenario id -> ``{"body", "responses", "file"}`` from every scenario file."""
    out: dict[str, ScenarioFileEntry] = {}
    for f in files:
        path = Path(f)
        data = _read_json(path)
        for i, obj in enumerate(data if isinstance(data, list) else [data]):
            rec = f"item {i}"
            if not isinstance(obj, dict):
                raise InputError("expected an object {id, body, responses}", file=path,
                                 record=rec)
            for key in ("id", "body", "responses"):
                if key not in obj:
                    raise InputError("missing field", file=path, record=rec, field=key)
            sid = str(obj["id"])
            if sid in out:
                raise InputError("duplicate scenario id", file=path, record=where(sid),
                                 field="id", hint=f"also in {out[sid]['file']}")
            resp = obj["responses"]
            if not isinstance(resp, dict) or not resp:
                raise InputError("responses must be an object class -> [texts]", file=path,
                                 record=where(sid), field="responses")
            for c, texts in resp.items():
                if not isinstance(texts, list) or any(not isinstance(t, str) for t in texts):
                    raise InputError("must be a list of strings", file=path,
                                     record=where(sid, cls=c), field=f"responses.{c}")
            if not isinstance(obj["body"], str):
                raise InputError("must be a string", file=path, record=where(sid), field="body")
            out[sid] = {"body": obj["body"], "responses": resp, "file": str(path)}
    return out


def _int_or_none(v: object, file: Path, rec: str, fld: str) -> int | None:
    if v is None:
        return None
    if isinstance(v, float) and v.is_integer():
        return int(v)
    if isinstance(v, bool) or not isinstance(v, int):
        raise InputError(f"{v!r} is not an integer", file=file, record=rec, field=fld)
    return v


def _parse_rater(
    raw: object, sid: str, group: str, idx: int, classes: Mapping[str, object], file: Path
) -> RaterRecord:
    name = f"{group}#{idx}"
    rec = where(sid, group, name)
    if not isinstance(raw, dict):
        raise InputError("a rater must be an object class -> ratings", file=file, record=rec,
                         field="rater")
    ratings: dict[str, ClassRating] = {}
    for cls, vals in raw.items():
        crec = where(sid, group, name, cls)
        if cls not in classes:
            raise InputError(f"class {cls!r} is not among the scenario's responses", file=file,
                             record=crec, field="class", hint=f"classes: {', '.join(classes)}")
        if not isinstance(vals, dict):
            raise InputError("expected {response-rating, strategy-rating, "
                             "rated-response-index}", file=file, record=crec, field=cls)
        unknown = [k for k in vals if k not in _FIELDS]
        if unknown:
            raise InputError(f"unknown field(s) {unknown}", file=file, record=crec,
                             field=unknown[0], hint=f"known: {', '.join(_FIELDS)}")
        parsed = {_FIELDS[k]: _int_or_none(v, file, crec, k) for k, v in vals.items()}
        ratings[cls] = ClassRating(**parsed)
    return RaterRecord(name, (group,), ratings)


def _annotated(
    files: Mapping[str, Sequence[str | Path]], scen: Mapping[str, ScenarioFileEntry]
) -> dict[str, tuple[str, list[RaterRecord]]]:
    """Scenario id -> (split, raters) from every annotation file."""
    out: dict[str, tuple[str, list[RaterRecord]]] = {}
    for split, paths in files.items():
        for f in paths:
            path = Path(f)
            data = _read_json(path)
            if not isinstance(data, dict):
                raise InputError("expected an object scenario id -> group -> raters", file=path)
            for sid, groups in data.items():
                if sid not in scen:
                    raise InputError("scenario not found in any scenario file", file=path,
                                     record=where(sid), field="id")
                if sid in out:
                    raise InputError("scenario annotated in two files", file=path,
                                     record=where(sid), field="id")
                if not isinstance(groups, dict):
                    raise InputError("expected an object group -> raters", file=path,
                                     record=where(sid), field="groups")
                raters = []
                for g, lst in groups.items():
                    if not isinstance(lst, list):
                        raise InputError("expected a list of raters", file=path,
                                         record=where(sid, g), field="raters")
                    responses = scen[sid]["responses"]
                    raters += [_parse_rater(r, sid, g, i, responses, path)
                               for i, r in enumerate(lst)]
                out[sid] = (split, raters)
    return out


def load_spica_layout(
    annotations: Mapping[str, Sequence[str | Path]] | Sequence[str | Path],
    scenarios: Sequence[str | Path],
    *,
    name: str = "spica",
    strategies: Mapping[str, str] | None = None,
    scale: RatingScale | None = None,
    keep_unrated: bool = True,
) -> ScenarioBank:
    """A bank from the authors' layout.

    ``annotations`` maps split -> files (a plain list means split ``train``). Scenarios no file
    annotates are kept in split ``unrated`` when ``keep_unrated`` (usable as queries).
    """
    files = dict(annotations) if isinstance(annotations, Mapping) else {"train": annotations}
    scen = read_scenario_files(scenarios)
    if not scen:
        raise InputError("no scenarios in the scenario files", field="scenarios")
    ann = _annotated(files, scen)
    first = next(iter(scen.values()))
    classes = tuple(
        ResponseClass(c, (strategies or {}).get(c) or default_strategy(c))
        for c in first["responses"]
    )
    meta = BankMeta(name, classes, scale or RatingScale())
    records = []
    for sid, s in scen.items():
        if sid not in ann and not keep_unrated:
            continue
        split, raters = ann.get(sid, ("unrated", []))
        resp = {c: tuple(t) for c, t in s["responses"].items()}
        records.append(BankScenario(sid, s["body"], resp, tuple(raters), split))
    return make_bank(meta, records, source=", ".join(str(p) for ps in files.values()
                                                     for p in ps))
