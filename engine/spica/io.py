"""Reading and writing scenario banks in our Arrow/Parquet layout (schemas/spica.py).

Writes go to a temporary name in the target folder and are renamed into place, so a reader
never sees half a file; a file of another layout version is refused with a clear error.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TypedDict

import pyarrow as pa
import pyarrow.parquet as pq

from pluralign.engine.errors import CacheSchemaError, DataNotFoundError, InputError
from pluralign.engine.spica.bank import ScenarioBank, make_bank
from pluralign.engine.store.files import write_parquet
from pluralign.schemas.arrow import SCHEMA_VERSION, schema_version_of
from pluralign.schemas.spica import (
    BANK_KIND,
    BANK_META_KEY,
    LAYOUT_KEY,
    SPICA_LAYOUT_VERSION,
    BankMeta,
    BankScenario,
    ClassRating,
    RaterRecord,
    bank_schema,
)


def bank_to_table(bank: ScenarioBank) -> pa.Table:
    """One row per (scenario, response class), classes in bank order."""
    rows: dict[str, list[object]] = {
        k: [] for k in ("scenario", "split", "prompt", "class", "responses", "ratings")}
    for s in bank.scenarios:
        for c in bank.classes:
            rows["scenario"].append(s.id)
            rows["split"].append(s.split)
            rows["prompt"].append(s.prompt)
            rows["class"].append(c)
            rows["responses"].append(list(s.responses[c]))
            rows["ratings"].append([
                {"rater": r.rater, "groups": list(r.groups),
                 "response_rating": r.ratings[c].response,
                 "strategy_rating": r.ratings[c].strategy,
                 "rated_response": r.ratings[c].rated_response}
                for r in s.raters if c in r.ratings
            ])
    return pa.Table.from_pydict(rows, schema=bank_schema(bank.meta))


def write_bank(bank: ScenarioBank, path: str | os.PathLike[str]) -> Path:
    """Store ``bank`` as a Parquet file (atomically)."""
    return write_parquet(bank_to_table(bank), path)


def _check_layout(schema: pa.Schema, file: str) -> BankMeta:
    version, kind = schema_version_of(schema)
    meta = schema.metadata or {}
    if kind != BANK_KIND:
        raise InputError(f"not a scenario bank (table kind {kind!r})", file=file,
                         hint="write banks with `pluralign spica` or engine.spica.io.write_bank")
    layout = meta.get(LAYOUT_KEY, b"").decode() or None
    if version != SCHEMA_VERSION or layout != SPICA_LAYOUT_VERSION:
        raise CacheSchemaError(
            f"{file}: scenario bank written with schema version {version} / layout {layout}; "
            f"this pluralign reads version {SCHEMA_VERSION} / layout {SPICA_LAYOUT_VERSION} "
            "(re-create the bank with this version)"
        )
    try:
        return BankMeta.from_json(meta[BANK_META_KEY].decode())
    except (KeyError, ValueError, TypeError) as e:
        raise InputError(f"bank metadata missing or unreadable ({e})", file=file,
                         field="metadata") from None


def read_bank(path: str | os.PathLike[str]) -> ScenarioBank:
    """Load and validate a bank written by :func:`write_bank`."""
    file = str(path)
    if not Path(path).exists():
        raise DataNotFoundError(f"{file}: no such scenario bank file")
    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as e:
        raise InputError(f"not a readable Parquet file ({e})", file=file) from None
    meta = _check_layout(table.schema, file)
    missing = [c for c in ("scenario", "split", "prompt", "class", "responses", "ratings")
               if c not in table.column_names]
    if missing:
        raise InputError(f"missing columns {missing}", file=file)
    return make_bank(meta, _scenarios_from_rows(table.to_pylist(), file), source=file)


class _RatingRow(TypedDict):
    rater: str
    groups: list[str]
    response_rating: int | None
    strategy_rating: int | None
    rated_response: int | None


_BankRow = TypedDict("_BankRow", {
    "scenario": str, "split": str, "prompt": str, "class": str, "responses": list[str],
    "ratings": list[_RatingRow]})
"""One row of a bank file, as its (checked) schema stores it."""


class _RaterEntry(TypedDict):
    groups: tuple[str, ...]
    ratings: dict[str, ClassRating]


def _scenarios_from_rows(rows: list[_BankRow], file: str) -> list[BankScenario]:
    order: list[str] = []
    heads: dict[str, tuple[str, str]] = {}
    responses: dict[str, dict[str, tuple[str, ...]]] = {}
    raters: dict[str, dict[str, _RaterEntry]] = {}
    for i, row in enumerate(rows):
        sid = row["scenario"]
        if sid not in heads:
            order.append(sid)
            heads[sid] = (row["prompt"], row["split"])
            responses[sid], raters[sid] = {}, {}
        elif heads[sid] != (row["prompt"], row["split"]):
            raise InputError("prompt or split differs between rows of one scenario",
                             file=file, record=f"row {i} (scenario {sid!r})", field="prompt")
        if row["class"] in responses[sid]:
            raise InputError("response class listed twice", file=file,
                             record=f"row {i} (scenario {sid!r})", field="class")
        responses[sid][row["class"]] = tuple(row["responses"])
        for j, rt in enumerate(row["ratings"]):
            entry = raters[sid].setdefault(rt["rater"], {"groups": tuple(rt["groups"]),
                                                         "ratings": {}})
            if row["class"] in entry["ratings"]:  # a second rating would silently win
                raise InputError(
                    f"rater {rt['rater']!r} rates class {row['class']!r} of this scenario twice",
                    file=file, record=f"row {i} (scenario {sid!r}), ratings[{j}]",
                    field="rater", hint="keep one rating per rater, scenario and class")
            entry["ratings"][row["class"]] = ClassRating(
                rt["response_rating"], rt["strategy_rating"], rt["rated_response"])
    return [
        BankScenario(
            id=sid, prompt=heads[sid][0], split=heads[sid][1], responses=responses[sid],
            raters=tuple(_rater(name, e) for name, e in raters[sid].items()),
        )
        for sid in order
    ]


def _rater(name: str, entry: _RaterEntry) -> RaterRecord:
    return RaterRecord(name, tuple(entry["groups"]), dict(entry["ratings"]))
