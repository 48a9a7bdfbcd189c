"""``pluralign jury`` and ``pluralign distribution`` end to end: tables, summary, errors."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest

import pluralign.jobs.cli.jury
from pluralign.engine.data.sources import load_benchmark
from pluralign.engine.data.synthetic import noisy_predictions
from pluralign.engine.errors import InputError
from pluralign.engine.pluralism.juries import load_jury
from pluralign.engine.pluralism.jury_eval import JuryConfig, evaluate_jury
from pluralign.jobs.api import Scores
from pluralign.jobs.cli import main
from pluralign.schemas.arrow import schema_version_of

SYN = "synthetic:S=30,R=2-3,A=3,L=5,seed=4"
EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples"
GROUPS = {"groups": [
    {"name": "high", "jurors": [{"id": "a", "target": {"a0": 1, "a1": 1}},
                                {"id": "b", "target": {"a0": 1}, "weight": 2},
                                {"id": "none", "target": {"a2": 0.5}}]},
    {"name": "low", "distribution": [{"target": {"a0": 0, "a2": 0}, "weight": 3},
                                     {"target": {"a1": 0.25}, "weight": 1}]},
]}


@pytest.fixture
def stub_scores(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Scores without a scorer: the synthetic benchmark's labels plus seeded noise."""
    def scored(args: Any) -> Scores:
        bench = load_benchmark(args.benchmark, args.split, args.data)
        return Scores(bench, noisy_predictions(bench, 0.2, 0), "stub")

    monkeypatch.setattr(pluralign.jobs.cli.jury, "predictions", scored)
    return scored


def _groups(tmp_path: Path, data: Any = GROUPS) -> Path:
    path = tmp_path / "groups.json"
    path.write_text(json.dumps(data))
    return path


def test_jury_writes_tables_and_summary(tmp_path: Path, capsys: Any, stub_scores: Any) -> None:
    out = tmp_path / "out"
    rc = main(["jury", "--benchmark", SYN, "--groups", str(_groups(tmp_path)),
               "--alpha", "0,1,inf", "--bootstrap", "200", "--out", str(out)])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "w(a=inf)" in printed and "collective" in printed and "gap utility" in printed
    summary = json.loads((out / "summary.json").read_text())
    assert summary["config"]["alphas"] == [0.0, 1.0, "inf"]
    assert summary["excluded_empty_target"] == 1
    names = [r["group"] for r in summary["groups"]]
    assert names == ["high", "low", "ALL"]
    # The files agree with the engine run directly on the same inputs.
    bench = load_benchmark(SYN, "eval", None)
    jury = load_jury(_groups(tmp_path), bench.attributes, bench.levels)
    direct = evaluate_jury(bench, noisy_predictions(bench, 0.2, 0), jury,
                           JuryConfig(alphas=(0.0, 1.0, math.inf), n_bootstrap=200))
    groups = pq.read_table(out / "groups.parquet")
    assert schema_version_of(groups.schema)[1] == "jury_groups"
    np.testing.assert_allclose(groups.column("welfare_ainf").to_numpy(),
                               direct.means[:, direct.metrics.index("welfare_ainf")])
    assert groups.column("n_excluded").to_pylist() == [1, 0, 1]
    jurors = pq.read_table(out / "jurors.parquet").to_pylist()
    assert [j["juror"] for j in jurors] == ["high/a", "high/b", "high/none", "low/0", "low/1"]
    assert jurors[2]["excluded"] and jurors[2]["utility"] is None
    scen = pq.read_table(out / "scenarios.parquet")
    assert scen.num_rows == 30 * 3
    sel = pq.read_table(out / "selection.parquet").to_pylist()
    assert len(sel) == 3 * 3 and all(r["welfare_optimal"] <= r["oracle"] + 1e-12 for r in sel)
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


def test_bad_group_file_is_one_clear_line(tmp_path: Path, capsys: Any,
                                          stub_scores: Any) -> None:
    bad = _groups(tmp_path, {"groups": [{"name": "x", "jurors": [{"target": {"a7": 1}}]}]})
    rc = main(["jury", "--benchmark", SYN, "--groups", str(bad), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert len(err) == 1 and "groups.json" in err[0] and "a7" in err[0] and "groups[0]" in err[0]
    assert not (tmp_path / "o").exists()


def test_bad_alpha_is_one_clear_line(tmp_path: Path, capsys: Any, stub_scores: Any) -> None:
    rc = main(["jury", "--benchmark", SYN, "--groups", str(_groups(tmp_path)),
               "--alpha", "0,-2", "--out", str(tmp_path / "o")])
    assert rc == 2 and "alpha" in capsys.readouterr().err


def test_jury_through_the_real_score_cache(tmp_path: Path, capsys: Any) -> None:
    scorers = pytest.importorskip("pluralign.engine.scorers")
    if not hasattr(scorers, "score_through_cache"):
        pytest.skip("pluralign.engine.scorers is not complete yet")
    out = tmp_path / "out"
    rc = main(["jury", "--benchmark", SYN, "--scorer", "oracle", "--cache",
               str(tmp_path / "cache"), "--groups", str(_groups(tmp_path)), "--bootstrap", "0",
               "--out", str(out)])
    assert rc == 0
    summary = json.loads((out / "summary.json").read_text())
    # Oracle scores are the labels: every juror gets a label-closest response.
    for row in summary["groups"]:
        assert row["accuracy"] == 100.0
    sel = {(r["group"], r["alpha"]): r for r in summary["selection"]}
    assert all(r["optimal_hit"] == 1.0 for r in sel.values())
    # From the cache alone, by identity: the same figures, no scoring.
    import pluralign.engine.scorers

    def boom(*a: Any, **k: Any) -> None:
        raise AssertionError("scored again")

    again = tmp_path / "again"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(pluralign.engine.scorers, "score_through_cache", boom)
        rc = main(["jury", "--benchmark", SYN, "--scorer-id", summary["scorer"], "--cache",
                   str(tmp_path / "cache"), "--groups", str(_groups(tmp_path)), "--bootstrap",
                   "0", "--out", str(again)])
    assert rc == 0
    assert json.loads((again / "summary.json").read_text())["groups"] == summary["groups"]


def test_scorer_id_missing_from_cache_says_what_to_run(tmp_path: Path, capsys: Any) -> None:
    scorers = pytest.importorskip("pluralign.engine.scorers")
    if not hasattr(scorers, "score_through_cache"):
        pytest.skip("pluralign.engine.scorers is not complete yet")
    rc = main(["jury", "--benchmark", SYN, "--scorer-id", "nobody#123", "--cache",
               str(tmp_path / "empty"), "--groups", str(_groups(tmp_path)), "--out",
               str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2 and "pluralign sweep" in err and err.count("\n") == 1


def test_distribution_command(tmp_path: Path, capsys: Any) -> None:
    out = tmp_path / "d"
    rc = main(["distribution", "--file", str(EXAMPLES / "distributions.json"),
               "--shuffles", "20", "--out", str(out)])
    assert rc == 0
    assert "JS shuffled" in capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    assert len(summary["pairs"]) == 4 and set(summary["group_entropy"]) == {"US", "JP"}
    table = pq.read_table(out / "distribution.parquet")
    assert table.num_rows == 2 * 2 + 2 * 1
    assert schema_version_of(table.schema)[1] == "distribution"


def test_bad_distribution_file_is_one_clear_line(tmp_path: Path, capsys: Any) -> None:
    bad = tmp_path / "dist.json"
    bad.write_text(json.dumps({"questions": [{"id": "q", "options": ["a", "b"],
                                              "groups": {"G": {"probabilities": [0.9, 0.9]}}}]}))
    rc = main(["distribution", "--file", str(bad), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert len(err) == 1 and "dist.json" in err[0] and "groups.G.probabilities" in err[0]


def test_jury_job_is_what_the_command_writes(tmp_path: Path, capsys: Any,
                                             stub_scores: Any) -> None:
    """The typed job without the command line: the same figures as the command's files."""
    from pluralign.jobs.jury import JuryJobConfig, check_jury, run_jury

    groups = str(_groups(tmp_path))
    assert main(["jury", "--benchmark", SYN, "--groups", groups, "--bootstrap", "50",
                 "--no-selection", "--out", str(tmp_path / "cli")]) == 0
    bench = load_benchmark(SYN, "eval", None)
    config = JuryJobConfig(groups=groups, bootstrap=50, selection=False,
                           out=str(tmp_path / "api"))
    assert check_jury(config, bench).alphas == (0.0, 0.5, 1.0, 2.0, math.inf)
    result = run_jury(config, Scores(bench, noisy_predictions(bench, 0.2, 0), "stub"))
    summary = json.loads((tmp_path / "cli" / "summary.json").read_text())
    assert result.evaluation.rows() == summary["groups"] and result.selection is None
    assert result.out == tmp_path / "api" and (result.out / "jurors.parquet").is_file()
    with pytest.raises(InputError, match="alpha"):
        check_jury(JuryJobConfig(groups=groups, alphas=(1.0, -1.0), out=str(tmp_path / "x")))


def test_distribution_job(tmp_path: Path) -> None:
    from pluralign.jobs.distribution import DistributionConfig, run_distribution

    result = run_distribution(DistributionConfig(file=str(EXAMPLES / "distributions.json"),
                                                 shuffles=5, out=str(tmp_path / "d")))
    assert len(result.report.pairs) == 4 and set(result.group_entropy) == {"US", "JP"}
    with pytest.raises(InputError, match="`shuffles` must be at least 1"):
        run_distribution(DistributionConfig(file=str(EXAMPLES / "distributions.json"),
                                            shuffles=0, out=str(tmp_path / "e")))
