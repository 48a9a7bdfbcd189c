"""The fast re-alignment must equal the plain loop oracle exactly, for any predictions."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pluralign.engine.align import realign as align_mod
from pluralign.engine.align.align_loop import chosen_loop, realign_loop
from pluralign.engine.align.realign import (
    LabelIndex,
    chosen_responses,
    realign,
    realign_few,
)
from pluralign.engine.data.benchmark import make_benchmark
from pluralign.engine.data.synthetic import grid_levels, noisy_predictions, synthetic_benchmark
from pluralign.engine.data.targets import TargetSet, all_targets, from_dicts, load_target_files
from pluralign.engine.errors import InputError
from pluralign.schemas.records import Scenario


def _assert_same(bench, pred, targets) -> None:
    fast = realign(bench, pred, targets, weighted=True)
    counted, correct, weighted = realign_loop(bench, pred, targets)
    np.testing.assert_array_equal(fast.counted, counted)
    np.testing.assert_array_equal(fast.correct, correct)
    assert fast.weighted is not None and fast.closeness is not None
    # Bit-for-bit, NaN where nothing is counted: the published score and the closeness.
    assert np.array_equal(fast.weighted, weighted, equal_nan=True)
    _, _, closeness = realign_loop(bench, pred, targets, closeness=True)
    assert np.array_equal(fast.closeness, closeness, equal_nan=True)
    np.testing.assert_array_equal(chosen_responses(bench, pred, targets),
                                  chosen_loop(bench, pred, targets))
    # The streaming layout (nothing of size scenarios x targets kept) gives the same bits.
    streaming = LabelIndex(bench, targets, resident=False)
    again = realign(bench, pred, targets, weighted=True, index=streaming)
    np.testing.assert_array_equal(again.counted, counted)
    np.testing.assert_array_equal(again.correct, correct)
    assert np.array_equal(again.weighted, weighted, equal_nan=True)
    np.testing.assert_array_equal(chosen_responses(bench, pred, targets, index=streaming),
                                  chosen_loop(bench, pred, targets))
    # The few-targets path (the exact rule alone, no index) gives the same bits too.
    few, chosen = realign_few(bench, pred, targets, weighted=True, keep_chosen=True)
    np.testing.assert_array_equal(few.counted, counted)
    np.testing.assert_array_equal(few.correct, correct)
    assert np.array_equal(few.weighted, weighted, equal_nan=True)
    assert np.array_equal(few.closeness, closeness, equal_nan=True)
    np.testing.assert_array_equal(chosen, chosen_loop(bench, pred, targets))
    plain, none = realign_few(bench, pred, targets)
    assert none is None and plain.weighted is None and plain.closeness is None
    np.testing.assert_array_equal(plain.correct, correct)


def _predictions(kind: str, bench, rng: np.random.Generator) -> np.ndarray:
    shape = bench.labels.shape
    if kind == "continuous":
        return rng.random(shape)
    if kind == "rounded":  # exact ties everywhere: every comparison goes to the exact rule
        levels = np.array(bench.levels)
        return levels[rng.integers(0, len(levels), shape)]
    if kind == "constant":
        return np.full(shape, float(rng.choice([0.0, 0.5, 1.0])))
    if kind == "clipped":
        return np.clip(bench.labels + rng.normal(0, 0.6, shape), 0.0, 1.0)
    if kind == "near-tie":  # gaps around the 1e-9 tolerance
        base = np.repeat(rng.random((bench.n_scenarios, shape[1])), np.diff(bench.offsets), 0)
        return base + rng.choice([0.0, 5e-10, 1e-9, 2e-9, 1e-7], size=shape)
    raise AssertionError(kind)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n_scenarios=st.integers(1, 10),
    responses=st.tuples(st.integers(2, 3), st.integers(0, 3)),
    n_attributes=st.integers(1, 4),
    n_levels=st.integers(2, 7),
    pred_kind=st.sampled_from(["continuous", "rounded", "constant", "clipped", "near-tie"]),
    target_kind=st.sampled_from(["all", "subset", "continuous"]),
    seed=st.integers(0, 2**16),
)
def test_fast_path_equals_loop_oracle(
    n_scenarios, responses, n_attributes, n_levels, pred_kind, target_kind, seed
) -> None:
    lo, extra = responses
    bench = synthetic_benchmark(n_scenarios, (lo, lo + extra), n_attributes, n_levels, seed=seed)
    rng = np.random.default_rng(seed)
    pred = _predictions(pred_kind, bench, rng)
    grid = all_targets(bench.attributes, bench.levels)
    if target_kind == "all":
        targets = grid
    elif target_kind == "subset":
        targets = grid.take(rng.choice(len(grid), size=min(len(grid), 7), replace=False))
    else:  # off-grid values: exercises the per-target layout and a finer integer grid
        values = np.round(rng.random((5, n_attributes)), 3)
        values[rng.random(values.shape) < 0.3] = np.nan
        targets = TargetSet("random", bench.attributes, values)
    _assert_same(bench, pred, targets)


def test_chunked_equals_unchunked(monkeypatch: pytest.MonkeyPatch) -> None:
    bench = synthetic_benchmark(30, (2, 4), 4, 5, seed=3)
    pred = noisy_predictions(bench, 0.3, seed=3)
    targets = all_targets(bench.attributes, bench.levels)
    whole = realign(bench, pred, targets, weighted=True)
    monkeypatch.setattr(align_mod, "_CHUNK_BYTES", 1)  # one first-half row per chunk
    chunked = realign(bench, pred, targets, weighted=True, index=LabelIndex(bench, targets))
    np.testing.assert_array_equal(whole.correct, chunked.correct)
    assert np.array_equal(whole.weighted, chunked.weighted, equal_nan=True)


def test_memory_budget_blocks_equal_resident_bit_for_bit() -> None:
    # 1 MiB: the label side does not fit, so scenarios and first-half rows both split in blocks.
    bench = synthetic_benchmark(400, (2, 4), 4, 6, seed=11)
    pred = noisy_predictions(bench, 0.3, seed=11)
    targets = all_targets(bench.attributes, bench.levels)
    small = LabelIndex(bench, targets, memory_budget=2**20)
    assert not small.resident and small.masks is None
    blocks = small.blocks()
    assert len({(b.s0, b.s1) for b in blocks}) > 1 and len({b.a0 for b in blocks}) > 1
    whole = realign(bench, pred, targets, weighted=True, index=LabelIndex(bench, targets))
    part = realign(bench, pred, targets, weighted=True, index=small)
    np.testing.assert_array_equal(whole.counted, part.counted)
    np.testing.assert_array_equal(whole.correct, part.correct)
    assert np.array_equal(whole.weighted, part.weighted, equal_nan=True)
    assert np.array_equal(whole.closeness, part.closeness, equal_nan=True)
    pick = np.random.default_rng(1).choice(len(targets), size=12, replace=False)
    counted, correct, weighted = realign_loop(bench, pred, targets.take(pick))
    np.testing.assert_array_equal(part.counted[pick], counted)
    np.testing.assert_array_equal(part.correct[pick], correct)
    assert np.array_equal(part.weighted[pick], weighted, equal_nan=True)


def test_cell_sums_of_row_ranges_combine_exactly() -> None:
    from pluralign.engine.align.realign import combine, realign_cells

    bench = synthetic_benchmark(50, (2, 4), 5, 5, seed=4)
    pred = noisy_predictions(bench, 0.3, seed=4)
    targets = all_targets(bench.attributes, bench.levels)
    index = LabelIndex(bench, targets)
    n1 = index.factor.n1
    cuts = [0, 1, n1 // 2, n1]
    parts = [realign_cells(index, pred, weighted=True, rows=(a, b))
             for a, b in itertools.pairwise(cuts)]
    joined = combine(index, parts[::-1], weighted=True)  # any order
    whole = realign(bench, pred, targets, weighted=True, index=index)
    np.testing.assert_array_equal(joined.correct, whole.correct)
    np.testing.assert_array_equal(joined.counted, whole.counted)
    assert np.array_equal(joined.weighted, whole.weighted, equal_nan=True)
    with pytest.raises(InputError, match="cover"):
        combine(index, parts[1:], weighted=True)


def test_published_weighted_score_by_hand() -> None:
    # One scenario, labels 0, .5, 1 on one attribute, target 0: d = 0, .5, 1 and d_max = 1.
    sc = Scenario("q", "p", ("a", "b", "c"), ({"x": 0.0}, {"x": 0.5}, {"x": 1.0}))
    bench = make_benchmark("hand", "t", ("x",), grid_levels(3), [sc])
    target = from_dicts("t", ("x",), [{"x": 0.0}])
    pred = np.array([[0.9], [0.05], [0.6]])  # picks the middle response
    res = realign(bench, pred, target, weighted=True)
    assert res.weighted is not None and res.closeness is not None
    assert res.weighted[0] == pytest.approx(50.0)
    assert res.closeness[0] == pytest.approx(50.0)
    # Two attributes: labels (0, 0) and (.5, .5), target (0, 0); picking the far one gives 0
    # by the published rule (it is the farthest) but 1 - .707/1.414 = 50 by sqrt(k).
    sc2 = Scenario("q", "p", ("a", "b"), ({"x": 0.0, "y": 0.0}, {"x": 0.5, "y": 0.5}))
    bench2 = make_benchmark("hand", "t", ("x", "y"), grid_levels(3), [sc2])
    t2 = from_dicts("t", ("x", "y"), [{"x": 0.0, "y": 0.0}])
    res2 = realign(bench2, np.array([[1.0, 1.0], [0.5, 0.5]]), t2, weighted=True)
    assert res2.weighted is not None and res2.closeness is not None
    assert res2.weighted[0] == 0.0
    assert res2.closeness[0] == pytest.approx(50.0)


def test_memory_budget_parsing() -> None:
    from pluralign.engine.align.realign import parse_memory_budget

    assert parse_memory_budget("512M") == 512 * 2**20
    assert parse_memory_budget("2G") == 2 * 2**30
    assert parse_memory_budget("3000000") == 3_000_000
    assert parse_memory_budget("50%") > parse_memory_budget(None)
    for bad in ("lots", "0%", "10"):
        with pytest.raises(InputError, match="memory"):
            parse_memory_budget(bad)


def test_mic_shaped_all_targets_equal_loop_on_sample() -> None:
    bench = synthetic_benchmark()  # 336 scenarios, 2-4 responses, 6 attributes, 7 levels
    pred = noisy_predictions(bench, 0.25, seed=1)
    targets = all_targets(bench.attributes, bench.levels)
    assert len(targets) == 117_649
    fast = realign(bench, pred, targets)
    sample = np.random.default_rng(0).choice(len(targets), size=40, replace=False)
    counted, correct, _ = realign_loop(bench, pred, targets.take(sample))
    np.testing.assert_array_equal(fast.counted[sample], counted)
    np.testing.assert_array_equal(fast.correct[sample], correct)


def test_empty_target_is_undefined_not_zero() -> None:
    bench = synthetic_benchmark(5, (2, 2), 2, 5, seed=0)
    targets = all_targets(bench.attributes, bench.levels)
    result = realign(bench, bench.labels, targets)
    empty = [i for i in range(len(targets)) if targets.target(i) == {}]
    assert len(empty) == 1
    assert result.counted[empty[0]] == 0
    assert np.isnan(result.accuracy[empty[0]])
    defined = np.delete(result.accuracy, empty)
    assert np.all(defined[~np.isnan(defined)] == 100.0)  # oracle predictions


def test_mic_hundredths_tie_decided_exactly() -> None:
    # For target (0, .17), labels (0, .5) and (.33, .17) are both 33 hundredths away, but the
    # float norms differ in the last bit (0.32999999999999996 vs 0.33). Labels must compare in
    # exact hundredths, so this is a tie on every response and the scenario is not counted.
    a, b = (0.0, 0.5), (0.33, 0.17)
    assert np.linalg.norm(np.subtract(a, (0, 0.17))) != np.linalg.norm(np.subtract(b, (0, 0.17)))
    sc = Scenario("q", "p", ("a", "b"), ({"x": a[0], "y": a[1]}, {"x": b[0], "y": b[1]}))
    bench = make_benchmark("mic-like", "t", ("x", "y"), grid_levels(7), [sc])
    target = from_dicts("t", ("x", "y"), [{"x": 0.0, "y": 0.17}])
    result = realign(bench, np.array([[0.0, 0.0], [1.0, 1.0]]), target)
    assert result.counted[0] == 0
    assert realign_loop(bench, np.array([[0.0, 0.0], [1.0, 1.0]]), target)[0][0] == 0


def test_missing_prediction_names_scenario_and_attribute() -> None:
    bench = synthetic_benchmark(3, (2, 2), 2, 5, seed=0)
    pred = bench.labels.copy()
    pred[3, 1] = np.nan
    with pytest.raises(InputError) as err:
        realign(bench, pred, all_targets(bench.attributes, bench.levels))
    msg = str(err.value)
    assert bench.scenarios[1].id in msg and "a1" in msg and "response 1" in msg


def test_helpsteer2_equals_loop_and_oracle_is_perfect(shared_data) -> None:
    from pluralign.engine.data.sources import load_benchmark

    bench = load_benchmark("helpsteer2", "eval", str(shared_data))
    targets = all_targets(bench.attributes, bench.levels)
    oracle = realign(bench, bench.labels, targets)
    defined = ~np.isnan(oracle.accuracy)
    assert defined.sum() == 3124
    assert np.all(oracle.accuracy[defined] == 100.0)
    rng = np.random.default_rng(7)
    pred = np.clip(bench.labels + rng.normal(0, 0.3, bench.labels.shape), 0, 1)
    sampled = load_target_files([shared_data / "alignment_targets" / "sampled_helpsteer2"],
                                bench.attributes)
    _assert_same(bench, pred, sampled)
    fast = realign(bench, pred, targets)
    pick = rng.choice(len(targets), size=25, replace=False)
    counted, correct, _ = realign_loop(bench, pred, targets.take(pick))
    np.testing.assert_array_equal(fast.counted[pick], counted)
    np.testing.assert_array_equal(fast.correct[pick], correct)


def test_helpsteer2_labels_bit_for_bit_with_float_norm(shared_data) -> None:
    """Quarters are exact in binary: the reference's float norm equality gives the same sets."""
    from pluralign.engine.data.sources import load_benchmark

    bench = load_benchmark("helpsteer2", "eval", str(shared_data))
    targets = load_target_files([shared_data / "alignment_targets" / "sampled_helpsteer2"],
                                bench.attributes)
    index = LabelIndex(bench, targets)
    for t in range(len(targets)):
        tgt = json.loads(targets.json(t))
        cols = [bench.attributes.index(a) for a in tgt]
        vec = np.array(list(tgt.values()))
        for s in range(0, bench.n_scenarios, 7):
            lo, hi = bench.offsets[s], bench.offsets[s + 1]
            d = [np.linalg.norm(bench.labels[r, cols] - vec) for r in range(lo, hi)]
            ref = 0 if len(set(d)) == 1 else sum(1 << i for i, x in enumerate(d) if x == min(d))
            assert index.masks[s, index.factor.cell[t]] == ref


def test_accuracy_from_choices_equals_realign_of_the_same_choices() -> None:
    bench = synthetic_benchmark(25, (2, 4), 3, 5, seed=5)
    pred = noisy_predictions(bench, 0.3, seed=5)
    targets = all_targets(bench.attributes, bench.levels)
    from pluralign.engine.align.realign import accuracy_from_choices

    chosen = chosen_responses(bench, pred, targets)
    direct = realign(bench, pred, targets)
    via = accuracy_from_choices(bench, chosen, targets)
    np.testing.assert_array_equal(via.correct, direct.correct)
    np.testing.assert_array_equal(via.counted, direct.counted)
    chosen = chosen.astype(np.int64)
    chosen[0, :] = -1  # no answer for the first scenario: left out, not counted wrong
    missing = accuracy_from_choices(bench, chosen, targets)
    assert np.all(missing.counted <= direct.counted)
    with pytest.raises(InputError, match="does not have"):
        accuracy_from_choices(bench, np.full_like(chosen, 9), targets)


def test_helpsteer2_weighted_score_as_the_authors_scorer_computes_it(shared_data) -> None:
    """Their score.py: per counted scenario (1 - norm(selected)/max norm) * 100, float norms."""
    from pluralign.engine.data.sources import load_benchmark

    bench = load_benchmark("helpsteer2", "eval", str(shared_data))
    targets = load_target_files([shared_data / "alignment_targets" / "sampled_helpsteer2"],
                                bench.attributes)
    rng = np.random.default_rng(3)
    pred = np.clip(bench.labels + rng.normal(0, 0.3, bench.labels.shape), 0, 1)
    fast = realign(bench, pred, targets, weighted=True)
    chosen = chosen_responses(bench, pred, targets)
    for t in range(0, len(targets), 5):
        tgt = json.loads(targets.json(t))
        cols = [bench.attributes.index(a) for a in tgt]
        vec = np.array(list(tgt.values()))
        scores = []
        for s in range(bench.n_scenarios):
            lo, hi = bench.offsets[s], bench.offsets[s + 1]
            d = [float(np.linalg.norm(bench.labels[r, cols] - vec)) for r in range(lo, hi)]
            if min(d) == max(d):
                continue
            scores.append((1 - d[chosen[s, t]] / max(d)) * 100)
        assert fast.weighted[t] == pytest.approx(np.mean(scores), rel=1e-12)


def test_parallel_and_serial_kernels_keep_separate_caches() -> None:
    """numba keys cache entries by name, line and signature only: the parallel and serial
    builds of a kernel need names of their own, or one can load the other's code."""
    from pluralign.engine.align import kernels

    for parallel, serial in ((kernels.choose_cells, kernels.choose_cells_serial),
                             (kernels.label_cells, kernels.label_cells_serial)):
        assert parallel.targetoptions.get("parallel") and not serial.targetoptions.get("parallel")
        assert parallel.py_func.__qualname__ != serial.py_func.__qualname__
        assert parallel.py_func.__code__ is serial.py_func.__code__  # one body, same arithmetic


def test_few_targets_path_equals_index_path_on_helpsteer2(shared_data) -> None:
    """realign_few (the service's path for a few targets) equals realign through a label
    index bit for bit on every HelpSteer2 target, weighted scores and choices included."""
    from pluralign.engine.data.sources import load_benchmark

    bench = load_benchmark("helpsteer2", "eval", str(shared_data))
    targets = all_targets(bench.attributes, bench.levels)
    rng = np.random.default_rng(11)
    pred = np.clip(bench.labels + rng.normal(0, 0.3, bench.labels.shape), 0, 1)
    pred[::7] = np.round(pred[::7] * 4) / 4  # exact predicted ties too
    fast = realign(bench, pred, targets, weighted=True)
    few, _ = realign_few(bench, pred, targets, weighted=True)
    np.testing.assert_array_equal(few.counted, fast.counted)
    np.testing.assert_array_equal(few.correct, fast.correct)
    assert np.array_equal(few.weighted, fast.weighted, equal_nan=True)
    assert np.array_equal(few.closeness, fast.closeness, equal_nan=True)
    pick = targets.take(rng.choice(len(targets), size=12, replace=False))
    _, chosen = realign_few(bench, pred, pick, keep_chosen=True)
    np.testing.assert_array_equal(chosen, chosen_responses(bench, pred, pick))


def test_few_targets_path_refuses_as_the_index_path() -> None:
    bench = synthetic_benchmark(3, (2, 2), 2, 5, seed=0)
    pred = bench.labels.copy()
    pred[3, 1] = np.inf
    with pytest.raises(InputError) as err:
        realign_few(bench, pred, all_targets(bench.attributes, bench.levels))
    assert bench.scenarios[1].id in str(err.value) and "a1" in str(err.value)
    other = from_dicts("x", ("z0", "z1"), [{"z0": 1.0}])
    with pytest.raises(InputError, match="targets are over"):
        realign_few(bench, bench.labels, other)
