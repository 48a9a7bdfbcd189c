"""Every field-dataset loader on files in its dataset's published layout (tests/layouts.py
writes them): what it yields, what it skips and counts, and the one line it stops with when
the layout cannot give what was asked."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pluralign.engine.data import field_data as fd
from pluralign.engine.errors import DataNotFoundError, InputError
from pluralign.engine.pluralism.annotators import evaluate, tables
from pluralign.engine.pluralism.overton import overton_scores
from tests import layouts

# ---- OpinionQA -------------------------------------------------------------------------------


def _paper_distribution(counts: dict[str, dict[str, float]], parties: list[str]) -> np.ndarray:
    """Santurkar et al.'s helpers.extract_human_opinions on summed counts: the ordinal
    references (the first len(option_ordinal) of references), renormalised."""
    opts = layouts.SAFECRIME_REFS[:4]
    d = np.array([sum(counts[p].get(o, 0) for p in parties) for o in opts], dtype=float)
    return d / d.sum()


def test_opinionqa_keeps_refusals_out_of_the_options(tmp_path: Path) -> None:
    d = layouts.opinionqa_w26(tmp_path)
    load = fd.load_opinionqa(d)
    q = {x.id: x for x in load.questions}["SAFECRIME_W26"]
    assert q.options == ("Very safe", "Somewhat safe", "Not too safe", "Not at all safe")
    want = _paper_distribution(layouts.SAFECRIME_COUNTS, list(layouts.SAFECRIME_COUNTS))
    assert q.groups["overall"] == pytest.approx(want, abs=1e-12)
    refused = sum(c.get("Refused", 0) for c in layouts.SAFECRIME_COUNTS.values())
    total = sum(sum(c.values()) for c in layouts.SAFECRIME_COUNTS.values())
    assert load.refusal["SAFECRIME_W26"]["overall"] == pytest.approx(refused / total)
    worry = {x.id: x for x in load.questions}["WORRYG_W26"]
    assert worry.options == ("Worry a lot", "Worry a little")  # "Not sure" is a refusal too
    assert load.refusal["WORRYG_W26"]["overall"] == pytest.approx(0.5, abs=0.01)


def test_opinionqa_groups_come_from_metadata_and_the_wave_weight(tmp_path: Path) -> None:
    weights = {"Democrat": 2.0, "Republican": 0.5, "Independent": 1.0, "Other": 1.5,
               "Refused": 3.0}
    d = layouts.opinionqa_w26(tmp_path, weights)
    load = fd.load_opinionqa(d, "POLPARTY")
    q = {x.id: x for x in load.questions}["SAFECRIME_W26"]
    assert sorted(q.groups) == ["POLPARTY=Democrat", "POLPARTY=Independent", "POLPARTY=Other",
                                "POLPARTY=Republican", "overall"]  # no "Refused" population
    weighted = {p: {o: n * weights[p] for o, n in c.items()}
                for p, c in layouts.SAFECRIME_COUNTS.items()}
    assert q.groups["overall"] == pytest.approx(
        _paper_distribution(weighted, list(weighted)))  # WEIGHT_W26, not WEIGHT_W25W26
    assert q.groups["POLPARTY=Democrat"] == pytest.approx(
        _paper_distribution(weighted, ["Democrat"]))
    assert load.skipped == {"respondent outside the POLPARTY groups (counted in overall)": 28}


def test_opinionqa_says_what_is_missing(tmp_path: Path) -> None:
    d = layouts.opinionqa_w26(tmp_path)
    (d / "metadata.csv").unlink()
    with pytest.raises(InputError, match=r"metadata\.csv: metadata\.csv is needed to group by"):
        fd.load_opinionqa(d, "POLPARTY")
    with pytest.raises(InputError, match="holds 1 survey folders, not one survey"):
        fd.load_opinionqa(d.parent)
    other = tmp_path / "American_Trends_Panel_W27"
    d.rename(other)
    with pytest.raises(InputError, match=r"field 'WEIGHT_W27': missing column"):
        fd.load_opinionqa(other)


def test_opinionqa_counts_respondents_without_a_weight(tmp_path: Path) -> None:
    d = tmp_path / "American_Trends_Panel_W26"
    layouts.write_csv(d / "info.csv", layouts.INFO_HEADER, [
        [0, 0, 0, "Q_W26", "{}", "Q?", "['Yes', 'No', 'Refused']", "[1.0, 2.0]"]])
    layouts.write_csv(d / "responses.csv", ["Q_W26", "WEIGHT_W26", "WEIGHT_W25W26"],
                      [["Yes", "2", ""], ["No", "", "5"], ["No", "1", ""], ["Refused", "1", ""]])
    load = fd.load_opinionqa(d)
    assert load.questions[0].groups["overall"] == pytest.approx([2 / 3, 1 / 3])
    assert load.refusal["Q_W26"]["overall"] == pytest.approx(1 / 4)
    assert load.skipped == {"respondent with a blank WEIGHT_W26": 1}


def test_opinionqa_with_only_refusals_is_an_error(tmp_path: Path) -> None:
    d = tmp_path / "American_Trends_Panel_W26"
    layouts.write_csv(d / "info.csv", layouts.INFO_HEADER, [
        [0, 0, 0, "Q_W26", "{}", "Q?", "['Yes', 'No', 'Refused']", "[1.0, 2.0]"]])
    layouts.write_csv(d / "responses.csv", ["Q_W26", "WEIGHT_W26"], [["Refused", "1"]])
    with pytest.raises(InputError, match=r"responses\.csv: no question has a substantive .*"
                                         r"skipped: 1 question without a substantive answer"):
        fd.load_opinionqa(d)


# ---- GlobalOpinionQA, ValuePrism -------------------------------------------------------------


def test_global_opinions_skips_and_counts_what_it_cannot_use(tmp_path: Path) -> None:
    load = fd.load_global_opinions(layouts.global_opinions(tmp_path / "global_opinions.csv"))
    first, scale = load.questions
    assert sorted(first.groups) == ["Japan", "Nigeria"]  # Chile's one share is dropped
    assert scale.options == tuple(str(k) for k in range(1, 11))  # "1", not "1.0"
    assert load.skipped == {"country with malformed shares": 1, "empty question": 1}


def test_global_opinions_with_nothing_usable_is_an_error(tmp_path: Path) -> None:
    p = layouts.write_csv(tmp_path / "global_opinions.csv", ["question", "selections", "options"],
                          [["Q?", "{'Japan': [0.5]}", "['Yes', 'No']"]])
    with pytest.raises(InputError, match=r"global_opinions\.csv: no question with a well-formed "
                                         r"country distribution \(skipped: 1 country"):
        fd.load_global_opinions(p)


def test_valueprism_window_reads_as_written(tmp_path: Path) -> None:
    layouts.valueprism(tmp_path / "full" / "train.csv")
    layouts.write_csv(tmp_path / "relevance" / "train.csv", ["situation", "vrd", "text", "label"],
                      [["x", "Value", "y", "Yes"]])  # another task's folder: not read
    (q,) = fd.load_valueprism(tmp_path)
    assert [w.text for w in q.window] == ["Value: Honesty", "Right to truthful information",
                                          "Duty to protect others' feelings"]


# ---- PRISM -----------------------------------------------------------------------------------


def test_prism_models_of_opening_turns_pooled_across_users(tmp_path: Path) -> None:
    r = fd.load_prism(layouts.prism(tmp_path))
    t = tables(r)
    assert t.scenarios == (fd.PRISM_SCENARIO,) and len(t.jurors) == 3
    assert set(t.responses[0]) == {"gpt-4", "Llama-2-7b-chat-hf", "claude-2", "command"}
    u1 = {x.response: x.value for x in r.ratings if x.annotator == "u1"}
    assert u1["gpt-4"] == 80.0  # 90 and 70 averaged
    assert r.skipped == {"later-turn rating (the analysis uses turn 0)": 2,
                         "turn-0 rating outside the balanced subset": 1}
    assert r.demographics["u2"]["ethnicity_simplified"] == "Black"
    res = evaluate(r, (0.0, float("inf")), "gender")
    pick = {(x["group"], x["alpha"]): x["response"] for x in res["selection"]}
    assert pick[("ALL", "0")] == "claude-2"  # mean score 76.7 beats gpt-4's 70
    assert pick[("gender=Male", "0")] == "gpt-4"


def test_prism_file_that_is_not_utf8_is_named(tmp_path: Path) -> None:
    (tmp_path / "utterances.jsonl").write_bytes(b'{"user_id": "caf\xe9"}\n')
    with pytest.raises(InputError, match=r"utterances\.jsonl: not UTF-8 text"):
        fd.load_prism(tmp_path)


def test_prism_without_turn_zero_is_an_error(tmp_path: Path) -> None:
    layouts.write_jsonl(tmp_path / "utterances.jsonl", [
        {"user_id": "u1", "turn": 1, "model_name": "gpt-4", "score": 50}])
    with pytest.raises(InputError, match=r"utterances\.jsonl: no ratings \(skipped: 1 later"):
        fd.load_prism(tmp_path)


# ---- Community Alignment ---------------------------------------------------------------------


def test_community_alignment_skips_collapses_and_averages(tmp_path: Path) -> None:
    layouts.community_alignment(tmp_path)
    r = fd.load_community_alignment(tmp_path)  # finds community_alignment.csv at the root
    t = tables(r)
    assert len(t.scenarios) == 2 and t.jurors == ("A1", "A2")
    assert r.skipped == {"turn without a preference": 1, "identical candidates collapsed": 1}
    a1 = sorted(x.value for x in r.ratings if x.annotator == "A1")
    assert a1 == [0.0, 0.0, 0.5, 0.5]  # voted b, then c
    assert r.notes[0].startswith("1 repeat votes")
    second = next(u for u in t.utility if u.shape[1] == 2)  # "Cook at home." once
    assert np.nansum(second) == 1.0
    assert r.demographics["A2"]["annotator_country"] == "India"


# ---- PERSONA ---------------------------------------------------------------------------------


def test_persona_says_why_no_jury_forms(tmp_path: Path) -> None:
    layouts.persona(tmp_path)
    with pytest.raises(InputError, match=r"train-00000-of-00001\.parquet: PERSONA cannot form a "
                                         r"jury: each of its 2 personas rates only its own pair"):
        fd.load_persona(tmp_path)  # the parquet is found under data/


def test_persona_with_a_shared_original_still_has_no_complete_scenario(tmp_path: Path) -> None:
    layouts.persona(tmp_path, shared_original=True)
    with pytest.raises(InputError, match="no complete scenario"):
        fd.load_persona(tmp_path)


# ---- DICES and label sets ----------------------------------------------------------------------


@pytest.mark.parametrize(("which", "field", "value"), [
    ("350", "rater_raw_race", "Asian"), ("990", "rater_locale", "India")])
def test_dices_files_and_their_rater_columns(tmp_path: Path, which: str, field: str,
                                             value: str) -> None:
    layouts.dices(tmp_path)
    r = fd.load_dices(tmp_path / which)
    assert r.demographics["r3"][field] == value
    res = evaluate(r, (0.0,), "rater_gender")
    pick = {(x["group"], x["scenario"]): x["response"] for x in res["selection"]}
    assert pick[("ALL", "1")] == "Yes" and pick[("rater_gender=Man", "2")] == "No"
    with pytest.raises(InputError, match="2 DICES files"):
        fd.load_dices(tmp_path)


def test_label_sets_name_their_demographic_columns(tmp_path: Path) -> None:
    p = layouts.write_csv(tmp_path / "labels.csv", ["item", "annotator", "label", "gender"], [
        ["c1", "w1", "toxic", "F"], ["c1", "w2", "ok", "M"], ["c1", "w3", "toxic", "M"],
        ["c1", "w4", "", "M"]])
    r = fd.load_label_sets(p, demographics=("gender",))
    assert r.skipped == {"row without a label": 1}
    assert evaluate(r, (0.0,), "gender")["jurors"] == 3
    with pytest.raises(InputError, match="no annotator has the demographic field 'gender'"):
        evaluate(fd.load_label_sets(p), (0.0,), "gender")


def test_a_byte_order_mark_is_not_part_of_a_column_name(tmp_path: Path) -> None:
    p = tmp_path / "labels.csv"
    p.write_text("item,annotator,label\nc1,w1,a\nc1,w2,b\n", encoding="utf-8-sig")
    assert len(fd.load_label_sets(p).ratings) == 4
    p.write_bytes("item,annotator,label\nc1,w1,caf\xe9\n".encode("latin-1"))
    with pytest.raises(InputError, match=r"labels\.csv, record after line 1: not UTF-8"):
        fd.load_label_sets(p)


def test_label_sets_without_two_labels_are_an_error(tmp_path: Path) -> None:
    p = layouts.write_csv(tmp_path / "labels.csv", ["item", "annotator", "label"],
                          [["c1", "w1", "ok"], ["c2", "w1", "ok"]])
    with pytest.raises(InputError, match=r"labels\.csv: no complete scenario"):
        fd.load_label_sets(p)


# ---- OvertonBench ------------------------------------------------------------------------------


def test_overtonbench_coverage_of_opinion_clusters(tmp_path: Path) -> None:
    data = fd.load_overtonbench(layouts.overtonbench(tmp_path))
    assert data.skipped == {"row without a rating or cluster": 1}
    rows, models = overton_scores(data)
    by = {r["model"]: r for r in rows}
    assert by["gpt-4o"]["clusters_covered"] == 1 and by["llama-3-70b"]["clusters_covered"] == 1
    assert models["gpt-4o"]["overton_score"] == 0.5  # cluster 0: 4.5 covered; 1: 2.5 not


def test_overtonbench_names_the_column_it_lacks(tmp_path: Path) -> None:
    p = layouts.write_csv(tmp_path / "x.csv", ["user_id", "question", "model", "rating"],
                          [["p", "q", "m", "4"]])
    with pytest.raises(InputError, match=r"x\.csv, field 'cluster': no cluster column"):
        fd.load_overtonbench(p)


def test_a_file_that_is_not_parquet_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "data" / "train-00000-of-00001.parquet"
    bad.parent.mkdir()
    bad.write_text("not parquet")
    with pytest.raises(InputError, match=r"train-00000-of-00001\.parquet: not a readable parquet"):
        fd.load_persona(tmp_path)


def test_missing_dataset_says_where(tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError, match=r"huggingface\.co/datasets/allenai/ValuePrism.*gated"):
        fd.load_valueprism(tmp_path / "nope.csv")
