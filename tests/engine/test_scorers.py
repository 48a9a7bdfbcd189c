"""Scorers that need no model: registry, oracle/random/constant, imported predictions, ridge,
and scoring through the cache."""

from __future__ import annotations

import json
from functools import cached_property

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import pluralign.engine.scorers as scorers
from pluralign.engine.align.realign import realign
from pluralign.engine.data.benchmark import Benchmark, make_benchmark
from pluralign.engine.data.synthetic import synthetic_benchmark
from pluralign.engine.data.targets import all_targets
from pluralign.engine.errors import InputError
from pluralign.engine.judges import CHOICE_JUDGES, JUDGE_NAMES, SCORE_JUDGES
from pluralign.engine.judges.comparative import ComparativeJudge
from pluralign.engine.judges.reward import RewardScorer
from pluralign.engine.judges.unaligned import UnalignedJudge
from pluralign.engine.scorers import (
    get_scorer,
    register_scorer,
    registry,
    score_through_cache,
    scorer_class,
)
from pluralign.engine.scorers.ridge import RidgeScorer, RidgeSettings
from pluralign.engine.scorers.simple import OracleScorer, RandomScorer
from pluralign.engine.store.cache import ScoreCache
from pluralign.schemas.records import Scenario

LEVELS = (0.0, 0.25, 0.5, 0.75, 1.0)
SMALL_GRID = RidgeSettings(feature_sets=(("length",), ("length", "shape", "curve")),
                           tfidf_weights=(0.0, 3.0), alphas=(0.1, 10.0, 1e12),
                           level_alphas=(1.0,), max_features=50, folds=3)


def text_benchmark(n: int = 40, seed: int = 0, split: str = "train") -> Benchmark:
    """Responses of random length; ``long`` grows with length, ``noise`` is unrelated."""
    rng = np.random.default_rng(seed)
    words = ["alpha", "beta", "gamma", "delta", "system", "value", "answer", "model"]
    scenarios = []
    for s in range(n):
        k = int(rng.integers(2, 4))
        lengths = rng.integers(3, 120, size=k)
        texts = tuple(" ".join(rng.choice(words, size=int(m))) + "." for m in lengths)
        labels = tuple({"long": LEVELS[min(4, int(m) // 25)], "noise": LEVELS[int(rng.integers(5))]}
                       for m in lengths)
        scenarios.append(Scenario(f"{split}-{s}", f"question {s}?", texts, labels))
    return make_benchmark("texts", split, ("long", "noise"), LEVELS, scenarios)


class NoLabels(Benchmark):
    """A benchmark whose labels cannot be read: proves a scorer never looks at them."""

    @cached_property
    def labels(self) -> np.ndarray:  # type: ignore[override]
        raise AssertionError("the scorer read evaluation labels")


def without_labels(bench: Benchmark) -> Benchmark:
    return NoLabels(bench.name, bench.split, bench.attributes, bench.levels, bench.scenarios)


# ---------------------------------------------------------------------------- registry


def test_registry_names_and_unknown_scorer():
    assert {"oracle", "random", "constant", "predictions", "ridge"} <= set(scorers.scorer_names())
    with pytest.raises(InputError, match=r"unknown scorer 'nope'.*known: .*ridge"):
        get_scorer("nope")
    with pytest.raises(InputError, match="bad options for scorer 'random'"):
        get_scorer("random", colour="red")
    with pytest.raises(InputError, match="bad options for scorer 'oracle'"):
        get_scorer("oracle:extra")


def test_registry_rejects_collisions_and_loads_lazily(monkeypatch):
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    with pytest.raises(ValueError, match="already registered"):
        register_scorer("oracle", "pluralign.engine.scorers.simple:RandomScorer")
    register_scorer("oracle", "pluralign.engine.scorers.simple:OracleScorer")  # the same: a no-op
    register_scorer("lazy", "no_such_module_anywhere:Thing")  # not imported yet
    with pytest.raises(ModuleNotFoundError):
        scorer_class("lazy")
    with pytest.raises(ValueError, match="module:Class"):
        register_scorer("bad", "no-colon")
    with pytest.raises(ValueError, match="already registered"):  # same class, another kind
        register_scorer("oracle", "pluralign.engine.scorers.simple:OracleScorer", kind="reward")


def test_one_registry_lists_every_scorer_by_kind():
    assert scorers.scorer_names() == [
        "constant", "oracle", "predictions", "random", "ridge",
        "comparative-regression", "regression", "prompt-aligned", "unaligned", "reward"]
    assert scorers.scorer_names("llm-score") == list(SCORE_JUDGES)
    assert scorers.scorer_names("llm-choice") == list(CHOICE_JUDGES)
    assert JUDGE_NAMES == SCORE_JUDGES + CHOICE_JUDGES
    assert scorers.scorer_names("reward") == ["reward"]
    with pytest.raises(InputError, match=r"unknown scorer kind 'llm'.*model-free, llm-score"):
        scorers.scorer_names("llm")
    for name in scorers.scorer_names():
        info = scorers.scorer_info(name)
        assert info.name == name and info.description and "\n" not in info.description
        assert info.factory().__name__ in str(info.target)


def test_scorer_info_says_kind_training_and_class():
    ridge, judge = scorers.scorer_info("ridge"), scorers.scorer_info("comparative-regression")
    assert (ridge.kind, ridge.needs_train) == ("model-free", True)
    assert (judge.kind, judge.needs_train) == ("llm-score", True)  # few-shot by default
    assert scorers.scorer_info("regression").needs_train is False
    assert judge.factory() is ComparativeJudge
    assert scorers.scorer_info("unaligned").factory() is UnalignedJudge
    assert scorers.scorer_info("reward").factory() is RewardScorer
    assert scorers.scorer_info("predictions:some/file.parquet").name == "predictions"
    assert scorers.scorer_info("random").needs_train is RandomScorer.needs_train


def test_unknown_scorer_suggests_the_closest_and_lists_all():
    with pytest.raises(InputError, match=r"did you mean 'regression'\? known: constant, .*reward"):
        scorers.scorer_info("regresion")
    with pytest.raises(InputError, match="'regression' is not a model-free scorer"):
        get_scorer("regression")


def test_class_registered_without_needs_train_reads_it_from_the_class(monkeypatch):
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    register_scorer("ridge-again", "pluralign.engine.scorers.ridge:RidgeScorer")
    register_scorer("oracle-again", OracleScorer, description="the labels")
    assert scorers.scorer_info("ridge-again").needs_train is True
    assert scorers.scorer_info("oracle-again").needs_train is False


# ---------------------------------------------------------------------------- simple


def test_oracle_returns_labels():
    bench = synthetic_benchmark(20, (2, 4), 3, 7)
    s = get_scorer("oracle")
    np.testing.assert_array_equal(s.predict(bench), bench.labels)
    assert not s.needs_train and s.identity(bench, None).startswith("oracle#")


def test_random_is_seeded_and_reproducible():
    bench = synthetic_benchmark(20, (2, 4), 3, 7)
    a, b = get_scorer("random", seed=3), get_scorer("random", seed=3)
    np.testing.assert_array_equal(a.predict(bench), b.predict(bench))
    other = get_scorer("random", seed=4)
    assert not np.array_equal(a.predict(bench), other.predict(bench))
    assert a.identity(bench, None) != other.identity(bench, None)
    p = a.predict(bench)
    assert p.shape == bench.labels.shape and ((p >= 0) & (p <= 1)).all()
    with pytest.raises(InputError, match="seed"):
        get_scorer("random", seed=-1)


def test_constant_value():
    bench = synthetic_benchmark(5, (2, 2), 2, 5)
    p = get_scorer("constant", value=0.25).predict(bench)
    assert p.shape == (10, 2) and (p == 0.25).all()
    assert get_scorer("constant").predict(bench)[0, 0] == 0.5
    assert get_scorer("constant", value=0.25).identity(bench, None) != \
        get_scorer("constant").identity(bench, None)
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        get_scorer("constant", value=1.5)


# ---------------------------------------------------------------------------- predictions:PATH


@pytest.fixture
def bench5():
    return synthetic_benchmark(6, (2, 3), 3, 5, seed=5)


def score_rows(bench, samples=(0,)):
    rng = np.random.default_rng(1)
    rows = []
    for sc in bench.scenarios:
        for r in range(len(sc.responses)):
            for a in bench.attributes:
                for k in samples:
                    rows.append({"scenario": sc.id, "response": r, "attribute": a,
                                 "sample": k, "score": round(float(rng.random()), 6)})
    return rows


def mean_of(bench, rows):
    out = np.zeros(bench.labels.shape)
    n = np.zeros(bench.labels.shape)
    for row in rows:
        i = int(bench.offsets[bench.index_of(row["scenario"])]) + row["response"]
        j = bench.attributes.index(row["attribute"])
        out[i, j] += row["score"]
        n[i, j] += 1
    return out / n


@pytest.mark.parametrize("fmt", ["parquet", "csv", "json"])
def test_predictions_file_in_our_layout(tmp_path, bench5, fmt):
    rows = score_rows(bench5, samples=(0, 1))
    path = tmp_path / f"preds.{fmt}"
    if fmt == "parquet":
        pq.write_table(pa.Table.from_pylist(rows), path)
    elif fmt == "csv":
        cols = list(rows[0])
        path.write_text("\n".join([",".join(cols)] + [",".join(str(r[c]) for c in cols)
                                                      for r in rows]))
    else:
        path.write_text(json.dumps(rows))
    s = get_scorer(f"predictions:{path}")
    np.testing.assert_allclose(s.predict(bench5), mean_of(bench5, rows))


def test_predictions_identity_follows_content_not_name(tmp_path, bench5):
    rows = score_rows(bench5)
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(rows))
    b.write_text(json.dumps(rows))
    ident = get_scorer(f"predictions:{a}").identity(bench5, None)
    assert ident == get_scorer(f"predictions:{b}").identity(bench5, None)
    rows[0]["score"] = 0.123
    b.write_text(json.dumps(rows))
    assert ident != get_scorer(f"predictions:{b}").identity(bench5, None)


def input_output(bench, preds):
    items = []
    for i, sc in enumerate(bench.scenarios):
        rows = preds[bench.offsets[i]: bench.offsets[i + 1]]
        items.append({
            "input": {"prompt": sc.prompt, "responses": list(sc.responses),
                      "labels": [dict(lab) for lab in sc.labels]},
            "output": {"selected_response_index": 0, "reasoning": "",
                       "choice_info": {"predictions": [
                           dict(zip(bench.attributes, map(float, row), strict=True))
                           for row in rows]}},
        })
    return items


def test_predictions_file_in_input_output_layout(tmp_path, bench5):
    preds = np.round(np.random.default_rng(2).random(bench5.labels.shape), 4)
    path = tmp_path / "input_output.json"
    path.write_text(json.dumps(input_output(bench5, preds)))
    np.testing.assert_allclose(get_scorer(f"predictions:{path}").predict(bench5), preds)


def _mutate(items, how):
    if how == "labels":
        items[2]["input"]["labels"][1]["a1"] = 0.0 if items[2]["input"]["labels"][1]["a1"] else 1.0
    elif how == "count":
        items.pop()
    elif how == "no_predictions":
        del items[1]["output"]["choice_info"]["predictions"]
    elif how == "attribute":
        del items[3]["output"]["choice_info"]["predictions"][0]["a2"]
    elif how == "range":
        items[0]["output"]["choice_info"]["predictions"][1]["a0"] = 7
    return items


@pytest.mark.parametrize(("how", "pattern"), [
    ("labels", r"record 2 \(scenario 's000002'\).*'input\.labels\[1\]\.a1'.*differs"),
    ("count", r"5 items for 6 scenarios"),
    ("no_predictions", r"record 1 .*'output\.choice_info\.predictions'.*missing"),
    ("attribute", r"record 3 .*'output\.choice_info\.predictions\[0\]\.a2'.*missing"),
    ("range", r"record 0 .*predictions\[1\]\.a0'.*outside \[0, 1\]"),
])
def test_malformed_input_output_is_named(tmp_path, bench5, how, pattern):
    preds = np.round(np.random.default_rng(2).random(bench5.labels.shape), 4)
    path = tmp_path / "io.json"
    path.write_text(json.dumps(_mutate(input_output(bench5, preds), how)))
    with pytest.raises(InputError, match=pattern) as err:
        get_scorer(f"predictions:{path}").predict(bench5)
    assert "io.json" in str(err.value)


@pytest.mark.parametrize(("how", "pattern"), [
    ("drop_column", r"field 'score'.*missing column"),
    ("unknown_scenario", r"record 0, field 'scenario'.*unknown scenario 'zzz'"),
    ("unknown_attribute", r"record 0, field 'attribute'.*unknown attribute 'colour'"),
    ("bad_response", r"record 0, field 'response'.*below"),
    ("bad_score", r"record 0, field 'score'.*outside \[0, 1\]"),
    ("duplicate", r"record 1, field 'score'.*duplicate"),
    ("incomplete", r"no score for scenario 's000005', response \d, attribute 'a2'"),
])
def test_malformed_score_table_is_named(tmp_path, bench5, how, pattern):
    rows = score_rows(bench5)
    if how == "drop_column":
        rows = [{k: v for k, v in r.items() if k != "score"} for r in rows]
    elif how == "unknown_scenario":
        rows[0]["scenario"] = "zzz"
    elif how == "unknown_attribute":
        rows[0]["attribute"] = "colour"
    elif how == "bad_response":
        rows[0]["response"] = 9
    elif how == "bad_score":
        rows[0]["score"] = -0.5
    elif how == "duplicate":
        rows[1] = dict(rows[0])
    elif how == "incomplete":
        rows.pop()
    path = tmp_path / "scores.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    with pytest.raises(InputError, match=pattern) as err:
        get_scorer(f"predictions:{path}").predict(bench5)
    assert "scores.parquet" in str(err.value)


def test_unreadable_predictions_files(tmp_path, bench5):
    with pytest.raises(InputError, match="not found"):
        get_scorer(f"predictions:{tmp_path / 'missing.json'}")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(InputError, match=r"bad\.json.*not valid JSON"):
        get_scorer(f"predictions:{bad}").predict(bench5)
    bad_pq = tmp_path / "bad.parquet"
    bad_pq.write_bytes(b"nope")
    with pytest.raises(InputError, match=r"bad\.parquet.*not a readable Parquet"):
        get_scorer(f"predictions:{bad_pq}").predict(bench5)


# ---------------------------------------------------------------------------- ridge


@pytest.fixture(scope="module")
def fitted():
    train = text_benchmark(45, seed=0)
    s = RidgeScorer(SMALL_GRID)
    s.fit(train)
    return s, train


def test_ridge_learns_from_train_and_never_reads_eval_labels(fitted):
    s, _ = fitted
    test = text_benchmark(30, seed=1, split="eval")
    pred = s.predict(without_labels(test))
    assert pred.shape == test.labels.shape and ((pred >= 0) & (pred <= 1)).all()
    acc = realign(test, pred, all_targets(test.attributes, LEVELS)).accuracy
    # "long" follows length, so targets naming only it are far above chance.
    only_long = np.isnan(all_targets(test.attributes, LEVELS).values[:, 1]) & ~np.isnan(acc)
    assert np.nanmean(acc[only_long]) > 80


def test_ridge_cv_picks_the_best_grid_point(fitted):
    s, _ = fitted
    grid = SMALL_GRID
    assert len(s.cv_scores) == (len(grid.feature_sets) * len(grid.tfidf_weights)
                                * len(grid.alphas) * len(grid.level_alphas))
    assert s.chosen is not None and s.chosen.alpha in grid.alphas
    assert s.cv_scores[s.chosen] == max(s.cv_scores.values())
    # A penalty of 1e12 flattens every scenario (all responses tie): CV must see it is worse.
    flat = [v for k, v in s.cv_scores.items() if k.alpha == 1e12]
    assert max(flat) < s.cv_scores[s.chosen]


def test_ridge_is_deterministic(fitted):
    s, train = fitted
    again = RidgeScorer(SMALL_GRID)
    again.fit(train)
    test = text_benchmark(10, seed=3, split="eval")
    assert again.chosen == s.chosen
    np.testing.assert_array_equal(again.predict(test), s.predict(test))


def test_ridge_fit_uses_only_the_training_object(fitted):
    _, train = fitted
    test = text_benchmark(10, seed=3, split="eval")
    s = RidgeScorer(SMALL_GRID)
    with pytest.raises(RuntimeError, match="before fit"):
        s.predict(test)
    # Fitting on a label-free benchmark must fail: fit() is the only place labels are read.
    with pytest.raises(AssertionError, match="read evaluation labels"):
        s.fit(without_labels(train))


def test_ridge_identity_tracks_train_data_and_grid(fitted):
    _, train = fitted
    test = text_benchmark(10, seed=3, split="eval")
    s = RidgeScorer(SMALL_GRID)
    ident = s.identity(test, train)
    assert ident.startswith("ridge#") and ident == RidgeScorer(SMALL_GRID).identity(test, train)
    other_train = text_benchmark(45, seed=9)
    assert ident != s.identity(test, other_train)
    grid2 = RidgeSettings(**{**SMALL_GRID.__dict__, "alphas": (0.1, 10.0)})
    assert ident != RidgeScorer(grid2).identity(test, train)
    with pytest.raises(InputError, match="training split"):
        s.identity(test, None)


def test_ridge_settings_are_validated():
    with pytest.raises(InputError, match="unknown feature groups"):
        RidgeSettings(feature_sets=(("length", "vibes"),))
    with pytest.raises(InputError, match="alphas"):
        RidgeSettings(alphas=(-1.0,))
    with pytest.raises(InputError, match="curve group needs the length group"):
        RidgeSettings(feature_sets=(("shape", "curve"),))


@pytest.mark.slow
def test_ridge_on_helpsteer2_beats_chance(shared_data):
    from pluralign.engine.data.sources import load_benchmark

    train = load_benchmark("helpsteer2", "train", shared_data)
    ev = load_benchmark("helpsteer2", "eval", shared_data)
    s = get_scorer("ridge", settings=RidgeSettings(tfidf_weights=(0.0,)))
    s.fit(train)
    targets = all_targets(ev.attributes, ev.levels)
    ridge = np.nanmean(realign(ev, s.predict(without_labels(ev)), targets).accuracy)
    chance = np.nanmean(realign(ev, get_scorer("random").predict(ev), targets).accuracy)
    assert ridge > chance + 5


# ---------------------------------------------------------------------------- through the cache


class Counting:
    """Wraps a scorer and counts fit/predict calls."""

    def __init__(self, inner):
        self.inner, self.name, self.needs_train = inner, inner.name, inner.needs_train
        self.fits = self.predicts = 0

    def identity(self, bench, train):
        return self.inner.identity(bench, train)

    def fit(self, train):
        self.fits += 1
        self.inner.fit(train)

    def predict(self, bench):
        self.predicts += 1
        return self.inner.predict(bench)


def test_second_call_hits_the_cache(tmp_path):
    bench = synthetic_benchmark(15, (2, 3), 3, 5)
    s = Counting(get_scorer("random", seed=7))
    first = score_through_cache(s, bench, ScoreCache(tmp_path))
    again = score_through_cache(s, bench, ScoreCache(tmp_path))
    assert s.predicts == 1
    np.testing.assert_array_equal(first, again)
    np.testing.assert_array_equal(first, get_scorer("random", seed=7).predict(bench))


def test_only_missing_scores_are_appended(tmp_path):
    bench = synthetic_benchmark(15, (2, 3), 3, 5)
    cache = ScoreCache(tmp_path)
    full = score_through_cache(get_scorer("oracle"), bench, cache)
    ident = get_scorer("oracle").identity(bench, None)
    table = cache.read(bench.identity, ident)
    keep = table.slice(0, 20).to_pylist()
    for p in cache.parts():
        p.unlink()
    cache.append(keep)
    s = Counting(get_scorer("oracle"))
    out = score_through_cache(s, bench, cache)
    np.testing.assert_array_equal(out, full)
    sizes = [pq.read_metadata(p).num_rows for p in cache.parts()]
    assert sorted(sizes) == sorted([20, full.size - 20]) and s.predicts == 1


def test_trained_scorer_through_cache(tmp_path, fitted):
    _, train = fitted
    test = text_benchmark(12, seed=4, split="eval")
    s = Counting(RidgeScorer(SMALL_GRID))
    a = score_through_cache(s, test, ScoreCache(tmp_path), train=train)
    b = score_through_cache(s, test, ScoreCache(tmp_path), train=train)
    assert (s.fits, s.predicts) == (1, 1)
    np.testing.assert_array_equal(a, b)
    with pytest.raises(InputError, match="training split"):
        score_through_cache(Counting(RidgeScorer(SMALL_GRID)), test, ScoreCache(tmp_path))
