"""``pluralign pareto`` over real sweeps: each target counted once (high, low and sampled are
also in ``all``), and runs that are not comparable refused before anything is combined."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pluralign.engine.errors import InputError
from pluralign.jobs.cli import main
from pluralign.jobs.pareto import ParetoConfig, run_pareto
from tests.jobs.sweep_runs import sweep


def test_each_target_counts_once(tmp_path: Path) -> None:
    a, b = sweep(tmp_path, "random", "random"), sweep(tmp_path, "oracle", "oracle")
    result = run_pareto(ParetoConfig(runs=(str(a), str(b)), out=str(tmp_path / "p")))
    table = pq.read_table(a / "per_target.parquet").to_pandas()
    defined = table[table["accuracy"].notna()]
    assert len(defined) > defined["target"].nunique()  # the sets overlap ...
    assert result.shared_targets == defined["target"].nunique()  # ... each target once
    assert len(result.objective_names) == result.shared_targets
    by_target = defined.drop_duplicates("target").set_index("target")["accuracy"] / 100
    assert result.runs[0].steerability == pytest.approx(by_target.sum())
    assert result.runs[1].steerability == pytest.approx(result.shared_targets)  # the oracle
    assert [r.on_front for r in result.runs] == [False, True]


def test_incomparable_runs_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a, short = sweep(tmp_path, "a", "random"), sweep(tmp_path, "short", "random", limit=8)
    with pytest.raises(InputError, match="scenarios 8 vs 24"):
        run_pareto(ParetoConfig(runs=(str(a), str(short)), out=str(tmp_path / "p")))
    assert main(["pareto", str(a), str(short), "--out", str(tmp_path / "q")]) == 2
    assert "not comparable" in capsys.readouterr().err
    assert not (tmp_path / "q" / "summary.json").exists()
    assert json.loads((a / "summary.json").read_text())["scenarios"] == 24
