"""Benchmark loaders: steerable JSON, raw HelpSteer2 rows, the MIC CSV and its stratified split."""

from __future__ import annotations

import csv
import json
import random
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pluralign.engine.data.benchmark import HELPSTEER2_ATTRIBUTES, MIC_ATTRIBUTES, MIC_LEVELS
from pluralign.engine.data.loaders import (
    StratificationWarning,
    load_helpsteer2_rows,
    load_mic_csv,
    load_steerable_json,
    pair_membership,
    split_benchmark,
    write_steerable_json,
)
from pluralign.engine.data.synthetic import synthetic_benchmark
from pluralign.engine.errors import InputError

# ---------------------------------------------------------------- helpers


def _label(**kw: float) -> dict[str, float]:
    base = dict.fromkeys(HELPSTEER2_ATTRIBUTES, 0.5)
    base.update(kw)
    return base


def _record(i: int = 0, **over: Any) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "prompt": f"question {i}",
        "responses": [f"answer {i}a", f"answer {i}b"],
        "labels": [_label(helpfulness=1.0), _label(helpfulness=0.25)],
    }
    rec.update(over)
    return rec


def _write_json(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data))
    return path


def _raw_row(prompt: str, response: str, *values: Any) -> dict[str, Any]:
    vals = values or (4, 3, 2, 1, 0)
    return {"prompt": prompt, "response": response,
            **dict(zip(HELPSTEER2_ATTRIBUTES, vals, strict=True))}


MicRow = tuple[str, str, str, str, Sequence[int]]  # Q, A, rot, A_agrees, moral flags


def write_mic_csv(path: Path, rows: Sequence[MicRow], extra_columns: bool = True) -> Path:
    """A MIC-shaped CSV (the real MIC is gated: tests make their own)."""
    columns = ["Q", "A", "rot", "A_agrees", "moral-vector"]
    if extra_columns:
        columns = ["QA", *columns, "rot-agree", "moral"]
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=columns)
        w.writeheader()
        for q, a, rot, agrees, flags in rows:
            row = {"Q": q, "A": a, "rot": rot, "A_agrees": agrees,
                   "moral-vector": json.dumps(list(flags))}
            if extra_columns:
                row.update({"QA": f"{q} {a}", "rot-agree": "4", "moral": "care"})
            w.writerow(row)
    return path


def random_mic_rows(n_questions: int, seed: int, flag_p: Sequence[float] | None = None
                    ) -> list[MicRow]:
    """Questions with 2-3 answers of 3 annotations each. Annotators of an answer mostly share
    one stance, so the extreme levels (all three agree or disagree) occur often enough."""
    rng = random.Random(seed)
    probs = list(flag_p or [0.5] * len(MIC_ATTRIBUTES))
    rows: list[MicRow] = []
    for q in range(n_questions):
        for a in range(rng.choice((2, 3))):
            stance = rng.choice(("0", "2"))
            for r in range(3):
                flags = [int(rng.random() < p) for p in probs]
                agrees = stance if rng.random() < 0.7 else rng.choice(("0", "1", "2"))
                rows.append((f"Q{q}?", f"answer {q}.{a}", f"rot {q}.{a}.{r}", agrees, flags))
    return rows


def _pair_counts(bench: Any) -> np.ndarray:
    return pair_membership(bench).sum(axis=0)


# ---------------------------------------------------------------- real HelpSteer2 files


@pytest.mark.parametrize("split", ["train", "eval"])
def test_real_helpsteer2_files_load(shared_data: Path, split: str) -> None:
    path = shared_data / "helpsteer2" / f"{split}.json"
    bench = load_steerable_json(path, "helpsteer2", split)
    raw = json.loads(path.read_text())
    assert bench.n_scenarios == len(raw) == 500
    assert set(np.diff(bench.offsets).tolist()) == {2}
    assert bench.attributes == HELPSTEER2_ATTRIBUTES
    assert bench.levels == (0.0, 0.25, 0.5, 0.75, 1.0)
    assert bench.scale == 4
    assert set(np.unique(bench.labels).tolist()) <= set(bench.levels)
    assert bench.scenarios[7].id == f"{split}-00007"
    assert bench.scenarios[7].prompt == raw[7]["prompt"]
    last = raw[-1]["labels"][1]
    assert bench.labels[-1].tolist() == [last[a] for a in HELPSTEER2_ATTRIBUTES]
    assert (bench.scenarios[0].reasonings is not None) == (split == "train")


def test_real_helpsteer2_round_trips_through_writer(shared_data: Path, tmp_path: Path) -> None:
    bench = load_steerable_json(shared_data / "helpsteer2" / "train.json", "helpsteer2", "train")
    out = write_steerable_json(bench, tmp_path / "sub" / "train.json")
    again = load_steerable_json(out, "helpsteer2", "train")
    assert again.content_hash == bench.content_hash
    assert again.scenarios[3].reasonings == bench.scenarios[3].reasonings
    assert [p.name for p in out.parent.iterdir()] == ["train.json"]  # no temporary left


# ---------------------------------------------------------------- steerable JSON


def test_ids_from_records_and_inferred_attributes(tmp_path: Path) -> None:
    recs = [
        {"id": "x", "prompt": "p", "responses": ["a", "b", "c"],
         "labels": [{"kind": 0.0, "fun": 1.0}, {"kind": 0.5, "fun": 0.5},
                    {"kind": 1.0, "fun": 0.0}]},
        {"id": 7, "prompt": "q", "responses": ["a", "b"],
         "labels": [{"fun": 0.5, "kind": 1.0}, {"kind": 0.0, "fun": 0.0}]},
        {"prompt": "r", "responses": ["a", "b"],
         "labels": [{"kind": 0.5, "fun": 1.0}, {"kind": 0.0, "fun": 0.5}]},
    ]
    bench = load_steerable_json(_write_json(tmp_path / "mine.json", recs), "mine", "dev")
    assert bench.attributes == ("kind", "fun")
    assert bench.levels == (0.0, 0.5, 1.0)
    assert [s.id for s in bench.scenarios] == ["x", "7", "dev-00002"]
    assert bench.labels[3].tolist() == [1.0, 0.5]  # columns follow the attribute order


def test_continuous_labels_of_an_unknown_benchmark_are_refused(tmp_path: Path) -> None:
    recs = [_record(0, labels=[{"a": 1 / 3}, {"a": 0.1234567891}])]
    with pytest.raises(InputError, match="not on a grid"):
        load_steerable_json(_write_json(tmp_path / "c.json", recs), "custom", "eval")


BAD_RECORDS: list[tuple[str, Any, str, str | None]] = [
    # (case, second record, expected field, expected message fragment)
    ("not an object", ["prompt"], "", "must be a JSON object"),
    ("missing prompt", {"responses": ["a", "b"], "labels": [_label(), _label()]}, "prompt",
     "missing field"),
    ("missing labels", {"prompt": "p", "responses": ["a", "b"]}, "labels", "missing field"),
    ("missing attribute", _record(1, labels=[_label(), {"helpfulness": 1.0}]),
     "labels[1].correctness", "missing attribute"),
    ("unknown attribute", _record(1, labels=[_label(), {**_label(), "humour": 1.0}]),
     "labels[1].humour", "unknown attribute"),
    ("above 1", _record(1, labels=[_label(verbosity=1.25), _label()]), "labels[0].verbosity",
     "outside [0, 1]"),
    ("negative", _record(1, labels=[_label(), _label(coherence=-0.25)]),
     "labels[1].coherence", "outside [0, 1]"),
    ("NaN", _record(1, labels=[_label(), _label(complexity=float("nan"))]),
     "labels[1].complexity", "outside [0, 1]"),
    ("not a number", _record(1, labels=[_label(), _label(complexity="high")]),
     "labels[1].complexity", "not a number"),
    ("one response", _record(1, responses=["only"], labels=[_label()]), "responses",
     "at least 2 responses"),
    ("length mismatch", _record(1, labels=[_label()]), "labels", "1 label dicts for 2"),
    ("responses not a list", _record(1, responses="ab"), "responses", "must be a list"),
    ("response not a string", _record(1, responses=["a", 3]), "responses", "must be a string"),
    ("labels not a list", _record(1, labels={"helpfulness": 1}), "labels", "must be a list"),
    ("label not an object", _record(1, labels=[_label(), 0.5]), "labels[1]",
     "must be an object"),
    ("prompt not a string", _record(1, prompt=["p"]), "prompt", "must be a string"),
    ("reasonings mismatch", _record(1, reasonings=[{}]), "reasonings", "1 reasonings for 2"),
    ("reasoning not a string", _record(1, reasonings=[{"helpfulness": 1}, {}]),
     "reasonings[0].helpfulness", "must be a string"),
    ("bad id", _record(1, id=[1]), "id", "id must be"),
]


@pytest.mark.parametrize(("case", "bad", "field", "fragment"), BAD_RECORDS,
                         ids=[c[0] for c in BAD_RECORDS])
def test_malformed_record_names_file_record_and_field(
    tmp_path: Path, case: str, bad: Any, field: str, fragment: str
) -> None:
    path = _write_json(tmp_path / "bad.json", [_record(0), bad, _record(2)])
    with pytest.raises(InputError) as info:
        load_steerable_json(path, "helpsteer2", "eval")
    msg = str(info.value)
    assert str(path) in msg
    assert "record 1" in msg
    if field:
        assert f"field '{field}'" in msg
    assert fragment in msg


def test_duplicate_ids_name_the_second_record(tmp_path: Path) -> None:
    path = _write_json(tmp_path / "dup.json",
                       [_record(0, id="a"), _record(1, id="b"), _record(2, id="a")])
    with pytest.raises(InputError, match=r"record 2 \(id 'a'\).*field 'id'.*duplicate"):
        load_steerable_json(path, "helpsteer2", "eval")


@pytest.mark.parametrize(("text", "fragment"), [
    ('[{"prompt": "p",', "not valid JSON"),
    ('{"prompt": "p"}', "top level must be a JSON list"),
    ("[]", "no scenarios"),
])
def test_malformed_file_names_the_file(tmp_path: Path, text: str, fragment: str) -> None:
    path = tmp_path / "f.json"
    path.write_text(text)
    with pytest.raises(InputError, match=fragment) as info:
        load_steerable_json(path, "helpsteer2", "eval")
    assert str(info.value).startswith(str(path))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="file not found"):
        load_steerable_json(tmp_path / "nope.json", "helpsteer2", "eval")


def test_first_record_without_labels_cannot_give_attributes(tmp_path: Path) -> None:
    path = _write_json(tmp_path / "x.json", [{"prompt": "p", "responses": ["a", "b"]}])
    with pytest.raises(InputError, match=r"record 0, field 'labels'.*infer attributes"):
        load_steerable_json(path, "custom", "eval")


def test_writer_leaves_no_temporary_when_it_fails(tmp_path: Path) -> None:
    bench = synthetic_benchmark(4, (2, 2), 2, 3)
    bad = tmp_path / "out.json"
    bad.mkdir()  # os.replace onto a directory fails
    with pytest.raises(OSError):
        write_steerable_json(bench, bad)
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]
    good = write_steerable_json(bench, tmp_path / "ok.json")
    assert load_steerable_json(good, "synthetic", bench.split).content_hash == bench.content_hash


# ---------------------------------------------------------------- raw HelpSteer2 rows


RAW_ROWS = [
    _raw_row("p0", "r0a", 4, 4, 4, 2, 1), _raw_row("p0", "r0b", 0, 1, 2, 3, 4),
    _raw_row("p1", "r1a"), _raw_row("p1", "r1b"),
    _raw_row("p1", "r1c", 1, 1, 1, 1, 1), _raw_row("p1", "r1d", 3, 3, 3, 3, 3),
    _raw_row("p2", "r2a"), _raw_row("p2", "r2b"),
]


def _write_raw(path: Path, rows: list[dict[str, Any]]) -> Path:
    suffix = path.suffix
    if suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    elif suffix == ".json":
        path.write_text(json.dumps(rows))
    elif suffix == ".csv":
        with path.open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    else:
        pq.write_table(pa.Table.from_pylist(rows), path)
    return path


@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".csv", ".parquet"])
def test_raw_rows_pair_up(tmp_path: Path, suffix: str) -> None:
    path = _write_raw(tmp_path / f"rows{suffix}", RAW_ROWS)
    bench = load_helpsteer2_rows(path, "train")
    assert bench.n_scenarios == 4  # the run of four p1 rows gives two scenarios
    assert [s.prompt for s in bench.scenarios] == ["p0", "p1", "p1", "p2"]
    assert bench.scenarios[2].responses == ("r1c", "r1d")
    assert bench.scenarios[0].labels[0] == dict(zip(HELPSTEER2_ATTRIBUTES,
                                                    [1.0, 1.0, 1.0, 0.5, 0.25], strict=True))
    assert bench.labels[1].tolist() == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert [s.id for s in bench.scenarios] == [f"train-0000{i}" for i in range(4)]
    assert bench.scale == 4


def test_raw_rows_from_memory_match_file(tmp_path: Path) -> None:
    from_file = load_helpsteer2_rows(_write_raw(tmp_path / "r.csv", RAW_ROWS), "eval")
    assert load_helpsteer2_rows(RAW_ROWS, "eval").content_hash == from_file.content_hash


@pytest.mark.parametrize(("rows", "record", "field", "fragment"), [
    (RAW_ROWS[:3], 2, "prompt", "no partner"),
    ([*RAW_ROWS[:2], RAW_ROWS[2], RAW_ROWS[3], RAW_ROWS[4], *RAW_ROWS[6:]], 4, "prompt",
     "3 consecutive row(s)"),
    ([RAW_ROWS[0], {**RAW_ROWS[1], "verbosity": 5}], 1, "verbosity", "not an integer 0-4"),
    ([RAW_ROWS[0], {**RAW_ROWS[1], "coherence": 2.5}], 1, "coherence", "not an integer 0-4"),
    ([RAW_ROWS[0], {**RAW_ROWS[1], "coherence": True}], 1, "coherence", "not an integer 0-4"),
    ([{k: v for k, v in RAW_ROWS[0].items() if k != "complexity"}, RAW_ROWS[1]], 0,
     "complexity", "missing attribute"),
    ([RAW_ROWS[0], {**RAW_ROWS[1], "response": None}], 1, "response", "not a string"),
])
def test_bad_raw_rows_name_the_row(tmp_path: Path, rows: list[dict[str, Any]], record: int,
                                   field: str, fragment: str) -> None:
    path = _write_raw(tmp_path / "rows.jsonl", rows)
    with pytest.raises(InputError) as info:
        load_helpsteer2_rows(path, "train")
    msg = str(info.value)
    assert msg.startswith(str(path))
    assert f"record {record}, field '{field}'" in msg
    assert fragment in msg


def test_bad_csv_cell_names_the_row(tmp_path: Path) -> None:
    rows = [dict(r) for r in RAW_ROWS[:4]]
    rows[3]["helpfulness"] = "four"
    with pytest.raises(InputError, match=r"record 3, field 'helpfulness'.*'four'"):
        load_helpsteer2_rows(_write_raw(tmp_path / "r.csv", rows), "train")


def test_bad_jsonl_line_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps(RAW_ROWS[0]) + "\n{oops\n")
    with pytest.raises(InputError, match=r"record 1 \(line 2\).*not valid JSON"):
        load_helpsteer2_rows(path, "train")


# ---------------------------------------------------------------- MIC CSV

CARE_AUTH = (1, 0, 0, 0, 1, 0)
CARE = (1, 0, 0, 0, 0, 0)
FAIR_LIB = (0, 1, 1, 0, 0, 0)
NONE = (0, 0, 0, 0, 0, 0)

HAND_ROWS: list[MicRow] = [
    # Q1, answer A: care +1 +1 -1 = +1; authority +1; fairness/liberty -1 (third row); the
    # fourth annotation row is beyond the first three and must be ignored.
    ("Q1", "A", "Be kind.", "2", CARE_AUTH),
    ("Q1", "A", "Help others.", "2", CARE),
    ("Q2", "X", "Unrelated.", "2", CARE),
    ("Q1", "A", "Share fairly.", "0", (1, 1, 1, 0, 0, 0)),
    ("Q1", "A", "Ignored fourth.", "2", (1, 1, 1, 1, 1, 1)),
    # Q1, answer B: "neither" counts 0; care -1 -1 = -2, every other moral 0
    ("Q1", "B", "Do no harm.", "0", CARE),
    ("Q1", "B", "Neutral rot.", "1", (1, 1, 1, 1, 1, 1)),
    ("Q1", "B", "Stay pure.", "0", (1, 0, 0, 0, 0, 0)),
    ("Q2", "X", "Again X.", "2", CARE),  # Q2 has one distinct answer: dropped
    ("Q3", "M", "Be loyal.", "2", (0, 0, 0, 1, 0, 0)),
    ("Q3", "N", "Be free.", "", FAIR_LIB),  # missing A_agrees: Q3 dropped
    ("Q4", "S", "Keep order.", "2.0", (0, 0, 0, 0, 1, 1)),
    ("Q4", "T", "Be fair.", "0.0", FAIR_LIB),
    ("Q4", "T", "Be fair again.", "0", FAIR_LIB),
    ("Q4", "T", "Be fair thrice.", "0", FAIR_LIB),
]


def _level(x: int) -> float:
    return round((x + 3) / 6, 2)


def test_mic_labels_by_hand(tmp_path: Path) -> None:
    path = write_mic_csv(tmp_path / "MIC.csv", HAND_ROWS)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", StratificationWarning)
        splits = load_mic_csv(path, sizes={"eval": 1, "train": 1}, min_per_pair=0)
    scen = sorted((*splits["eval"].scenarios, *splits["train"].scenarios), key=lambda s: s.id)
    assert [(s.id, s.prompt) for s in scen] == [("mic-00000", "Q1"), ("mic-00001", "Q4")]
    q1, q4 = scen
    assert q1.responses == ("A", "B")
    assert q1.labels[0] == {"care": _level(1), "fairness": _level(-1), "liberty": _level(-1),
                            "loyalty": _level(0), "authority": _level(1),
                            "sanctity": _level(0)}
    assert q1.labels[1] == {"care": _level(-2), "fairness": 0.5, "liberty": 0.5,
                            "loyalty": 0.5, "authority": 0.5, "sanctity": 0.5}
    assert q4.labels[1]["fairness"] == 0.0 and q4.labels[1]["liberty"] == 0.0
    assert q4.labels[0]["authority"] == _level(1) == 0.67
    assert q4.labels[0]["sanctity"] == 0.67 and q4.labels[0]["care"] == 0.5
    assert set(MIC_LEVELS) == {_level(x) for x in range(-3, 4)}
    # reasonings quote the rules of thumb flagged for the moral, never "neither" or 4th rows
    care = q1.reasonings[0]["care"] if q1.reasonings else ""
    assert "Be kind." in care and "Help others." in care and "Share fairly." in care
    assert "Ignored fourth." not in care
    assert "Be kind." in q1.reasonings[0]["authority"]  # type: ignore[index]
    assert "neutral" in q1.reasonings[0]["loyalty"]  # type: ignore[index]
    assert "Neutral rot." not in q1.reasonings[1]["loyalty"]  # type: ignore[index]


@pytest.mark.parametrize(("row", "field", "fragment"), [
    (("Q1", "B", "x", "7", CARE), "A_agrees", "'7' is not 0"),
    (("Q1", "B", "x", "2", "[1, 0, 0]"), "moral-vector", "list of 6 flags"),
    (("Q1", "B", "x", "2", "[1, 0, 0, 0, 0, 2]"), "moral-vector", "list of 6 flags"),
])
def test_mic_bad_cells_name_the_row(tmp_path: Path, row: Any, field: str,
                                    fragment: str) -> None:
    rows: list[Any] = [("Q1", "A", "ok", "2", CARE), row]
    path = tmp_path / "MIC.csv"
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["Q", "A", "rot", "A_agrees", "moral-vector"])
        for q, a, rot, agree, flags in rows:
            w.writerow([q, a, rot, agree, flags if isinstance(flags, str) else list(flags)])
    with pytest.raises(InputError) as info:
        load_mic_csv(path, sizes={"eval": 1}, min_per_pair=0)
    msg = str(info.value)
    assert msg.startswith(str(path)) and f"record 1, field '{field}'" in msg
    assert fragment in msg


def test_mic_missing_column(tmp_path: Path) -> None:
    path = tmp_path / "MIC.csv"
    path.write_text("Q,A,rot,moral-vector\nq,a,r,\"[1,0,0,0,0,0]\"\n")
    with pytest.raises(InputError, match=r"field 'A_agrees'.*missing column"):
        load_mic_csv(path)


def test_mic_without_usable_questions(tmp_path: Path) -> None:
    path = write_mic_csv(tmp_path / "MIC.csv", HAND_ROWS[8:11])  # Q2 one answer, Q3 missing
    with pytest.raises(InputError, match="usable question"):
        load_mic_csv(path)


def test_mic_stratified_split_meets_minimums(tmp_path: Path) -> None:
    path = write_mic_csv(tmp_path / "MIC.csv", random_mic_rows(400, seed=3))
    sizes, minimum = {"eval": 120, "train": 90}, 6
    with warnings.catch_warnings():
        warnings.simplefilter("error", StratificationWarning)
        splits = load_mic_csv(path, seed=1, sizes=sizes, min_per_pair=minimum)
        again = load_mic_csv(path, seed=1, sizes=sizes, min_per_pair=minimum)
        other = load_mic_csv(path, seed=2, sizes=sizes, min_per_pair=minimum)
    ev, tr = splits["eval"], splits["train"]
    assert (ev.n_scenarios, tr.n_scenarios) == (120, 90)
    assert (ev.split, tr.split, ev.name) == ("eval", "train", "mic")
    assert not {s.id for s in ev.scenarios} & {s.id for s in tr.scenarios}
    assert _pair_counts(ev).min() >= minimum and _pair_counts(tr).min() >= minimum
    assert ev.content_hash == again["eval"].content_hash  # seeded
    assert ev.content_hash != other["eval"].content_hash


def test_stratification_beats_its_own_fill_order() -> None:
    """The minimums come from phase 1, not luck: a plain seeded shuffle of the same sizes misses
    them on a benchmark with rare pairs."""
    bench = synthetic_benchmark(600, (2, 2), 3, 7, seed=5)
    labels = np.asarray(bench.labels)
    rare = [i for i in range(bench.n_scenarios)
            if (labels[2 * i: 2 * i + 2, 0] == 1.0).any()]
    keep = [s for i, s in enumerate(bench.scenarios) if i not in set(rare[10:])]
    from pluralign.engine.data.benchmark import make_benchmark
    thin = make_benchmark("syn", "all", bench.attributes, bench.levels, keep)
    with warnings.catch_warnings():
        warnings.simplefilter("error", StratificationWarning)
        parts = split_benchmark(thin, {"eval": 60, "train": 60}, 5, seed=0)
    for part in parts.values():
        assert _pair_counts(part).min() >= 5
    shuffled = np.random.default_rng(0).permutation(thin.n_scenarios)[:60]
    plain = make_benchmark("syn", "x", thin.attributes, thin.levels,
                           [thin.scenarios[i] for i in shuffled])
    assert _pair_counts(plain).min() < 5


def test_mic_default_sizes(tmp_path: Path) -> None:
    path = write_mic_csv(tmp_path / "MIC.csv", random_mic_rows(700, seed=4), extra_columns=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", StratificationWarning)
        splits = load_mic_csv(path)
    assert (splits["eval"].n_scenarios, splits["train"].n_scenarios) == (336, 296)
    assert _pair_counts(splits["eval"]).min() >= 8
    assert _pair_counts(splits["train"]).min() >= 8


def test_mic_shortfall_warns_with_the_pairs(tmp_path: Path) -> None:
    no_sanctity = [*[0.5] * 5, 0.0]
    rows = random_mic_rows(150, seed=5, flag_p=no_sanctity)
    for q in range(3):  # only three questions reach sanctity +3
        for r in range(3):
            rows.append((f"S{q}", "pure", f"stay pure {r}", "2", (0, 0, 0, 0, 0, 1)))
        rows.append((f"S{q}", "other", "meh", "1", NONE))
    path = write_mic_csv(tmp_path / "MIC.csv", rows)
    with pytest.warns(StratificationWarning) as record:
        splits = load_mic_csv(path, sizes={"eval": 40, "train": 40}, min_per_pair=2)
    text = str(record[0].message)
    assert str(path) in text
    assert "sanctity=1 (1/2)" in text  # three scenarios: one split gets only one
    assert "sanctity=0 (0/2)" in text  # never occurs
    assert "care=" not in text
    pure = MIC_ATTRIBUTES.index("sanctity") * 7 + 6
    # eval comes first in sizes, so it gets its minimum; train gets what is left
    assert _pair_counts(splits["eval"])[pure] == 2 and _pair_counts(splits["train"])[pure] == 1
    assert "train pairs below 2" in text and "eval pairs below 2: sanctity=0 (0/2)" in text


def test_split_reports_a_split_it_cannot_fill() -> None:
    bench = synthetic_benchmark(30, (2, 3), 2, 3, seed=1)
    with pytest.warns(StratificationWarning, match="train has 10 of 25 scenarios"):
        parts = split_benchmark(bench, {"eval": 20, "train": 25}, 1, seed=0)
    assert parts["eval"].n_scenarios == 20 and parts["train"].n_scenarios == 10
