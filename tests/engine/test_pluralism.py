"""Overton coverage/precision, sampled answer distributions, annotator juries and the field's
loaders: each metric against a plain loop on random inputs and a hand-computed example."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pluralign.engine.errors import InputError
from pluralign.engine.pluralism.annotators import (
    Rating,
    Ratings,
    evaluate,
    juror_utilities,
    select,
    select_many,
    tables,
)
from pluralign.engine.pluralism.opinions import logprob_distribution, sample_distribution
from pluralign.engine.pluralism.overton import (
    coverage_precision,
    lexical_reflects,
    load_overton,
    pair_scores,
    parse_overton,
)

# ---- Overton -------------------------------------------------------------------------------


def _loop_cov_prec(r: list[bool], w: list[bool]) -> tuple[float, float | None]:
    hit_w = sum(1 for a, b in zip(r, w, strict=True) if a and b)
    n_w = sum(w)
    hit = sum(r)
    prec = None if all(w) or hit == 0 else hit_w / hit
    return hit_w / n_w, prec


def test_overton_hand_example() -> None:
    # Window {w0, w1, w2}, unreasonable {u0}; reflected w0, w2, u0: coverage 2/3, precision 2/3.
    cov, prec = coverage_precision(np.array([1, 0, 1, 1], bool), np.array([1, 1, 1, 0], bool))
    assert cov == pytest.approx(2 / 3) and prec == pytest.approx(2 / 3)
    assert coverage_precision(np.array([1, 1], bool), np.array([1, 1], bool))[1] is None


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(st.tuples(st.booleans(), st.booleans()), min_size=1, max_size=8),
                min_size=1, max_size=6))
def test_overton_pairs_equal_loop(pairs: list[list[tuple[bool, bool]]]) -> None:
    pairs = [p if any(w for _, w in p) else [*p, (False, True)] for p in pairs]
    flat_r = [r for p in pairs for r, _ in p]
    flat_w = [w for p in pairs for _, w in p]
    pid = [i for i, p in enumerate(pairs) for _ in p]
    cov, prec = pair_scores(np.array(flat_r), np.array(flat_w), np.array(pid), len(pairs))
    for i, p in enumerate(pairs):
        c, pr = _loop_cov_prec([r for r, _ in p], [w for _, w in p])
        assert cov[i] == pytest.approx(c)
        assert (math.isnan(prec[i]) and pr is None) or prec[i] == pytest.approx(pr)
        c2, pr2 = coverage_precision(np.array([r for r, _ in p]), np.array([w for _, w in p]))
        assert c2 == pytest.approx(c) and pr2 == (None if pr is None else pytest.approx(pr))


def test_lexical_proxy_hand_example() -> None:
    # Content words (crudely stemmed): {reduc, air, pollution} all in the response; the
    # second candidate's {shop, lose, customer} none; the third 2 of {car, air, pollution, cut, ban}.
    got = lexical_reflects("Reducing air pollution matters.",
                           ["reduces air pollution", "Shops lose customers",
                            "cars air pollution cuts ban"])
    assert got.tolist() == [True, False, False]


def _query(**over: Any) -> dict[str, Any]:
    q: dict[str, Any] = {"id": "q", "query": "Should cities ban cars?",
                         "window": ["yes, for air", {"id": "no", "text": "no, for shops"}],
                         "unreasonable": ["cars are alive"], "responses": {"M": "yes"}}
    q.update(over)
    return q


BAD_OVERTON: dict[str, tuple[Any, str, str]] = {
    "no-queries": ({}, "non-empty 'queries' list", "field 'queries'"),
    "empty": ({"queries": []}, "non-empty 'queries' list", "field 'queries'"),
    "not-an-object": ({"queries": ["x"]}, "a query must be an object", "record queries[0]"),
    "duplicate": ({"queries": [_query(), _query()]}, "duplicate query id",
                  "record queries[1] ('q')"),
    "empty-window": ({"queries": [_query(), _query(id="r", window=[])]}, "non-empty list",
                     "record queries[1] ('r'), field 'window'"),
    "id-on-both-sides": ({"queries": [_query(window=["a", {"id": "u0", "text": "b"}])]},
                         "both in the window", "field 'unreasonable'"),
    "bad-response": ({"queries": [_query(responses={"M": 3})]}, "map system names",
                     "field 'responses'"),
    "unknown-key": ({"queries": [_query(answer=1)]}, "unknown key", "field 'answer'"),
}


@pytest.mark.parametrize(("data", "message", "where"), list(BAD_OVERTON.values()),
                         ids=list(BAD_OVERTON))
def test_malformed_overton_files(tmp_path: Path, data: Any, message: str, where: str) -> None:
    path = tmp_path / "overton.json"
    path.write_text(json.dumps(data))
    with pytest.raises(InputError) as err:
        load_overton(path)
    assert message in str(err.value) and where in str(err.value)
    assert str(err.value).startswith(str(path))


def test_overton_file_keeps_order_ids_and_defaults() -> None:
    queries = parse_overton({"queries": [_query(), _query(id="r", unreasonable=[])]})
    assert [q.id for q in queries] == ["q", "r"]
    assert [p.id for p in queries[0].window] == ["w0", "no"]
    assert [p.id for p in queries[0].unreasonable] == ["u0"] and queries[1].unreasonable == ()


# ---- distributions ------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(st.integers(2, 6).flatmap(lambda k: st.tuples(
    st.just(k), st.lists(st.integers(0, k - 1), min_size=1, max_size=40))))
def test_sample_distribution_equals_loop(case: tuple[int, list[int]]) -> None:
    k, picks = case
    loop = [sum(1 for p in picks if p == j) / len(picks) for j in range(k)]
    assert sample_distribution(picks, k) == pytest.approx(loop)


def test_distributions_hand_example() -> None:
    assert sample_distribution([0, 0, 1, 2, 0], 3).tolist() == [0.6, 0.2, 0.2]
    assert sample_distribution([], 3) is None
    d = logprob_distribution({" A": math.log(0.5), "B": math.log(0.25), "x": 0.0}, ["A", "B"])
    assert d == pytest.approx([2 / 3, 1 / 3])


# ---- annotator juries ---------------------------------------------------------------------


def _ratings(values: dict[tuple[str, str, str], float], demo=None) -> Ratings:
    return Ratings([Rating(a, s, r, v) for (a, s, r), v in values.items()], (1, 5), demo or {})


def test_annotators_hand_example() -> None:
    # One scenario, two jurors, responses x, y: utilities (x, y) = (1, 0) and (0.25, 0.5).
    r = _ratings({("p", "s", "x"): 5, ("p", "s", "y"): 1, ("q", "s", "x"): 2, ("q", "s", "y"): 3},
                 {"p": {"country": "A"}, "q": {"country": "B"}})
    res = evaluate(r, (0.0, math.inf), "country", {"s": "y"})
    all_ = res["groups"][0]
    assert all_["optimal_welfare_a0"] == pytest.approx(0.625)      # mean(1, .25) for x
    assert all_["optimal_welfare_ainf"] == pytest.approx(0.25)     # min: x .25, y 0
    assert all_["system_welfare_a0"] == pytest.approx(0.25)        # y: mean(0, .5)
    assert {g["group"] for g in res["groups"]} == {"ALL", "country=A", "country=B"}


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 2), st.integers(0, 2),
                          st.integers(1, 5)), min_size=1, max_size=30, unique_by=lambda t: t[:3]))
def test_annotators_equal_loop(rows: list[tuple[int, int, int, int]]) -> None:
    r = _ratings({(f"a{a}", f"s{s}", f"r{x}"): v for a, s, x, v in rows})
    choices = {f"s{s}": f"r{(s + 1) % 3}" for s in range(3)}
    t = tables(r)
    got = juror_utilities(t, choices)
    for j, who in enumerate(t.jurors):
        us = [(v - 1) / 4 for a, s, x, v in rows if f"a{a}" == who and choices[f"s{s}"] == f"r{x}"]
        assert (math.isnan(got[j]) and not us) or got[j] == pytest.approx(np.mean(us))
    res = evaluate(r, (0.0,), None, None)
    picks = {}
    for s, util in enumerate(t.utility):  # loop: jurors who rated every response pick by mean
        full = [row for row in util if not np.isnan(row).any()]
        if full:
            means = [sum(row[k] for row in full) / len(full) for k in range(util.shape[1])]
            picks[s] = next(k for k, m in enumerate(means) if m >= max(means) - 1e-12)
    per_juror = []  # then, as for a system's picks: each juror's mean utility of those rated
    for j in range(len(t.jurors)):
        rows = {s: list(t.members[s]).index(j) for s in picks if j in t.members[s]}
        us = [t.utility[s][i, picks[s]] for s, i in rows.items()
              if not np.isnan(t.utility[s][i, picks[s]])]
        if us:
            per_juror.append(np.mean(us))
    want = float(np.mean(per_juror)) if per_juror else None
    assert res["groups"][0]["optimal_welfare_a0"] == (None if want is None else pytest.approx(want))


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 4), st.integers(2, 3), st.integers(0, 2**31)),
                min_size=1, max_size=12))
def test_select_many_equals_select_per_scenario(shapes: list[tuple[int, int, int]]) -> None:
    utils = []
    for n, r, seed in shapes:  # some tables share a shape, some have an unrated cell
        rng = np.random.default_rng(seed)
        u = rng.choice([0.0, 0.25, 0.5, 1.0], size=(n, r))
        if seed % 3 == 0:
            u[0, 0] = np.nan
        utils.append(u)
    alphas = (0.0, 0.5, 1.0, math.inf)
    for u, (chosen, w, n) in zip(utils, select_many(utils, alphas), strict=True):
        want_chosen, want_w, want_n = select(u, alphas)
        assert n == want_n and chosen.tolist() == want_chosen.tolist()
        assert np.array_equal(w, want_w, equal_nan=True)


# Loaders of the field's datasets: tests/engine/test_dataset_layouts.py


# ---- survey answers from option-letter log-probabilities -----------------------------------


def _survey_judge(logprobs: int | None) -> Any:
    from pluralign.engine.judges.base import JudgeSettings
    from pluralign.engine.pluralism.distributional import Question
    from pluralign.engine.pluralism.judges import SurveyJudge

    q = Question("s1", "Is it good?", ("Yes", "No", "Maybe"),
                 {"US": np.array([0.5, 0.25, 0.25])}, {})
    return SurveyJudge([q], JudgeSettings(model="m"), logprobs=logprobs)


def test_logprob_judge_request_and_rows() -> None:
    from pluralign.engine.pluralism.opinions import logprobs_by_question
    from pluralign.engine.run.backend import NO_LOGPROBS, GenerationResult, Sample

    sampled, judge = _survey_judge(None), _survey_judge(5)
    assert judge.identity != sampled.identity != _survey_judge(6).identity
    items = judge.items(samples=4)
    assert len(items) == 1  # one request per question, whatever --samples says
    req = judge.request(items[0])
    assert req.json_schema is None and req.top_logprobs == 5
    assert req.fingerprint() != sampled.request(sampled.items(1)[0]).fingerprint()
    top = {" B": math.log(0.5), "(A": math.log(0.2), "A": math.log(0.1), "The": math.log(0.2)}
    row = judge.parse(items[0], GenerationResult(req.id, (Sample("B", top_logprobs=top),)))[0]
    assert row["error"] is None and row["choice"] == 1
    got = logprobs_by_question([row])[row["scenario"]]
    assert got == pytest.approx(top)
    assert logprob_distribution(got, ["A", "B", "C"]) == pytest.approx([0.375, 0.625, 0.0])
    none = {"The": -0.1, "I": -2.0}
    bad = judge.parse(items[0], GenerationResult(req.id, (Sample("The", top_logprobs=none),)))
    assert "no option letter (A, B, C)" in bad[0]["error"]
    missing = judge.parse(items[0], GenerationResult(req.id, (Sample("B"),)))
    assert missing[0]["error"] == NO_LOGPROBS and logprobs_by_question(missing) == {}


def test_top_logprobs_in_fingerprint_only_when_set() -> None:
    from pluralign.engine.run.backend import GenerationRequest, Message

    msgs = (Message("user", "hi"),)
    base = GenerationRequest("a", msgs)
    assert GenerationRequest("b", msgs, top_logprobs=None).fingerprint() == base.fingerprint()
    assert GenerationRequest("c", msgs, top_logprobs=3).fingerprint() != base.fingerprint()
