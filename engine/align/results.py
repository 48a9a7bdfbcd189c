"""Result tables, built in one place for the command line (which writes them) and the Python API
(which returns them): the per-target table of a re-alignment (``per_target.parquet``,
``pluralign.realign``) and row tables stamped with their kind and schema version (jury groups,
Pareto fronts, Overton and opinion rows ...), so a file and a DataFrame never disagree."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pyarrow is imported on first use: the command line imports this at start
    import pyarrow as pa

    from pluralign.engine.align.realign import AlignResult
    from pluralign.engine.data.targets import TargetSet


def finite_or_none(x: float | None) -> float | None:
    """JSON and Parquet nulls for undefined figures: NaN (and None) become None."""
    return None if x is None or math.isnan(x) else float(x)


RENAMED_COLUMNS: Mapping[str, str] = {
    # set summaries (summary.json "sets"): the sqrt(k)-normalised figure was called a weighted
    # score variant before it had its own name
    "weighted_sqrtk_mean": "closeness_mean",
    # jury groups (summary.json "groups", groups.parquet) and jurors (jurors.parquet): the mean
    # closeness was called "utility" whatever utility the welfare used
    "utility": "closeness", "utility_lo": "closeness_lo", "utility_hi": "closeness_hi",
}
"""Former result column names -> current ones, for reading files written before a rename."""


def current_names(row: Mapping[str, object]) -> dict[str, object]:
    """``row`` (a result row read back from a file) with former column names renamed to the
    current ones (:data:`RENAMED_COLUMNS`); a current name present wins over a former one."""
    out = {RENAMED_COLUMNS.get(k, k): v for k, v in row.items() if k not in RENAMED_COLUMNS}
    for old, new in RENAMED_COLUMNS.items():
        if old in row and new not in row:
            out[new] = row[old]
    return out


def per_target_table(rows: Iterable[tuple[TargetSet, AlignResult]]) -> pa.Table:
    """One row per target of each (target set, its re-alignment outcome): set, label, target
    JSON, number of attributes, accuracy (null where undefined), counted, correct and the
    weighted score (null where not computed)."""
    import pyarrow as pa

    from pluralign.schemas.arrow import PER_TARGET_SCHEMA

    cols: dict[str, list[object]] = {f.name: [] for f in PER_TARGET_SCHEMA}
    for ts, res in rows:
        n = len(ts)
        cols["set"] += [ts.name] * n
        cols["name"] += list(ts.labels) if ts.labels else [None] * n
        cols["target"] += ts.json_all()
        cols["n_attributes"] += ts.n_attributes.tolist()
        cols["accuracy"] += [finite_or_none(x) for x in res.accuracy.tolist()]
        cols["counted"] += res.counted.tolist()
        cols["correct"] += res.correct.tolist()
        weighted = res.weighted.tolist() if res.weighted is not None else [None] * n
        cols["weighted_score"] += [finite_or_none(x) for x in weighted]
    return pa.table(cols, schema=PER_TARGET_SCHEMA)


def columns_table(columns: Mapping[str, Sequence[object]], kind: str) -> pa.Table:
    """A table of ``columns`` (types inferred) whose schema records ``kind`` and the schema
    version, as every pluralign result file does."""
    import pyarrow as pa

    from pluralign.schemas.arrow import with_version

    table = pa.table(dict(columns))
    return table.cast(with_version(table.schema, kind))


def rows_table(rows: Sequence[Mapping[str, object]], kind: str) -> pa.Table:
    """:func:`columns_table` of row dicts; the columns are the first row's keys (a key a later
    row lacks is null there; no rows: no columns)."""
    keys = list(rows[0]) if rows else []
    return columns_table({k: [r.get(k) for r in rows] for k in keys}, kind)
