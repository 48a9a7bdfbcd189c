"""Group-informed retrieval: the planted synthetic structure, least squares, ranking rules."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from pluralign.engine.errors import InputError
from pluralign.engine.spica.bank import ALL
from pluralign.engine.spica.evaluate import evaluate_retrieval, query_errors
from pluralign.engine.spica.group_metrics import group_norms
from pluralign.engine.spica.retrieval import Retriever, Weights
from pluralign.engine.spica.synthetic_bank import SyntheticConfig, synthetic_bank
from tests.engine.spica.helpers import bank, rater, scenario


@pytest.fixture(scope="module")
def planted():
    sb = synthetic_bank(SyntheticConfig(seed=0))
    retriever = Retriever(sb.bank.select("train"))
    weights = retriever.fit_all(sb.bank.select("dev"))
    results = evaluate_retrieval(retriever, sb.bank.select("test"), weights, k=5, n_boot=1000)
    return sb, retriever, weights, {e.group: e for e in results}


def test_spica_beats_similarity_for_every_group(planted):
    sb, _, _, res = planted
    assert set(res) == {*sb.bank.groups, ALL}
    for g in sb.bank.groups:
        e = res[g]
        assert e.n_queries == sb.config.n_test
        assert e.spica.mean < e.baseline.mean
        assert e.gain.low > 0, f"{g}: gain interval {e.gain} includes 0"
        assert e.spica.low <= e.spica.mean <= e.spica.high


def test_fitted_weights_have_planted_signs(planted):
    sb, _, weights, _ = planted
    for g in sb.bank.groups:
        w = weights[g]
        assert w.w_d > 0, f"{g}: farther prompts should mismatch more"
        assert w.w_s < 0, f"{g}: crystallized scenarios should be closer"
        assert w.w_c < 0, f"{g}: intense scenarios should be closer"


def test_collective_group_gains_little(planted):
    sb, _, _, res = planted
    # Pooling all raters averages the zero-sum norms away: the relative gain of ALL is below
    # that of every group (the paper found SPICA's metrics contributed little for ALL).
    rel = {g: e.gain.mean / e.baseline.mean for g, e in res.items()}
    assert rel[ALL] < min(rel[g] for g in sb.bank.groups)
    # ...and stability, not contrast, carries what is left (|w_c| small for ALL).
    assert abs(planted[2][ALL].w_c) < min(abs(planted[2][g].w_c) for g in sb.bank.groups)


def test_planted_flags_drive_the_metrics(planted):
    sb, retriever, _, _ = planted
    n = sb.bank.select("train").n_scenarios
    for gi, g in enumerate(sb.bank.groups):
        norms = retriever.norms(g)
        cryst = sb.planted.crystallized[:n, gi]
        intense = sb.planted.intense[:n, gi]
        assert norms.stability[cryst].mean() > norms.stability[~cryst].mean()
        assert norms.contrast[intense].mean() > norms.contrast[~intense].mean()


def test_least_squares_is_optimal(planted):
    sb, retriever, weights, _ = planted
    dev = sb.bank.select("dev")
    w = weights["g1"]
    obs = retriever.observed_mismatch(dev, "g1")
    d = retriever.distance(dev.prompts)
    norms = retriever.norms("g1")

    def sse(x: Weights) -> float:
        pred = x.w_d * d + x.w_s * norms.stability + x.w_c * norms.contrast + x.c
        return float(np.nansum((obs - pred) ** 2))

    best = sse(w)
    for field in ("w_d", "w_s", "w_c", "c"):
        for step in (-0.01, 0.01):
            assert sse(replace(w, **{field: getattr(w, field) + step})) > best
    assert w.n_pairs == obs.size


def _small():
    return bank([
        scenario("a", "vote election ballot", [rater("p1", ["g"], [5, 1, 1]),
                                               rater("p2", ["g"], [5, 1, 1])]),
        scenario("b", "vote election ballot", [rater("p3", ["g"], [1, 3, 5]),
                                               rater("p4", ["g"], [5, 3, 1])]),
        scenario("c", "bread flour oven", [rater("p5", ["g"], [3, 3, 3])]),
        scenario("d", "vote election", [rater("p6", ["h"], [1, 1, 1])]),
    ])


def test_baseline_is_similarity_order_with_ties_to_lower_index():
    r = Retriever(_small())
    idx = r.retrieve(["vote election ballot"], "g", 3)
    assert list(idx[0]) == [0, 1, 2]  # a and b tie exactly: the lower index first
    sims = r.similarity.similarity(["vote election ballot"])[0]
    assert sims[0] == sims[1] > sims[2]


def test_unrated_scenarios_are_never_retrieved():
    r = Retriever(_small())
    idx = r.retrieve(["vote election"], "g", 10)
    assert idx.shape == (1, 3) and 3 not in idx[0]  # d is rated by h only
    assert list(r.retrieve(["vote election"], "h", 5)[0]) == [3]
    assert set(r.retrieve(["vote"], ALL, 10)[0]) == {0, 1, 2, 3}


def test_group_informed_ranking_prefers_stable_scenarios():
    r = Retriever(_small())
    norms = group_norms(r.bank, "g")
    assert norms.stability[0] > norms.stability[1]
    w = Weights("g", w_d=1.0, w_s=-1.0, w_c=0.0, c=5.0)
    # a (stability 0) first; c (one rater: stability 0, but a distant prompt) before b (-8/3).
    assert list(r.retrieve(["vote election ballot"], "g", 3, w)[0]) == [0, 2, 1]
    flipped = Weights("g", w_d=1.0, w_s=1.0, w_c=0.0, c=-3.0)
    assert list(r.retrieve(["vote election ballot"], "g", 3, flipped)[0]) == [1, 0, 2]


def test_errors():
    r = Retriever(_small())
    with pytest.raises(InputError, match="k must be at least 1"):
        r.retrieve(["x"], "g", 0)
    with pytest.raises(InputError, match="unknown group"):
        r.retrieve(["x"], "nobody", 1)
    dev = bank([scenario("q", "vote", [rater("z", ["h"], [1, 2, 3])], split="dev")])
    with pytest.raises(InputError, match="no query was rated by group 'g'"):
        r.fit(dev, "g")
    with pytest.raises(InputError, match="too few dev pairs"):
        r.fit(dev, "h")  # one pair only


def test_query_errors_average_over_retrieved():
    b = _small()
    r = Retriever(b)
    queries = bank([scenario("q", "vote election ballot", [rater("z", ["g"], [5, 1, 1])])])
    err = query_errors(r, queries, "g", 2, None)
    obs = r.observed_mismatch(queries, "g")
    assert err[0] == pytest.approx((obs[0, 0] + obs[0, 1]) / 2)
    assert obs[0, 0] == 0.0  # identical ratings: no mismatch
