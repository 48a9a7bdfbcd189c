"""Scenario banks: validation errors, Parquet round trip, version refusal, authors' layout."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from pluralign.engine.errors import CacheSchemaError, InputError
from pluralign.engine.spica.authors import load_spica_layout
from pluralign.engine.spica.bank import ALL
from pluralign.engine.spica.io import read_bank, write_bank
from pluralign.schemas.spica import LAYOUT_KEY, ClassRating, RaterRecord
from tests.engine.spica.helpers import bank, rater, scenario


def _good():
    return bank([
        scenario("s1", "is it fine?", [rater("p1", ["dem"], [5, 3, 1], [4, 4, 2], [1, 0, 1]),
                                       rater("p2", ["rep", "rel"], [2, None, 4])]),
        scenario("s2", "what now?", [rater("p1", ["dem"], [1, 2, 3])], split="dev"),
    ])


def _assert_names(err: InputError, *parts: str) -> None:
    text = str(err)
    for p in parts:
        assert p in text, f"{p!r} missing from {text!r}"


def test_roundtrip_and_ratings(tmp_path):
    b = _good()
    path = write_bank(b, tmp_path / "bank.parquet")
    assert [p.name for p in tmp_path.iterdir()] == ["bank.parquet"]  # no temporary left
    again = read_bank(path)
    assert again.content_hash == b.content_hash
    assert again.groups == ("dem", "rel", "rep")
    R = again.ratings("dem", "strategy")
    np.testing.assert_array_equal(R[0, 0], [4, 4, 2])
    np.testing.assert_array_equal(again.rated_index("dem")[0, 0], [1, 0, 1])
    assert np.isnan(again.ratings("rep")[0, 0, 1])
    assert again.ratings(ALL).shape == (2, 2, 3)
    assert again.select("dev").ids == ("s2",)


def test_version_refused(tmp_path):
    path = write_bank(_good(), tmp_path / "bank.parquet")
    table = pq.read_table(path)
    meta = dict(table.schema.metadata)
    meta[LAYOUT_KEY] = b"0"
    pq.write_table(table.replace_schema_metadata(meta), tmp_path / "old.parquet")
    with pytest.raises(CacheSchemaError, match="layout 0"):
        read_bank(tmp_path / "old.parquet")


def test_not_a_bank(tmp_path):
    import pyarrow as pa

    pq.write_table(pa.table({"x": [1]}), tmp_path / "x.parquet")
    with pytest.raises(InputError, match="not a scenario bank"):
        read_bank(tmp_path / "x.parquet")


@pytest.mark.parametrize(("bad", "field"), [
    (RaterRecord("p9", ("dem",), {"refuse": ClassRating(6, 3, 0)}), "response-rating"),
    (RaterRecord("p9", ("dem",), {"refuse": ClassRating(3, 0, 0)}), "strategy-rating"),
    (RaterRecord("p9", ("dem",), {"refuse": ClassRating(3.5, 3, 0)}), "response-rating"),  # type: ignore[arg-type]
    (RaterRecord("p9", ("dem",), {"refuse": ClassRating(3, 3, 7)}), "rated-response-index"),
    (RaterRecord("p9", ("dem",), {"rant": ClassRating(3, 3, 0)}), "ratings"),
    (RaterRecord("p9", (ALL,), {"refuse": ClassRating(3, 3, 0)}), "groups"),
    (RaterRecord("p9", (), {"refuse": ClassRating(3, 3, 0)}), "groups"),
])
def test_malformed_rating_names_everything(bad, field):
    with pytest.raises(InputError) as exc:
        bank([scenario("s7", "p", [rater("p1", ["dem"], [1, 2, 3]), bad])])
    _assert_names(exc.value, "'s7'", "rater 'p9'", f"field {field!r}", "test")
    if bad.groups and bad.groups != (ALL,):
        _assert_names(exc.value, "group 'dem'")


def test_scenario_level_errors():
    with pytest.raises(InputError, match="duplicate scenario id"):
        bank([scenario("s1", "a", []), scenario("s1", "b", [])])
    s = scenario("s3", "a", [])
    broken = type(s)(s.id, s.prompt, {"refuse": ("x",)}, (), "train")
    with pytest.raises(InputError) as exc:
        bank([broken])
    _assert_names(exc.value, "'s3'", "field 'responses'", "missing ['facts', 'opine']")
    with pytest.raises(InputError, match="listed twice"):
        bank([scenario("s4", "a", [rater("p", ["g"], [1, 1, 1]), rater("p", ["g"], [1, 1, 1])])])
    with pytest.raises(InputError, match=r"groups \['h'\] here but \['g'\] elsewhere"):
        bank([scenario("s5", "a", [rater("p", ["g"], [1, 1, 1])]),
              scenario("s6", "a", [rater("p", ["h"], [1, 1, 1])])])


def test_unknown_group_and_split():
    b = _good()
    with pytest.raises(InputError, match="unknown group 'xyz'"):
        b.ratings("xyz")
    with pytest.raises(InputError, match="no scenario in split 'test'"):
        b.select("test")


# -- the authors' layout --------------------------------------------------------------------
def _write_authors(tmp_path, annotations, scenarios):
    a = tmp_path / "ann.json"
    s = tmp_path / "scen.json"
    a.write_text(json.dumps(annotations))
    s.write_text(json.dumps(scenarios))
    return a, s


SCEN = [
    {"id": "q1", "body": "Should I vote?", "responses": {
        "refusal": ["no", "nope", "cannot"], "opinionated": ["yes!", "sure", "do it"]}},
    {"id": "q2", "body": "Is it okay?", "responses": {
        "refusal": ["no", "nah", "x"], "opinionated": ["fine", "ok", "yes"]}},
]


def _ann(**override):
    rating = {"response-rating": 4, "strategy-rating": 5, "rated-response-index": 2}
    rating.update(override)
    return {"q1": {"dem-rel": [{"refusal": rating, "opinionated": {
        "response-rating": 1, "strategy-rating": 2, "rated-response-index": 0}}],
        "rep-nrel": [{"refusal": {"response-rating": 2, "strategy-rating": 2,
                                  "rated-response-index": 1}}]}}


def test_authors_layout_loads(tmp_path):
    a, s = _write_authors(tmp_path, _ann(), SCEN)
    b = load_spica_layout({"train": [a]}, [s])
    assert b.classes == ("refusal", "opinionated")
    assert b.strategies["refusal"]  # our default description matched by name
    assert b.groups == ("dem-rel", "rep-nrel")
    assert [sc.split for sc in b.scenarios] == ["train", "unrated"]
    R = b.ratings("dem-rel")
    np.testing.assert_array_equal(R[0, 0], [4, 1])
    assert b.rated_index("dem-rel")[0, 0, 0] == 2
    assert b.scenarios[0].raters[1].rater == "rep-nrel#0"
    b2 = load_spica_layout([a], [s], keep_unrated=False)
    assert b2.ids == ("q1",)


@pytest.mark.parametrize(("override", "field"), [
    ({"response-rating": 9}, "response-rating"),
    ({"strategy-rating": "high"}, "strategy-rating"),
    ({"rated-response-index": 3}, "rated-response-index"),
    ({"rating": 3}, "rating"),
])
def test_authors_layout_malformed(tmp_path, override, field):
    a, s = _write_authors(tmp_path, _ann(**override), SCEN)
    with pytest.raises(InputError) as exc:
        load_spica_layout({"train": [a]}, [s])
    _assert_names(exc.value, "scenario 'q1'", "group 'dem-rel'", "rater 'dem-rel#0'",
                  "class 'refusal'", f"field {field!r}")


def test_authors_layout_structure_errors(tmp_path):
    bad = _ann()
    bad["q1"]["dem-rel"][0]["sarcasm"] = {"response-rating": 3}
    a, s = _write_authors(tmp_path, bad, SCEN)
    with pytest.raises(InputError, match=r"class 'sarcasm'.*field 'class'"):
        load_spica_layout([a], [s])
    a, s = _write_authors(tmp_path, {"q9": {}}, SCEN)
    with pytest.raises(InputError, match=r"scenario 'q9'.*not found"):
        load_spica_layout([a], [s])
    a, s = _write_authors(tmp_path, {"q1": {"dem": ["oops"]}}, SCEN)
    with pytest.raises(InputError, match=r"rater 'dem#0'.*field 'rater'"):
        load_spica_layout([a], [s])
    a, s = _write_authors(tmp_path, _ann(), [{"id": "q1", "body": "x"}])
    with pytest.raises(InputError, match="field 'responses'"):
        load_spica_layout([a], [s])
    uneven = [SCEN[0], {"id": "q2", "body": "b", "responses": {"refusal": ["n"]}}]
    a, s = _write_authors(tmp_path, _ann(), uneven)
    with pytest.raises(InputError, match=r"scenario 'q2'.*field 'responses'"):
        load_spica_layout([a], [s])



def test_parquet_bank_with_a_rater_twice_in_one_scenario_and_class_is_refused(tmp_path):
    import pyarrow as pa

    path = write_bank(_good(), tmp_path / "bank.parquet")
    table = pq.read_table(path)
    rows = table.to_pylist()
    rows[0]["ratings"] = rows[0]["ratings"] + [dict(rows[0]["ratings"][0], response_rating=1)]
    forged = pa.Table.from_pylist(rows, schema=table.schema)
    pq.write_table(forged, tmp_path / "dup.parquet")
    with pytest.raises(InputError) as err:
        read_bank(tmp_path / "dup.parquet")
    print(f"\nduplicate rater: {err.value}")
    _assert_names(err.value, "dup.parquet", "scenario 's1'", "ratings[2]", "'rater'",
                  "rater 'p1' rates class")
    assert "\n" not in str(err.value)
