"""Benchmark files into :class:`Benchmark` objects: steerable JSON, raw HelpSteer2 rows, MIC CSV.

Every malformed record is an :class:`InputError` naming the file, the record and the field.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import sys
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TypedDict

import numpy as np

from pluralign.engine.data.benchmark import (
    HELPSTEER2_ATTRIBUTES,
    HELPSTEER2_LEVELS,
    MIC_ATTRIBUTES,
    MIC_LEVELS,
    Benchmark,
    make_benchmark,
)
from pluralign.engine.data.levels import grid_scale
from pluralign.engine.errors import DuplicateKeyError, InputError
from pluralign.engine.jsontypes import UntrustedJSON
from pluralign.engine.store.files import read_json, unique_pairs, write_bytes
from pluralign.schemas.records import Scenario

KNOWN_BENCHMARKS: dict[str, tuple[tuple[str, ...], tuple[float, ...]]] = {
    "helpsteer2": (HELPSTEER2_ATTRIBUTES, HELPSTEER2_LEVELS),
    "mic": (MIC_ATTRIBUTES, MIC_LEVELS),
}
"""Benchmarks whose attributes and levels are fixed by name (not inferred from the file)."""

MIC_SPLIT_SIZES: dict[str, int] = {"eval": 336, "train": 296}
"""Published MIC split sizes (steerable-pluralism paper §3.3); eval is drawn first."""

MIC_MIN_PER_PAIR = 8
"""Minimum scenarios per attribute/level pair in each MIC split (steerable-pluralism paper §3.3)."""

HELPSTEER2_MIN_PER_PAIR = 20
"""Minimum scenarios per attribute/level pair in each HelpSteer2 split (steerable-pluralism paper
§3.3)."""

HELPSTEER2_RAW_MAX = 4
"""Raw HelpSteer2 attributes are integers 0..4; labels are raw / 4."""


class StratificationWarning(UserWarning):
    """A stratified split could not give every attribute/level pair its minimum count."""


# ---------------------------------------------------------------- steerable JSON


def benchmark_family(name: str) -> str:
    """The leading word of a benchmark name: ``helpsteer2-raw:x`` -> ``helpsteer2``."""
    return re.split(r"[^a-z0-9]", name.lower(), maxsplit=1)[0]


def known_benchmark(name: str) -> tuple[tuple[str, ...], tuple[float, ...]] | None:
    """Attributes and levels fixed by a benchmark name (``helpsteer2``, ``mic``, ``mic-v2``...)."""
    return KNOWN_BENCHMARKS.get(benchmark_family(name))


def load_steerable_json(path: str | os.PathLike[str], name: str, split: str) -> Benchmark:
    """Load a steerable benchmark file: a JSON list of ``{prompt, responses, labels, reasonings?}``.

    Attributes and levels come from the name for known benchmarks, else from the first record's
    label keys and the distinct label values. Scenario ids are the records' ``id`` when present,
    else ``f"{split}-{index:05d}"``.
    """
    file = str(path)
    data = _read_unique(Path(path))
    if not isinstance(data, list):
        raise InputError(
            f"top level must be a JSON list of scenarios, got {type(data).__name__}",
            file=file, hint="write [{\"prompt\": ..., \"responses\": [...], \"labels\": [...]}]",
        )
    if not data:
        raise InputError("no scenarios", file=file, hint="the file holds an empty list")
    known = known_benchmark(name)
    attributes = known[0] if known else _attributes_from_first(data[0], file)
    scenarios = [_scenario_from_record(rec, i, split, file) for i, rec in enumerate(data)]
    bench = make_benchmark(name, split, attributes, known[1] if known else (0.0, 1.0),
                           scenarios, source=file)
    if known:
        _require_on_grid(bench, file)
        return bench
    levels = _infer_levels(bench, file)
    return make_benchmark(name, split, attributes, levels, scenarios, source=file)


class _Repeated(dict[str, object]):
    """An object that named ``key`` twice (kept only to say where)."""

    key = ""


def _marking_pairs(pairs: list[tuple[str, object]]) -> dict[str, object]:
    out: dict[str, object] = {}
    for k, v in pairs:
        if k in out:
            marked = _Repeated(pairs)
            marked.key = k
            return marked
        out[k] = v
    return out


def _read_unique(path: Path) -> UntrustedJSON:
    """A benchmark file's JSON; an object naming a key twice (``json`` would silently keep
    the last value) is refused naming the record and the field."""
    try:
        return read_json(path, unique_keys=True)
    except InputError as e:
        if "appears twice" not in str(e):
            raise
        data = json.loads(path.read_text(encoding="utf-8"), object_pairs_hook=_marking_pairs)
        record, where = _repeated_in(data, "")
        raise InputError(f"key {where.rpartition('.')[2]!r} appears twice in one object",
                         file=path, record=record, field=where.lstrip("."),
                         hint="each key once per object") from None


def _repeated_in(value: object, where: str) -> tuple[int | None, str]:
    """(record index, field path) of the first object naming a key twice."""
    if isinstance(value, _Repeated):
        return None, f"{where}.{value.key}"
    items: list[tuple[object, str, int | None]] = []
    if isinstance(value, dict):
        items = [(v, f"{where}.{k}", None) for k, v in value.items()]
    elif isinstance(value, list):
        items = [(v, f"{where}[{i}]" if where else "", i) for i, v in enumerate(value)]
    for item, inner, index in items:
        record, found = _repeated_in(item, inner)
        if found:
            return (index if not where else record), found
    return None, ""


def _attributes_from_first(record: object, file: str) -> tuple[str, ...]:
    labels = record.get("labels") if isinstance(record, dict) else None
    if not isinstance(labels, list) or not labels or not isinstance(labels[0], dict):
        raise InputError("cannot infer attributes: the first record needs a list of label "
                         "objects", file=file, record=0, field="labels")
    return tuple(str(k) for k in labels[0])


def _require_on_grid(bench: Benchmark, file: str) -> None:
    """A benchmark named for a known family must keep to its level grid (HelpSteer2 quarters,
    MIC's rounded sevenths): an off-grid label is a typo, never a finer level."""
    levels = np.asarray(bench.levels, dtype=np.float64)
    labels = bench.labels
    off = np.min(np.abs(labels[..., None] - levels), axis=-1) > 1e-9
    if not off.any():
        return
    row, a = (int(x) for x in np.argwhere(off)[0])
    s = int(bench.scenario_of[row])
    raise InputError(
        f"label {labels[row, a]:g} is off the {bench.name} level grid "
        f"({', '.join(f'{v:g}' for v in bench.levels)}; {int(off.sum())} off-grid in the file)",
        file=file, record=f"{s} (response {int(bench.response_index[row])})",
        field=f"labels.{bench.attributes[a]}",
        hint="fix the label, or load the file by its path so its levels are inferred")


def _infer_levels(bench: Benchmark, file: str) -> tuple[float, ...]:
    levels = tuple(float(v) for v in np.unique(bench.labels))
    try:
        grid_scale(levels)
    except ValueError:
        raise InputError(
            "label values are not on a grid of discrete levels", file=file, field="labels",
            hint="labels must be discrete levels such as quarters or hundredths",
        ) from None
    return levels


def _scenario_from_record(rec: object, index: int, split: str, file: str) -> Scenario:
    """Check a record's structure; values are checked by make_benchmark."""
    if not isinstance(rec, dict):
        raise InputError(f"a scenario must be a JSON object, got {type(rec).__name__}",
                         file=file, record=index)
    for key in ("prompt", "responses", "labels"):
        if key not in rec:
            raise InputError("missing field", file=file, record=index, field=key)
    responses, labels = rec["responses"], rec["labels"]
    if not isinstance(responses, list):
        raise InputError("must be a list of strings", file=file, record=index,
                         field="responses")
    if not isinstance(labels, list):
        raise InputError("must be a list of label objects", file=file, record=index,
                         field="labels")
    reasonings = rec.get("reasonings")
    if reasonings is not None:
        _check_reasonings(reasonings, index, file)
    return Scenario(
        id=_record_id(rec, index, split, file),
        prompt=rec["prompt"],
        responses=tuple(responses),
        labels=tuple(labels),
        reasonings=None if reasonings is None else tuple(reasonings),
    )


def _record_id(rec: Mapping[str, object], index: int, split: str, file: str) -> str:
    if "id" not in rec:
        return f"{split}-{index:05d}"
    rid = rec["id"]
    if isinstance(rid, bool) or not isinstance(rid, (str, int)) or rid == "":
        raise InputError(f"id must be a non-empty string or an integer, got {rid!r}",
                         file=file, record=index, field="id")
    return str(rid)


def _check_reasonings(reasonings: object, index: int, file: str) -> None:
    if not isinstance(reasonings, list):
        raise InputError("must be a list (one object per response)", file=file, record=index,
                         field="reasonings")
    for r, item in enumerate(reasonings):
        if not isinstance(item, dict):
            raise InputError("must be an object of attribute -> sentence", file=file,
                             record=index, field=f"reasonings[{r}]")
        for key, text in item.items():
            if not isinstance(text, str):
                raise InputError("reasoning must be a string", file=file, record=index,
                                 field=f"reasonings[{r}].{key}")


class _SteerableRequired(TypedDict):
    id: str
    prompt: str
    responses: list[str]
    labels: list[dict[str, float]]


class SteerableRecord(_SteerableRequired, total=False):
    """One scenario as a steerable JSON record."""

    reasonings: list[dict[str, str]]
    """Per response, attribute -> reasoning sentence (only when the benchmark has them)."""


def benchmark_records(bench: Benchmark) -> list[SteerableRecord]:
    """The benchmark as steerable JSON records (ids included so they survive a round trip)."""
    out: list[SteerableRecord] = []
    for sc in bench.scenarios:
        rec: SteerableRecord = {
            "id": sc.id,
            "prompt": sc.prompt,
            "responses": list(sc.responses),
            "labels": [{a: float(lab[a]) for a in bench.attributes} for lab in sc.labels],
        }
        if sc.reasonings is not None:
            rec["reasonings"] = [dict(r) for r in sc.reasonings]
        out.append(rec)
    return out


def write_steerable_json(bench: Benchmark, path: str | os.PathLike[str]) -> Path:
    """Write ``bench`` as steerable JSON, atomically (temporary name, then rename)."""
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    write_bytes(dest, json.dumps(benchmark_records(bench), indent=1).encode("utf-8"))
    return dest


# ---------------------------------------------------------------- raw HelpSteer2 rows

Row = Mapping[str, UntrustedJSON]
"""One raw row as read from a file (checked by ``_check_raw_row``)."""


def load_helpsteer2_rows(
    path_or_rows: str | os.PathLike[str] | Sequence[Row], split: str, name: str = "helpsteer2"
) -> Benchmark:
    """Raw HelpSteer2 rows (``prompt``, ``response``, five attributes as integers 0-4).

    Accepts a JSONL, JSON-list, CSV or Parquet file, or the rows themselves. Consecutive rows
    with the same prompt pair up into scenarios (a run of 2k same-prompt rows gives k
    scenarios); labels are raw / 4.
    """
    if isinstance(path_or_rows, (str, os.PathLike)):
        file = str(path_or_rows)
        rows = read_rows(Path(path_or_rows))
    else:
        file, rows = "<rows>", list(path_or_rows)
    if not rows:
        raise InputError("no rows", file=file)
    for i, row in enumerate(rows):
        _check_raw_row(row, i, file)
    scenarios: list[Scenario] = []
    for first, last in _prompt_pairs(rows, file):
        scenarios.append(Scenario(
            id=f"{split}-{len(scenarios):05d}",
            prompt=rows[first]["prompt"],
            responses=(rows[first]["response"], rows[last]["response"]),
            labels=(_raw_labels(rows[first], first, file), _raw_labels(rows[last], last, file)),
        ))
    return make_benchmark(name, split, HELPSTEER2_ATTRIBUTES, HELPSTEER2_LEVELS, scenarios,
                          source=file)


def read_rows(path: Path) -> list[Row]:
    """Rows of a JSONL, JSON-list, CSV or Parquet file, chosen by suffix."""
    suffix = path.suffix.lower()
    if not path.exists():
        raise InputError("file not found", file=path)
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            return list(pq.read_table(path).to_pylist())
        except Exception as e:  # pyarrow raises several types for a bad file
            raise InputError(f"cannot read Parquet: {e}", file=path) from None
    if suffix == ".csv":
        return list(_read_csv(path))
    if suffix == ".jsonl":
        return _read_jsonl(path)
    data = _read_unique(path)
    if not isinstance(data, list):
        raise InputError("top level must be a JSON list of rows", file=path)
    return data


def _read_jsonl(path: Path) -> list[Row]:
    rows: list[Row] = []
    with path.open("rb") as f:  # decoded line by line, so a bad byte names its record
        for line_no, raw in enumerate(f, start=1):
            where = f"{len(rows)} (line {line_no})"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise InputError(f"not UTF-8 text ({e.reason})", file=path,
                                 record=where) from None
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line, object_pairs_hook=unique_pairs))
            except json.JSONDecodeError as e:
                raise InputError(f"not valid JSON: {e.msg}", file=path, record=where) from None
            except DuplicateKeyError as e:
                raise InputError(str(e), file=path, record=where, field=e.key,
                                 hint="each key once per object") from None
    return rows


def _read_csv(path: Path) -> Iterable[dict[str, str]]:
    # Long responses can exceed the csv module's default 128 KiB field limit.
    if csv.field_size_limit() < 2**30:
        csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    try:
        with path.open(newline="", encoding="utf-8") as f:
            yield from csv.DictReader(f)
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise InputError(f"cannot read CSV: {e}", file=path) from None


def _check_raw_row(row: object, index: int, file: str) -> None:
    if not isinstance(row, Mapping):
        raise InputError("a row must be an object", file=file, record=index)
    for key in ("prompt", "response"):
        if not isinstance(row.get(key), str):
            raise InputError("missing or not a string", file=file, record=index, field=key)
    for attr in HELPSTEER2_ATTRIBUTES:
        if attr not in row:
            raise InputError("missing attribute", file=file, record=index, field=attr)
        _raw_value(row[attr], index, attr, file)


def _raw_value(value: object, index: int, attr: str, file: str) -> int:
    """A raw 0..4 integer from JSON, CSV text or Parquet."""
    v = value
    if isinstance(v, str):
        try:
            v = float(v.strip())
        except ValueError:
            v = None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not (
            math.isfinite(v) and float(v).is_integer() and 0 <= v <= HELPSTEER2_RAW_MAX):
        raise InputError(f"value {value!r} is not an integer 0-{HELPSTEER2_RAW_MAX}",
                         file=file, record=index, field=attr)
    return int(v)


def _raw_labels(row: Row, index: int, file: str) -> dict[str, float]:
    return {a: _raw_value(row[a], index, a, file) / HELPSTEER2_RAW_MAX
            for a in HELPSTEER2_ATTRIBUTES}


def _prompt_pairs(rows: Sequence[Row], file: str) -> list[tuple[int, int]]:
    """Row index pairs: runs of consecutive same-prompt rows, two by two."""
    pairs: list[tuple[int, int]] = []
    start = 0
    for i in range(1, len(rows) + 1):
        if i < len(rows) and rows[i]["prompt"] == rows[start]["prompt"]:
            continue
        if (i - start) % 2:
            raise InputError(
                f"row has no partner: {i - start} consecutive row(s) share this prompt",
                file=file, record=i - 1, field="prompt",
                hint="HelpSteer2 rows come in consecutive pairs with the same prompt",
            )
        pairs.extend((j, j + 1) for j in range(start, i, 2))
        start = i
    return pairs


# ---------------------------------------------------------------- MIC CSV

MIC_COLUMNS = ("Q", "A", "rot", "A_agrees", "moral-vector")
"""MIC.csv columns the loader reads."""

_AGREEMENT = {"0": -1, "1": 0, "2": 1}
_MISSING = {"", "nan", "none", "null"}


def load_mic_csv(
    path: str | os.PathLike[str],
    seed: int = 0,
    sizes: Mapping[str, int] | None = None,
    min_per_pair: int = MIC_MIN_PER_PAIR,
    procedure: str = "stratified",
) -> dict[str, Benchmark]:
    """MIC.csv as the steerable MIC benchmark, split into ``eval`` and ``train`` (Adams et al.,
    "Steerable Pluralism: Pluralistic Alignment via Few-Shot Comparative Regression", §3.1 and
    §3.3).

    ``procedure="published"`` splits as the authors of that paper did
    (:func:`pluralign.engine.data.mic_split.published_split`; ``seed``, ``sizes`` and
    ``min_per_pair`` do not apply), so the scenarios are theirs.

    Keeps questions with >= 2 distinct answers and no missing ``A_agrees``. A response's label
    per moral is the sum over its first 3 annotation rows of agreement (-1/0/+1) times the
    moral's flag, mapped from [-3, 3] to round((x + 3) / 6, 2). Reasonings per moral quote the
    rules of thumb of the rows flagged for it. The split is :func:`stratified_split`.
    """
    file = str(path)
    questions = _mic_questions(Path(path), file)
    scenarios = [_mic_scenario(q, rows, i, file) for i, (q, rows) in enumerate(questions)]
    if len(scenarios) < 2:
        raise InputError(f"only {len(scenarios)} usable question(s)", file=file, field="Q",
                         hint="need questions with >= 2 distinct answers and no missing "
                              "A_agrees")
    full = make_benchmark("mic", "all", MIC_ATTRIBUTES, MIC_LEVELS, scenarios, source=file)
    if procedure == "published":
        from pluralign.engine.data.mic_split import published_split

        return {split: make_benchmark("mic", split, MIC_ATTRIBUTES, MIC_LEVELS,
                                      [full.scenarios[i] for i in idx], source=file)
                for split, idx in published_split(full).items()}
    if procedure != "stratified":
        raise InputError(f"unknown MIC split procedure {procedure!r}", field="procedure",
                         hint="published (the authors') or stratified")
    return split_benchmark(full, dict(sizes or MIC_SPLIT_SIZES), min_per_pair, seed)


def _mic_questions(path: Path, file: str) -> list[tuple[str, list[tuple[int, dict[str, str]]]]]:
    """Questions in file order with their (row index, row) lists, filtered as the MIC benchmark
    of the steerable-pluralism paper (§3.1) is: at least two distinct answers, and every
    annotation row's agreement given."""
    if not path.exists():
        raise InputError("file not found", file=path)
    grouped: dict[str, list[tuple[int, dict[str, str]]]] = {}
    for i, row in enumerate(_read_csv(path)):
        if i == 0:
            missing = [c for c in MIC_COLUMNS if c not in row]
            if missing:
                raise InputError(f"missing column(s) {', '.join(missing)}", file=file,
                                 field=missing[0], hint=f"MIC.csv needs {', '.join(MIC_COLUMNS)}")
        q = row.get("Q") or ""
        if q.strip():  # rows without a question cannot belong to a scenario
            grouped.setdefault(q, []).append((i, row))
    kept = []
    for q, rows in grouped.items():
        answers = {row.get("A") or "" for _, row in rows}
        complete = all((row.get("A_agrees") or "").strip().lower() not in _MISSING
                       for _, row in rows)
        if len(answers) >= 2 and complete:
            kept.append((q, rows))
    return kept


def _mic_scenario(q: str, rows: list[tuple[int, dict[str, str]]], index: int,
                  file: str) -> Scenario:
    by_answer: dict[str, list[tuple[int, dict[str, str]]]] = {}
    for i, row in rows:
        by_answer.setdefault(row.get("A") or "", []).append((i, row))
    labels, reasonings = [], []
    for answer_rows in by_answer.values():
        first3 = answer_rows[:3]  # MIC has 3 annotators per answer; a few answers have more
        annotations = [(_mic_agreement(r, i, file), _mic_morals(r, i, file), r.get("rot") or "")
                       for i, r in first3]
        labels.append(_mic_label(annotations))
        reasonings.append(_mic_reasoning(annotations))
    return Scenario(id=f"mic-{index:05d}", prompt=q, responses=tuple(by_answer),
                    labels=tuple(labels), reasonings=tuple(reasonings))


def _mic_agreement(row: Mapping[str, str], index: int, file: str) -> int:
    raw = (row.get("A_agrees") or "").strip()
    key = raw[:-2] if raw.endswith(".0") else raw  # pandas writes 2 as 2.0
    if key not in _AGREEMENT:
        raise InputError(f"value {raw!r} is not 0 (disagree), 1 (neither) or 2 (agree)",
                         file=file, record=index, field="A_agrees")
    return _AGREEMENT[key]


def _mic_morals(row: Mapping[str, str], index: int, file: str) -> tuple[int, ...]:
    raw = (row.get("moral-vector") or "").strip()
    parts = [p for p in re.split(r"[\s,]+", raw.strip("[]() ")) if p]
    flags = [p[:-2] if p.endswith(".0") else p for p in parts]
    if len(flags) != len(MIC_ATTRIBUTES) or any(f not in ("0", "1") for f in flags):
        raise InputError(
            f"value {raw!r} is not a list of {len(MIC_ATTRIBUTES)} flags 0/1",
            file=file, record=index, field="moral-vector",
            hint=f"order: {', '.join(MIC_ATTRIBUTES)}",
        )
    return tuple(int(f) for f in flags)


def _mic_label(annotations: Sequence[tuple[int, tuple[int, ...], str]]) -> dict[str, float]:
    sums = [sum(agree * morals[m] for agree, morals, _ in annotations)
            for m in range(len(MIC_ATTRIBUTES))]
    # MIC_LEVELS[x + 3] == round((x + 3) / 6, 2): a table lookup keeps it exact.
    return {a: MIC_LEVELS[s + 3] for a, s in zip(MIC_ATTRIBUTES, sums, strict=True)}


def _mic_reasoning(annotations: Sequence[tuple[int, tuple[int, ...], str]]) -> dict[str, str]:
    out = {}
    for m, moral in enumerate(MIC_ATTRIBUTES):
        sentences = []
        for agree, morals, rot in annotations:
            if not morals[m] or agree == 0:  # "neither" adds nothing to the label either
                continue
            verb = "agrees with" if agree > 0 else "goes against"
            sentences.append(f'The response {verb} a {moral} rule of thumb: "{rot.strip()}"')
        out[moral] = (" ".join(sentences) if sentences
                      else f"No {moral} rule of thumb bears on the response: it is neutral.")
    return out


# ---------------------------------------------------------------- stratified split


def split_benchmark(
    bench: Benchmark, sizes: Mapping[str, int], min_per_pair: int, seed: int = 0
) -> dict[str, Benchmark]:
    """Disjoint stratified splits of ``bench``, one Benchmark per entry of ``sizes``."""
    parts = stratified_split(bench, sizes, min_per_pair, seed)
    return {
        split: make_benchmark(bench.name, split, bench.attributes, bench.levels,
                              [bench.scenarios[i] for i in idx], source=bench.source)
        for split, idx in parts.items()
    }


def pair_membership(bench: Benchmark) -> np.ndarray:
    """bool (S, A*L): scenario s has a response whose attribute a sits at level l.

    Column ``a * L + l``. Values are matched to levels on the benchmark's integer grid.
    """
    n_levels = len(bench.levels)
    units = np.round(bench.labels * bench.scale).astype(np.int64)
    level_units = np.round(np.asarray(bench.levels) * bench.scale).astype(np.int64)
    member = np.zeros((bench.n_scenarios, len(bench.attributes) * n_levels), dtype=bool)
    for li, lu in enumerate(level_units):
        hit = units == lu  # (N, A)
        for a in range(len(bench.attributes)):
            rows = bench.scenario_of[hit[:, a]]
            member[rows, a * n_levels + li] = True
    return member


def stratified_split(
    bench: Benchmark, sizes: Mapping[str, int], min_per_pair: int, seed: int = 0
) -> dict[str, list[int]]:
    """Seeded greedy stratification: scenario indices per split (sorted), splits disjoint.

    A scenario counts once for each attribute/level pair that any of its responses shows.
    Phase 1 fills deficits split by split, in the order of ``sizes`` (so when a pair is too rare
    for every split, the first one, eval, gets its minimum first, as in the steerable-pluralism
    paper): while the
    split has a pair below ``min_per_pair``, take the one with the fewest unassigned scenarios
    left and give the split the unassigned scenario showing it that covers the most of the
    split's open deficits; ties go to the scenario whose pairs are least scarce (so rare
    scenarios stay for later splits), then to a seeded random order. Phase 2 tops each split up
    to its size in that seeded order; counts only grow, so phase 1's minimums hold. Pairs left
    short, and splits left small, are named in a StratificationWarning.
    """
    member = pair_membership(bench)
    n_pairs = member.shape[1]
    rank = np.random.default_rng(seed).permutation(bench.n_scenarios)
    free = np.ones(bench.n_scenarios, dtype=bool)
    free_count = member.sum(axis=0).astype(np.int64)
    chosen: dict[str, list[int]] = {s: [] for s in sizes}
    need = {s: np.full(n_pairs, min_per_pair, dtype=np.int64) for s in sizes}

    def assign(split: str, i: int) -> None:
        chosen[split].append(i)
        free[i] = False
        free_count[:] -= member[i]
        need[split][:] = np.maximum(need[split] - member[i], 0)

    while (pick := _rarest_deficit(sizes, chosen, need, free_count)) is not None:
        split, pair = pick
        cand = np.flatnonzero(free & member[:, pair])
        gain = member[cand][:, need[split] > 0].sum(axis=1)
        scarcity = member[cand] @ (1.0 / np.maximum(free_count, 1))
        assign(split, int(cand[np.lexsort((rank[cand], scarcity, -gain))[0]]))
    order = np.argsort(rank)
    for split, size in sizes.items():
        for i in order[free[order]][: max(0, size - len(chosen[split]))]:
            assign(split, int(i))
    _warn_shortfalls(bench, sizes, chosen, member, min_per_pair)
    return {s: sorted(idx) for s, idx in chosen.items()}


def _rarest_deficit(
    sizes: Mapping[str, int], chosen: Mapping[str, list[int]],
    need: Mapping[str, np.ndarray], free_count: np.ndarray,
) -> tuple[str, int] | None:
    """The first split (in ``sizes`` order) with room and an open deficit, and its rarest pair."""
    for split, size in sizes.items():
        if len(chosen[split]) >= size:
            continue
        open_pairs = np.flatnonzero((need[split] > 0) & (free_count > 0))
        if open_pairs.size:
            return split, int(open_pairs[np.argmin(free_count[open_pairs])])
    return None


def _warn_shortfalls(
    bench: Benchmark, sizes: Mapping[str, int], chosen: Mapping[str, list[int]],
    member: np.ndarray, min_per_pair: int,
) -> None:
    problems = []
    n_levels = len(bench.levels)
    for split, size in sizes.items():
        if len(chosen[split]) < size:
            problems.append(f"{split} has {len(chosen[split])} of {size} scenarios")
        counts = member[chosen[split]].sum(axis=0)
        short = [
            f"{bench.attributes[p // n_levels]}={bench.levels[p % n_levels]:g} "
            f"({int(counts[p])}/{min_per_pair})"
            for p in np.flatnonzero(counts < min_per_pair)
        ]
        if short:
            problems.append(f"{split} pairs below {min_per_pair}: {', '.join(short)}")
    if problems:
        warnings.warn(f"{bench.source or bench.name}: stratified split falls short: "
                      + "; ".join(problems), StratificationWarning, stacklevel=3)
