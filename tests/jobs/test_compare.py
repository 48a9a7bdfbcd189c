"""``pluralign compare``: paired differences that equal the runs' own summaries, intervals that
cover them, the same draw for both runs, and runs that are not comparable refused in one line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pluralign.engine.align.paired import outcomes, resample_weights
from pluralign.engine.align.realign import realign
from pluralign.engine.errors import InputError
from pluralign.jobs.cli import main
from pluralign.jobs.compare import compare, run_sets
from pluralign.jobs.runs import check_comparable, load_sweep
from tests.jobs.sweep_runs import summary, sweep


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("compare")
    return {"random": sweep(tmp, "random", "random"), "oracle": sweep(tmp, "oracle", "oracle"),
            "short": sweep(tmp, "short", "random", limit=10),
            "other": sweep(tmp, "other", "random", spec="synthetic:S=24,R=2-3,A=3,L=5,seed=4")}


def test_point_estimates_equal_each_runs_summary(runs: dict[str, Path]) -> None:
    r = compare(runs["random"], runs["oracle"], bootstrap=200, seed=1)
    by_a = {s["name"]: s for s in summary(runs["random"])["sets"]}
    by_b = {s["name"]: s for s in summary(runs["oracle"])["sets"]}
    assert {s.set for s in r.sets} == set(by_a)
    for s in r.sets:
        assert s.accuracy_a == pytest.approx(by_a[s.set]["mean"], abs=1e-9)
        assert s.accuracy_b == pytest.approx(by_b[s.set]["mean"], abs=1e-9)
        assert s.weighted_a == pytest.approx(by_a[s.set]["weighted_mean"], abs=1e-9)
        assert s.accuracy_diff == pytest.approx(s.accuracy_a - s.accuracy_b)
        assert s.accuracy_lo <= s.accuracy_diff <= s.accuracy_hi
        assert s.weighted_lo <= s.weighted_diff <= s.weighted_hi
        assert s.accuracy_b == pytest.approx(100.0)  # the oracle picks a label-closest response
        assert s.a_beats_b == 0.0 and 0 < s.b_beats_a <= 1
    for v in r.attributes.values():
        assert v["mse_b"] == pytest.approx(0.0) and v["diff"] == pytest.approx(v["mse_a"])
        assert v["lo"] <= v["diff"] <= v["hi"]


def test_per_scenario_outcomes_sum_to_realign(runs: dict[str, Path]) -> None:
    run = load_sweep(runs["random"])
    assert run.predictions is not None
    for ts in run_sets(run):
        o = outcomes(run.bench, run.predictions, ts)
        r = realign(run.bench, run.predictions, ts, weighted=True)
        assert (o.counted.sum(axis=0) == r.counted).all()
        assert (o.correct.sum(axis=0) == r.correct).all()
        assert r.weighted is not None
        ok = r.counted > 0
        np.testing.assert_allclose(o.weighted.sum(axis=0)[ok] / r.counted[ok], r.weighted[ok])


def test_resampling_is_seeded_and_paired(runs: dict[str, Path]) -> None:
    w1, w2 = resample_weights(24, 50, 7), resample_weights(24, 50, 7)
    assert (w1 == w2).all() and (w1[0] == 1).all() and (w1[1:].sum(axis=1) == 24).all()
    a = compare(runs["random"], runs["oracle"], bootstrap=100, seed=7)
    b = compare(runs["random"], runs["oracle"], bootstrap=100, seed=7)
    assert a == b
    same = compare(runs["random"], runs["random"], bootstrap=100, seed=7)
    for s in same.sets:  # paired: the same draw for both runs leaves no difference at all
        assert s.accuracy_diff == s.accuracy_lo == s.accuracy_hi == 0.0
        assert s.a_beats_b == s.b_beats_a == 0.0


@pytest.mark.parametrize(("other", "what"), [("short", "scenarios 10 vs 24"),
                                             ("other", "benchmark synthetic/")])
def test_incomparable_runs_are_refused_in_one_line(runs: dict[str, Path], other: str, what: str,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(InputError, match="not comparable"):
        compare(runs["random"], runs[other])
    assert main(["compare", str(runs["random"]), str(runs[other])]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and what in err and "not comparable" in err


def test_check_comparable_names_split() -> None:
    a = {"benchmark": "b@1", "split": "eval", "scenarios": 5}
    with pytest.raises(InputError, match="split train vs eval"):
        check_comparable([("a", a), ("b", {**a, "split": "train"})])
    check_comparable([("a", a), ("spica", {"bank": "x"})])  # declares no benchmark: not checked


def test_cli_prints_the_table_and_writes_json(runs: dict[str, Path], tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cmp.json"
    assert main(["compare", str(runs["random"]), str(runs["oracle"]), "--bootstrap", "50",
                 "--out", str(out)]) == 0
    text = capsys.readouterr().out
    data = json.loads(out.read_text())
    assert data["bootstrap"] == 50 and data["manifest"]["command"] == "compare"
    for s in data["sets"]:
        assert f"{s['accuracy_a']:.1f}" in text and s["set"][:15] in text
