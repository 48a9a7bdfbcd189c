"""Metrics against direct computations."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from pluralign.engine.align.metrics import implicit_bias, regression_quality, summarize
from pluralign.engine.align.results import current_names
from pluralign.engine.data.synthetic import noisy_predictions, synthetic_benchmark


def test_summary_skips_undefined_and_groups_by_attribute_count() -> None:
    acc = np.array([50.0, np.nan, 70.0, 100.0, 40.0])
    n_attr = np.array([1, 0, 1, 2, 2])
    s = summarize("x", acc, n_attr)
    assert (s.n_targets, s.n_defined) == (5, 4)
    assert s.mean == pytest.approx(65.0)
    assert s.std == pytest.approx(np.std([50, 70, 100, 40], ddof=1))  # the sample std
    assert s.by_n_attributes == {1: (60.0, 10.0 * np.sqrt(2), 2), 2: (70.0, 30.0 * np.sqrt(2), 2)}
    assert s.to_json()["std_ddof"] == 1


def test_a_single_target_has_no_spread() -> None:
    s = summarize("high", np.array([61.5]), np.array([3]))
    assert (s.mean, s.std, s.by_n_attributes) == (61.5, 0.0, {3: (61.5, 0.0, 1)})
    assert 0 not in s.by_n_attributes


def test_implicit_bias_is_mean_label_of_chosen() -> None:
    bench = synthetic_benchmark(6, (2, 3), 3, 5, seed=2)
    chosen = np.array([1, 0, 1, 0, 1, 1])
    bias = implicit_bias(bench, chosen)
    rows = [bench.offsets[s] + c for s, c in enumerate(chosen)]
    assert bias is not None
    assert list(bias.values()) == pytest.approx(bench.labels[rows].mean(axis=0).tolist())


def test_implicit_bias_leaves_out_unanswered_scenarios() -> None:
    bench = synthetic_benchmark(4, (2, 3), 3, 5, seed=2)
    chosen = np.array([1, -1, 0, -1])
    rows = [bench.offsets[0] + 1, bench.offsets[2] + 0]
    bias = implicit_bias(bench, chosen)
    assert bias is not None and set(bias) == set(bench.attributes)
    assert list(bias.values()) == pytest.approx(bench.labels[rows].mean(axis=0).tolist())
    assert implicit_bias(bench, np.full(4, -1)) is None


def test_regression_quality_matches_scipy() -> None:
    bench = synthetic_benchmark(40, (2, 2), 2, 5, seed=1)
    pred = noisy_predictions(bench, 0.2, seed=1)
    q = regression_quality(bench, pred)
    for j, a in enumerate(bench.attributes):
        assert q[a]["pearson_r"] == pytest.approx(stats.pearsonr(bench.labels[:, j],
                                                                 pred[:, j])[0])
        assert q[a]["mse"] == pytest.approx(np.mean((pred[:, j] - bench.labels[:, j]) ** 2))
    const = regression_quality(bench, np.full_like(pred, 0.5))
    assert np.isnan(const[bench.attributes[0]]["pearson_r"])


def test_summary_carries_the_weighted_score_and_the_closeness() -> None:
    acc = np.array([50.0, np.nan, 70.0])
    s = summarize("x", acc, np.array([1, 0, 2]), np.array([40.0, np.nan, 60.0]),
                  np.array([70.0, np.nan, 90.0]))
    assert s.weighted_mean == pytest.approx(50.0)
    assert s.closeness_mean == pytest.approx(80.0)
    assert s.to_json()["closeness_mean"] == pytest.approx(80.0)


def test_former_column_names_read_as_the_current_ones() -> None:
    old = {"name": "all", "weighted_sqrtk_mean": 80.0, "utility": 0.5, "utility_lo": 0.4}
    assert current_names(old) == {"name": "all", "closeness_mean": 80.0, "closeness": 0.5,
                                  "closeness_lo": 0.4}
    both = {"closeness": 0.7, "utility": 0.7}
    assert current_names(both) == {"closeness": 0.7}
