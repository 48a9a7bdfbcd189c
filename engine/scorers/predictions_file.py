"""``predictions:PATH``: predicted scores imported from a file.

Two layouts: our own table (Parquet, CSV or JSON records with ``scenario``, ``response``,
``attribute``, ``score`` and optionally ``sample``; samples are averaged), or the research
code's ``input_output.json`` (a list of items, one per scenario in benchmark order, each with
``input.labels`` and ``output.choice_info.predictions``: one attribute -> score dict per response).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from pluralign.engine.data.benchmark import Benchmark
from pluralign.engine.errors import InputError
from pluralign.engine.store.cache import scorer_identity
from pluralign.engine.store.files import read_json
from pluralign.engine.store.hashing import file_digest

if TYPE_CHECKING:
    import pyarrow as pa

_COLUMNS = ("scenario", "response", "attribute", "score")
_LABEL_TOLERANCE = 1e-9


class PredictionsScorer:
    """Scores read from ``path``; the identity hashes the file's content, not its name."""

    name = "predictions"
    needs_train = False

    def __init__(self, path: str) -> None:
        self.path = Path(path)
        """The predictions file."""
        if not self.path.is_file():
            raise InputError("predictions file not found", file=self.path,
                             hint="write predictions:PATH with an existing file")

    def identity(self, bench: Benchmark, train: Benchmark | None) -> str:
        return scorer_identity(self.name, {"sha256": file_digest(self.path)})

    def fit(self, train: Benchmark) -> None:
        return None

    def predict(self, bench: Benchmark) -> np.ndarray:
        """float64 (N, A); every (response, attribute) of ``bench`` must be in the file."""
        suffix = self.path.suffix.lower()
        if suffix == ".parquet":
            return from_records(bench, _parquet_records(self.path), self.path)
        if suffix == ".csv":
            return from_records(bench, _csv_records(self.path), self.path)
        data = read_json(self.path)
        if _is_input_output(data):
            return from_input_output(bench, data, self.path)
        if isinstance(data, list):
            return from_records(bench, data, self.path)
        raise InputError("expected a list of score records or of input/output items",
                         file=self.path)


# ---------------------------------------------------------------------------- our layout


def from_records(bench: Benchmark, records: Sequence[object], file: Path) -> np.ndarray:
    """Mean score per (response, attribute) over the records' samples."""
    ids = {s.id: i for i, s in enumerate(bench.scenarios)}
    attrs = {a: j for j, a in enumerate(bench.attributes)}
    shape = (bench.n_responses, len(bench.attributes))
    sums, counts = np.zeros(shape), np.zeros(shape, dtype=np.int64)
    seen: set[tuple[int, int, int]] = set()
    for i, rec in enumerate(records):
        row, col, sample, score = _record(rec, i, file, bench, ids, attrs)
        if (row, col, sample) in seen:
            raise InputError("duplicate score for this scenario, response, attribute and sample",
                             file=file, record=i, field="score")
        seen.add((row, col, sample))
        sums[row, col] += score
        counts[row, col] += 1
    if (counts == 0).any():
        row, col = (int(v) for v in np.argwhere(counts == 0)[0])
        sc = bench.scenarios[int(bench.scenario_of[row])]
        raise InputError(
            f"no score for scenario {sc.id!r}, response {int(bench.response_index[row])}, "
            f"attribute {bench.attributes[col]!r}", file=file,
            hint="the file must score every response of the benchmark on every attribute",
        )
    return sums / counts


def _record(rec: object, i: int, file: Path, bench: Benchmark, ids: Mapping[str, int],
            attrs: Mapping[str, int]) -> tuple[int, int, int, float]:
    if not isinstance(rec, Mapping):
        raise InputError("a score record must be an object", file=file, record=i)
    for col in _COLUMNS:
        if rec.get(col) is None:
            raise InputError("missing", file=file, record=i, field=col)
    scenario = str(rec["scenario"])
    if scenario not in ids:
        raise InputError(f"unknown scenario {scenario!r}", file=file, record=i,
                         field="scenario", hint=f"this file is not for {bench.identity}")
    if rec["attribute"] not in attrs:
        raise InputError(f"unknown attribute {rec['attribute']!r}", file=file, record=i,
                         field="attribute", hint=f"known: {', '.join(bench.attributes)}")
    s = ids[scenario]
    n = len(bench.scenarios[s].responses)
    response = _index(rec["response"], n, file, i, "response")
    sample = _index(rec.get("sample", 0) or 0, None, file, i, "sample")
    score = _score(rec["score"], file, i, "score")
    return int(bench.offsets[s]) + response, attrs[rec["attribute"]], sample, score


def _index(v: object, limit: int | None, file: Path, i: int, name: str) -> int:
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    if isinstance(v, bool) or not isinstance(v, int) or v < 0 or (limit is not None
                                                                   and v >= limit):
        bound = "" if limit is None else f" below {limit}"
        raise InputError(f"{v!r} is not an integer >= 0{bound}", file=file, record=i,
                         field=name)
    return v


def _score(v: object, file: Path, rec: object, name: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise InputError(f"score {v!r} is not a finite number", file=file, record=rec,
                         field=name)
    if not 0.0 <= v <= 1.0:
        raise InputError(f"score {v!r} is outside [0, 1]", file=file, record=rec, field=name)
    return float(v)


def _parquet_records(path: Path) -> list[dict[str, object]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as e:
        raise InputError(f"not a readable Parquet file ({e})", file=path) from None
    return _table_records(table, path)


def _csv_records(path: Path) -> list[dict[str, object]]:
    import pyarrow as pa
    import pyarrow.csv as pcsv

    # Scenario ids stay text even when they look like numbers.
    options = pcsv.ConvertOptions(column_types={"scenario": pa.string(),
                                                "attribute": pa.string()})
    try:
        table = pcsv.read_csv(path, convert_options=options)
    except (pa.ArrowException, OSError) as e:
        raise InputError(f"not a readable CSV file ({e})", file=path) from None
    return _table_records(table, path)


def _table_records(table: pa.Table, path: Path) -> list[dict[str, object]]:
    for col in _COLUMNS:
        if col not in table.column_names:
            raise InputError("missing column", file=path, field=col,
                             hint=f"columns: {', '.join(_COLUMNS)}[, sample]")
    records: list[dict[str, object]] = table.to_pylist()
    return records


# ---------------------------------------------------------------------------- input_output


def _is_input_output(data: object) -> bool:
    return (isinstance(data, list) and bool(data) and isinstance(data[0], Mapping)
            and "input" in data[0] and "output" in data[0])


def from_input_output(bench: Benchmark, items: Sequence[object], file: Path) -> np.ndarray:
    """Predictions of the research code's ``input_output.json``, items matched to scenarios
    by position; each item's ``input.labels`` must equal the benchmark's labels."""
    if len(items) != bench.n_scenarios:
        raise InputError(f"{len(items)} items for {bench.n_scenarios} scenarios", file=file,
                         hint=f"the file must cover {bench.identity} in order")
    out = np.empty((bench.n_responses, len(bench.attributes)))
    for i, item in enumerate(items):
        sc = bench.scenarios[i]
        rec = f"{i} (scenario {sc.id!r})"
        labels = _path(item, ("input", "labels"), file, rec)
        preds = _path(item, ("output", "choice_info", "predictions"), file, rec)
        _check_labels(bench, i, labels, file, rec)
        if not isinstance(preds, list) or len(preds) != len(sc.responses):
            raise InputError(f"needs one dict per response ({len(sc.responses)})", file=file,
                             record=rec, field="output.choice_info.predictions")
        for r, pred in enumerate(preds):
            out[int(bench.offsets[i]) + r] = _prediction_row(bench, pred, file, rec, r)
    return out


def _path(item: object, keys: tuple[str, ...], file: Path, rec: str) -> object:
    node = item
    for depth, key in enumerate(keys):
        if not isinstance(node, Mapping) or key not in node:
            raise InputError("missing", file=file, record=rec,
                             field=".".join(keys[: depth + 1]))
        node = node[key]
    return node


def _check_labels(bench: Benchmark, i: int, labels: object, file: Path, rec: str) -> None:
    sc = bench.scenarios[i]
    if not isinstance(labels, list) or len(labels) != len(sc.responses):
        raise InputError(f"needs one label dict per response ({len(sc.responses)})",
                         file=file, record=rec, field="input.labels")
    for r, (theirs, ours) in enumerate(zip(labels, sc.labels, strict=True)):
        for a in bench.attributes:
            v = theirs.get(a) if isinstance(theirs, Mapping) else None
            if isinstance(v, bool) or not isinstance(v, (int, float)) \
                    or abs(float(v) - ours[a]) > _LABEL_TOLERANCE:
                raise InputError(
                    f"label {v!r} differs from the benchmark's {ours[a]!r}", file=file,
                    record=rec, field=f"input.labels[{r}].{a}",
                    hint="items are matched to scenarios by position: same benchmark, same order",
                )


def _prediction_row(bench: Benchmark, pred: object, file: Path, rec: str, r: int) -> list[float]:
    where = f"output.choice_info.predictions[{r}]"
    if not isinstance(pred, Mapping):
        raise InputError("must be an object of attribute -> score", file=file, record=rec,
                         field=where)
    row = []
    for a in bench.attributes:
        if a not in pred:
            raise InputError("missing attribute", file=file, record=rec, field=f"{where}.{a}")
        row.append(_score(pred[a], file, rec, f"{where}.{a}"))
    return row
