"""``pluralign.decisions``: one row per scenario x response x attribute x sample joining the
cached prediction (through the cache's own reader), the label, the judge's reasoning and raw
answer as stored (redacted), and the run's choices per target set."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from pluralign.engine.store.cache import REDACTED, ScoreCache, register_secret, score_key
from pluralign.engine.store.choices import ChoiceCache
from pluralign.jobs.decisions import decisions, write_decisions
from pluralign.jobs.runs import load_sweep
from tests.jobs.sweep_runs import summary, sweep

SECRET = "sk-decisions-" + "x" * 32


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return sweep(tmp_path_factory.mktemp("decisions"), "random", "random")


def test_rows_join_predictions_labels_and_choices(run: Path) -> None:
    loaded = load_sweep(run)
    table = decisions(run)
    bench = loaded.bench
    assert len(table) == bench.n_responses * len(bench.attributes)  # one sample per item
    assert not table.duplicated(["scenario", "response", "attribute", "sample"]).any()
    ids = {s.id: i for i, s in enumerate(bench.scenarios)}
    flat = bench.offsets[[ids[s] for s in table["scenario"]]] + table["response"].to_numpy()
    col = [bench.attributes.index(a) for a in table["attribute"]]
    assert loaded.predictions is not None
    np.testing.assert_allclose(table["prediction"], loaded.predictions[flat, col])
    np.testing.assert_array_equal(table["label"], bench.labels[flat, col])
    per_scenario = pq.read_table(run / "per_scenario.parquet").to_pandas()
    high = per_scenario[per_scenario["set"] == "high"].set_index("scenario")["chosen"]
    one = table[table["attribute"] == bench.attributes[0]]
    chosen = one[one["chosen:high"] == 1.0].set_index("scenario")["response"]
    assert chosen.sort_index().to_dict() == high.sort_index().to_dict()
    shares = one.groupby("scenario")["chosen:random-sampled"].sum()
    np.testing.assert_allclose(shares, 1.0)


def test_reasoning_and_raw_answer_come_redacted_as_stored(run: Path, tmp_path: Path) -> None:
    """A judge's rows (reasoning, raw answer in meta, one failed item) read back through the
    score cache's reader, although the folder also holds choice parts of another schema."""
    loaded = load_sweep(run)
    cache = tmp_path / "cache"
    bench, scorer = loaded.bench, "judge#abc"
    register_secret(SECRET)
    rows = []
    for s, sc in enumerate(bench.scenarios[:3]):
        for r in range(len(sc.responses)):
            for a in bench.attributes:
                for sample in (0, 1):
                    rows.append({"benchmark": bench.identity, "scenario": sc.id, "response": r,
                                 "attribute": a, "scorer": scorer, "sample": sample,
                                 "score": 0.25 * sample, "reasoning": f"why {s}.{r}.{a}",
                                 "error": None,
                                 "meta": json.dumps({"raw": f"answer {SECRET} {s}"})})
    failed = dict(rows[0], sample=2, score=None, reasoning=None, error="timed out", meta=None)
    ScoreCache(cache).append([*rows, failed])
    ChoiceCache(cache).append([{"benchmark": bench.identity, "scenario": bench.scenarios[0].id,
                                "target": "{}", "scorer": "other#1", "sample": 0, "choice": 1}])
    assert score_key(bench.identity, bench.scenarios[0].id, 0, bench.attributes[0], scorer, 0)
    loaded.scorer, loaded.cache = scorer, cache
    table = decisions(loaded)
    assert len(table) == len(rows) + 1
    ok = table[table["error"].isna()]
    assert set(ok["sample"]) == {0, 1} and (ok["prediction"] == 0.25 * ok["sample"]).all()
    assert ok["reasoning"].str.startswith("why ").all()
    assert ok["raw"].str.contains(REDACTED, regex=False).all()
    assert not table["raw"].fillna("").str.contains(SECRET, regex=False).any()
    bad = table[table["error"].notna()]
    assert bad["error"].tolist() == ["timed out"] and bad["prediction"].isna().all()


def test_written_table_carries_the_manifest(run: Path) -> None:
    path = write_decisions(run)
    t = pq.read_table(path)
    assert t.num_rows == len(decisions(run)) and b"pluralign.kind" in t.schema.metadata
    assert summary(run)["scorer"].startswith("random#")
