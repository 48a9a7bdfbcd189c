"""Jury evaluation against plain loops: per-juror outcomes, group welfare, selection."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pluralign.engine.align.align_loop import chosen_loop, realign_loop
from pluralign.engine.align.realign import chosen_responses
from pluralign.engine.data.benchmark import Benchmark
from pluralign.engine.data.synthetic import noisy_predictions, synthetic_benchmark
from pluralign.engine.data.targets import TargetSet, all_targets
from pluralign.engine.errors import InputError
from pluralign.engine.pluralism.juries import Jury, make_jury, sample_group_targets
from pluralign.engine.pluralism.jury_eval import (
    JuryConfig,
    best_within,
    bootstrap_ci,
    choose,
    evaluate_jury,
    juror_outcomes,
    select_welfare_optimal,
)

ALPHAS = (0.0, 0.5, 1.0, 2.0, math.inf)


def _quantized(bench: Benchmark, seed: int, step: float = 0.25) -> np.ndarray:
    """Predictions on a coarse grid, so exact and near ties between responses are common."""
    return np.round(noisy_predictions(bench, 0.3, seed) / step) * step


def _jury(bench: Benchmark, sizes: tuple[int, ...], seed: int, empty: int = 0) -> Jury:
    rng = np.random.default_rng(seed)
    groups = []
    for g, n in enumerate(sizes):
        prefs = {a: {v: float(rng.uniform(0.1, 1)) for v in bench.levels}
                 for a in bench.attributes[: 1 + (g + seed) % len(bench.attributes)]}
        vals = sample_group_targets(bench.attributes, prefs, n, rng)
        if g == 0 and empty:
            vals[:empty] = np.nan
        w = rng.integers(1, 4, n).astype(float)
        groups.append((f"g{g}", vals, w, [str(i) for i in range(n)]))
    return make_jury(bench.attributes, groups)


def _plain_welfare(u: np.ndarray, w: np.ndarray, a: float) -> float:
    p = w / w.sum()
    if math.isinf(a):
        return float(u.min())
    if a == 1:
        return 0.0 if np.any(u == 0) else float(np.exp(np.sum(p * np.log(u))))
    if a > 1 and np.any(u == 0):
        return 0.0
    with np.errstate(divide="ignore"):
        return float(np.sum(p * u ** (1 - a)) ** (1 / (1 - a)))


# ---- per-juror outcomes equal the loop oracle -------------------------------------------------

@pytest.mark.parametrize(("seed", "n_levels"), [(0, 5), (1, 5), (2, 7), (3, 7)])
def test_outcomes_equal_the_loop_oracle_exactly(seed: int, n_levels: int) -> None:
    bench = synthetic_benchmark(30, (2, 5), 4, n_levels, seed=seed)
    if n_levels == 5:
        pred = _quantized(bench, seed)  # exact ties
    else:
        # Scores on MIC's rounded levels: distances that tie in decimals differ in the last
        # bits of binary floats, so the 1e-9 tolerance decides.
        rng = np.random.default_rng(seed)
        pred = np.asarray(bench.levels)[rng.integers(0, n_levels, bench.labels.shape)]
    targets = all_targets(bench.attributes, bench.levels)
    chosen, correct, util = juror_outcomes(bench, pred, targets.values)
    np.testing.assert_array_equal(chosen, chosen_loop(bench, pred, targets))
    np.testing.assert_array_equal(chosen, chosen_responses(bench, pred, targets))
    # The juror's closeness 1 - d/sqrt(k) is the oracle's closeness (not its weighted score).
    counted, n_correct, closeness = realign_loop(bench, pred, targets, closeness=True)
    np.testing.assert_array_equal((correct >= 0).sum(axis=0), counted)
    np.testing.assert_array_equal((correct == 1).sum(axis=0), n_correct)
    mine = np.where(correct >= 0, util, 0.0).sum(axis=0)
    with np.errstate(invalid="ignore"):
        np.testing.assert_allclose(100 * mine / counted, closeness, rtol=1e-12)


def test_outcome_utility_is_the_label_distance_utility() -> None:
    bench = synthetic_benchmark(12, (2, 4), 3, 7, seed=5)
    pred = noisy_predictions(bench, 0.2, 5)
    t = np.array([[1.0, np.nan, 0.17], [np.nan, 0.33, np.nan]])
    chosen, _, util = juror_outcomes(bench, pred, t)
    for s in range(bench.n_scenarios):
        for j in range(2):
            lab = bench.labels[bench.offsets[s] + chosen[s, j]]
            named = ~np.isnan(t[j])
            d = math.sqrt(float(np.sum((lab[named] - t[j][named]) ** 2)))
            assert util[s, j] == pytest.approx(1 - d / math.sqrt(named.sum()), abs=1e-12)


def test_choose_handles_targets_off_the_grid() -> None:
    bench = synthetic_benchmark(20, (2, 4), 3, 5, seed=3)
    pred = noisy_predictions(bench, 0.2, 3)
    t = np.array([[0.123456789, np.nan, 0.987654321]])
    got = choose(bench, pred, t)
    want = chosen_loop(bench, pred, TargetSet("t", bench.attributes, t))
    np.testing.assert_array_equal(got, want)


# ---- group figures equal a plain computation -------------------------------------------------

def _plain_group_figures(bench: Benchmark, pred: np.ndarray, jury: Jury, cfg: JuryConfig
                         ) -> tuple[np.ndarray, np.ndarray]:
    """(means (G+1, M), accuracy (G+1,)) by looping over groups and scenarios."""
    keep = ~jury.empty
    _, correct, util = juror_outcomes(bench, pred, jury.values[keep])
    g_of, w = jury.group_of[keep], jury.weights[keep]
    wu = util if cfg.utility == "distance" else (correct != 0).astype(float)
    counted = (correct >= 0).sum(axis=0)
    acc = np.where(counted > 0, 100 * (correct == 1).sum(axis=0) / np.maximum(counted, 1),
                   np.nan)
    means, accuracy = [], []
    for g in [*range(jury.n_groups), -1]:
        sel = np.ones(len(w), bool) if g == -1 else g_of == g
        ws = w[sel]
        rows = []
        for s in range(bench.n_scenarios):
            u_s, v_s = wu[s, sel], util[s, sel]
            rows.append([np.sum(ws * v_s) / ws.sum(), np.sum(ws * (u_s > cfg.tau)) / ws.sum(),
                         *(_plain_welfare(u_s, ws, a) for a in cfg.alphas)])
        means.append(np.mean(rows, axis=0))
        ok = ~np.isnan(acc[sel])
        accuracy.append(np.sum(acc[sel][ok] * ws[ok]) / ws[ok].sum())
    return np.array(means), np.array(accuracy)


@pytest.mark.parametrize("utility", ["distance", "indicator"])
def test_group_figures_equal_a_plain_loop(utility: str) -> None:
    bench = synthetic_benchmark(25, (2, 4), 5, 5, seed=11)
    pred = noisy_predictions(bench, 0.25, 11)
    jury = _jury(bench, (7, 12, 5), seed=3, empty=2)
    cfg = JuryConfig(alphas=ALPHAS, tau=0.6, utility=utility, n_bootstrap=0)  # type: ignore[arg-type]
    result = evaluate_jury(bench, pred, jury, cfg)
    means, accuracy = _plain_group_figures(bench, pred, jury, cfg)
    np.testing.assert_allclose(result.means, means, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(result.accuracy, accuracy, rtol=1e-12)
    assert result.names == ("g0", "g1", "g2", "ALL")
    assert list(result.n_excluded) == [2, 0, 0, 2]
    assert list(result.n_jurors) == [5, 12, 5, 22]


def test_small_memory_budget_gives_the_same_figures() -> None:
    bench = synthetic_benchmark(40, (2, 4), 4, 5, seed=2)
    pred = noisy_predictions(bench, 0.25, 2)
    jury = _jury(bench, (30, 30), seed=4)
    big = evaluate_jury(bench, pred, jury, JuryConfig(n_bootstrap=50))
    tiny = evaluate_jury(bench, pred, jury, JuryConfig(n_bootstrap=50, memory_mb=0.001))
    # Equal up to the last bit of BLAS sums, which depend on the block shape.
    np.testing.assert_allclose(big.per_scenario, tiny.per_scenario, rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(big.ci, tiny.ci, rtol=1e-14, atol=1e-15)


def test_per_juror_figures_map_back_through_shared_targets() -> None:
    bench = synthetic_benchmark(20, (2, 3), 3, 5, seed=8)
    pred = noisy_predictions(bench, 0.25, 8)
    vals = np.array([[1, np.nan, 0], [np.nan] * 3, [1, np.nan, 0], [0.25, 1, np.nan]])
    jury = make_jury(bench.attributes, [("g", vals, np.ones(4), list("abcd"))])
    r = evaluate_jury(bench, pred, jury, JuryConfig(n_bootstrap=0))
    _, correct, util = juror_outcomes(bench, pred, vals[[0, 3]])
    assert r.juror_closeness[0] == r.juror_closeness[2] == pytest.approx(util[:, 0].mean())
    assert np.isnan(r.juror_closeness[1]) and np.isnan(r.juror_accuracy[1])
    counted = (correct[:, 1] >= 0).sum()
    assert r.juror_accuracy[3] == pytest.approx(100 * (correct[:, 1] == 1).sum() / counted)


def test_gaps_name_the_best_and_worst_group() -> None:
    bench = synthetic_benchmark(30, (2, 4), 4, 5, seed=9)
    pred = noisy_predictions(bench, 0.2, 9)
    jury = _jury(bench, (10, 10, 10), seed=6)
    r = evaluate_jury(bench, pred, jury, JuryConfig(n_bootstrap=0))
    gaps = r.gaps()
    col = r.metrics.index("welfare_ainf")
    vals = r.means[:-1, col]
    assert gaps["welfare_ainf"]["best"] == r.names[int(np.argmax(vals))]
    assert gaps["welfare_ainf"]["worst"] == r.names[int(np.argmin(vals))]
    assert gaps["welfare_ainf"]["gap"] == pytest.approx(vals.max() - vals.min())
    assert gaps["accuracy"]["gap"] >= 0
    row = r.rows()[0]
    assert row["group"] == "g0" and row["welfare_a1"] == pytest.approx(r.means[0, 2 + 2])


def test_bootstrap_interval_is_seeded_and_brackets_the_mean() -> None:
    rng = np.random.default_rng(0)
    per = rng.uniform(0, 1, (200, 3))
    per[:, 2] = np.nan
    a = bootstrap_ci(per, 500, 0.95, seed=1)
    b = bootstrap_ci(per, 500, 0.95, seed=1)
    c = bootstrap_ci(per, 500, 0.95, seed=2)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a[:2], c[:2])
    means = per[:, :2].mean(axis=0)
    assert np.all(a[:2, 0] < means) and np.all(means < a[:2, 1])
    # ~ mean ± 1.96 σ/√n for a uniform: the width is about 2·1.96·0.289/√200 ≈ 0.08.
    assert np.all(np.abs((a[:2, 1] - a[:2, 0]) - 0.08) < 0.02)
    assert np.all(np.isnan(a[2]))
    assert np.all(np.isnan(bootstrap_ci(per, 0, 0.95, 0)))


def test_a_group_of_empty_targets_is_reported_undefined() -> None:
    bench = synthetic_benchmark(10, (2, 3), 3, 5, seed=1)
    pred = noisy_predictions(bench)
    empty = np.full((2, 3), np.nan)
    one = np.array([[1.0, np.nan, np.nan]])
    jury = make_jury(bench.attributes, [("e", empty, np.ones(2), ["a", "b"]),
                                        ("f", one, np.ones(1), ["c"])])
    r = evaluate_jury(bench, pred, jury, JuryConfig(n_bootstrap=10))
    rows = r.rows()
    assert rows[0]["n_excluded"] == 2 and rows[0]["n_jurors"] == 0
    assert all(rows[0][k] is None for k in ("accuracy", "closeness", "welfare_a1", "threshold"))
    # The whole jury is the one defined juror.
    assert rows[2]["closeness"] == rows[1]["closeness"] is not None
    assert r.gaps()["closeness"]["best"] == "f"
    # the former column name repeats the closeness while callers move
    assert all(row["utility" + e] == row["closeness" + e] for row in rows for e in ("", "_lo", "_hi"))
    assert r.gaps()["utility"] == r.gaps()["closeness"]
    sel = select_welfare_optimal(bench, pred, jury, (0.0,)).rows()
    assert sel[0]["oracle"] is None and sel[0]["optimal_hit"] is None
    alone = make_jury(bench.attributes, [("e", empty, np.ones(2), ["a", "b"])])
    assert evaluate_jury(bench, pred, alone).rows()[-1]["welfare_ainf"] is None


def test_mismatched_inputs_are_rejected() -> None:
    bench = synthetic_benchmark(5, (2, 3), 3, 5, seed=1)
    pred = noisy_predictions(bench)
    other = make_jury(("x", "y", "z"), [("g", np.ones((1, 3)), np.ones(1), ["a"])])
    with pytest.raises(InputError, match="jury is over"):
        evaluate_jury(bench, pred, other)
    jury = make_jury(bench.attributes, [("g", np.ones((1, 3)), np.ones(1), ["a"])])
    bad = pred.copy()
    bad[3, 1] = np.nan
    with pytest.raises(InputError, match="not finite"):
        evaluate_jury(bench, bad, jury)
    with pytest.raises(InputError, match="alpha"):
        JuryConfig(alphas=(-1.0,))
    with pytest.raises(InputError, match="utility"):
        JuryConfig(utility="happiness")  # type: ignore[arg-type]


# ---- welfare-optimal selection equals brute force -----------------------------------------------

def _brute_selection(bench: Benchmark, pred: np.ndarray, jury: Jury, alphas: tuple[float, ...]
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    keep = ~jury.empty
    vals, w, g_of = jury.values[keep], jury.weights[keep], jury.group_of[keep]

    def util(x: np.ndarray, t: np.ndarray) -> float:
        named = ~np.isnan(t)
        d = math.sqrt(sum((float(x[a]) - float(t[a])) ** 2 for a in np.flatnonzero(named)))
        return max(0.0, 1 - d / math.sqrt(named.sum()))

    n_g1 = jury.n_groups + 1
    chosen = np.zeros((n_g1, len(alphas), bench.n_scenarios), dtype=np.int64)
    achieved = np.zeros(chosen.shape)
    oracle = np.zeros(chosen.shape)
    for g in range(n_g1):
        sel = np.ones(len(w), bool) if g == jury.n_groups else g_of == g
        if not sel.any():  # only empty targets: welfare undefined, first response
            achieved[g], oracle[g] = np.nan, np.nan
            continue
        for s in range(bench.n_scenarios):
            lo, hi = bench.offsets[s], bench.offsets[s + 1]
            for k, a in enumerate(alphas):
                wp = [_plain_welfare(np.array([util(pred[r], t) for t in vals[sel]]), w[sel], a)
                      for r in range(lo, hi)]
                wt = [_plain_welfare(np.array([util(bench.labels[r], t) for t in vals[sel]]),
                                     w[sel], a) for r in range(lo, hi)]
                best = max(wp)
                pick = next(i for i, x in enumerate(wp) if x >= best - 1e-9)
                chosen[g, k, s], achieved[g, k, s], oracle[g, k, s] = pick, wt[pick], max(wt)
    return chosen, achieved, oracle


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000), st.integers(1, 3), st.integers(2, 6))
def test_welfare_optimal_selection_equals_brute_force(seed: int, n_groups: int,
                                                      n_jurors: int) -> None:
    bench = synthetic_benchmark(6, (2, 4), 3, 5, seed=seed)
    pred = noisy_predictions(bench, 0.3, seed)
    jury = _jury(bench, tuple([n_jurors] * n_groups), seed=seed)
    alphas = (0.0, 0.5, 1.0, 3.0, math.inf)
    got = select_welfare_optimal(bench, pred, jury, alphas)
    chosen, achieved, oracle = _brute_selection(bench, pred, jury, alphas)
    np.testing.assert_array_equal(got.optimal, chosen)
    np.testing.assert_allclose(got.achieved, achieved, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(got.oracle, oracle, rtol=1e-9, atol=1e-12)
    defined = ~np.isnan(got.oracle)
    assert np.all(got.achieved[defined] <= got.oracle[defined] + 1e-12)
    assert np.all(got.achieved_collective[defined] <= got.oracle[defined] + 1e-12)


def test_collective_choice_is_the_choice_for_the_mean_target() -> None:
    bench = synthetic_benchmark(15, (2, 4), 3, 5, seed=21)
    pred = noisy_predictions(bench, 0.2, 21)
    jury = _jury(bench, (6, 4), seed=2)
    got = select_welfare_optimal(bench, pred, jury, (0.0,))
    mean_targets = jury.collective_targets().values
    np.testing.assert_array_equal(got.collective, choose(bench, pred, mean_targets).T)
    rows = got.rows()
    assert {r["group"] for r in rows} == {"g0", "g1", "ALL"}
    assert all(0 <= r["optimal_hit"] <= 1 for r in rows)


def test_a_single_juror_welfare_optimum_is_their_own_choice() -> None:
    bench = synthetic_benchmark(25, (2, 4), 4, 5, seed=13)
    pred = noisy_predictions(bench, 0.2, 13)
    t = np.array([[1.0, np.nan, 0.0, 0.25]])
    jury = make_jury(bench.attributes, [("solo", t, np.ones(1), ["a"])])
    got = select_welfare_optimal(bench, pred, jury, ALPHAS)
    own = choose(bench, pred, t)[:, 0]
    # Utility falls as distance grows, so every α picks the response closest to the target.
    for k in range(len(ALPHAS)):
        np.testing.assert_array_equal(got.optimal[0, k], own)


def test_best_within_takes_the_lowest_index_among_near_ties() -> None:
    offsets = np.array([0, 3, 5, 7])
    v = np.array([0.5, 0.7, 0.7 + 5e-10, 0.2, 0.1, np.nan, np.nan])
    np.testing.assert_array_equal(best_within(v, offsets, 1e-9), [1, 0, 0])
    np.testing.assert_array_equal(best_within(v, offsets, 0.0), [2, 0, 0])


def test_utility_at_the_largest_distance_is_zero_not_below() -> None:
    # Labels at 0 on every attribute, target at 1: d = d_max, where rounding can overshoot.
    from pluralign.engine.data.benchmark import make_benchmark
    from pluralign.schemas.records import Scenario

    attrs = ("a", "b", "c", "d", "e", "f")
    zero, one = dict.fromkeys(attrs, 0.0), dict.fromkeys(attrs, 1.0)
    sc = [Scenario(id=f"s{i}", prompt="p", responses=("x", "y"), labels=(zero, one))
          for i in range(3)]
    bench = make_benchmark("t", "eval", attrs, (0.0, 0.17, 0.33, 0.5, 0.67, 0.83, 1.0), sc)
    pred = np.array([[0.9] * 6, [0.1] * 6] * 3)  # picks the all-zero response
    for k in range(1, 7):  # in hundredths, k = 6 overshoots: 1 - sqrt(6e4)/100/sqrt(6) < 0
        t = np.full((1, 6), np.nan)
        t[0, :k] = 1.0
        _, _, util = juror_outcomes(bench, pred, t)
        assert np.all(util == 0.0)
        jury = make_jury(attrs, [("g", t, np.ones(1), ["a"])])
        r = evaluate_jury(bench, pred, jury, JuryConfig(n_bootstrap=0))
        assert r.rows()[0]["welfare_a1"] == 0.0
