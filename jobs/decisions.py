"""Every decision of a sweep as one table: per scenario x response x attribute x sample, the
judge's prediction, the label, its reasoning and raw answer (redacted as the cache stores
them), and per target set how often the run chose that response.

The score rows come through the score cache's own reader (a cache folder read as one
``pyarrow.dataset`` mixes the score and choice schemas and drops columns); the choices come
from the run's per_scenario.parquet. This is the table ``pluralign view`` reads.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pluralign.engine.errors import InputError
from pluralign.engine.store.cache import ScoreCache
from pluralign.jobs.runs import SweepRun, load_sweep
from pluralign.jobs.runtime import write_parquet_atomic
from pluralign.schemas.arrow import with_version

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["CHOSEN_PREFIX", "decisions", "decisions_table", "write_decisions"]

CHOSEN_PREFIX = "chosen:"
"""Column ``chosen:<set>``: the share of the set's targets for which the run chose the row's
response in its scenario (1 or 0 for a one-target set such as high or low)."""


def _raw(meta: object) -> str | None:
    if not isinstance(meta, str) or not meta:
        return None
    try:
        parsed = json.loads(meta)
    except json.JSONDecodeError:
        return None
    raw = parsed.get("raw") if isinstance(parsed, dict) else None
    return None if raw is None else str(raw)


def _score_rows(run: SweepRun) -> pa.Table:
    """The run's cached score rows (successes with their texts, then failures that never
    succeeded), of the run's scenarios only."""
    cache = ScoreCache(run.cache)
    ok = cache.read(run.bench.identity, run.scorer, text=True)
    bad = cache.failed(run.bench.identity, run.scorer)
    n_ok, n_bad = ok.num_rows, bad.num_rows
    def col(t: pa.Table, name: str, n: int, kind: pa.DataType) -> pa.Array:
        return t[name].combine_chunks().cast(kind) if name in t.column_names else pa.nulls(n, kind)
    return pa.table({
        "scenario": pa.concat_arrays([col(ok, "scenario", n_ok, pa.string()),
                                      col(bad, "scenario", n_bad, pa.string())]),
        "response": pa.concat_arrays([col(ok, "response", n_ok, pa.int64()),
                                      col(bad, "response", n_bad, pa.int64())]),
        "attribute": pa.concat_arrays([col(ok, "attribute", n_ok, pa.string()),
                                       col(bad, "attribute", n_bad, pa.string())]),
        "sample": pa.concat_arrays([col(ok, "sample", n_ok, pa.int64()),
                                    col(bad, "sample", n_bad, pa.int64())]),
        "prediction": pa.concat_arrays([col(ok, "score", n_ok, pa.float64()),
                                        pa.nulls(n_bad, pa.float64())]),
        "reasoning": pa.concat_arrays([col(ok, "reasoning", n_ok, pa.string()),
                                       pa.nulls(n_bad, pa.string())]),
        "meta": pa.concat_arrays([col(ok, "meta", n_ok, pa.string()),
                                  pa.nulls(n_bad, pa.string())]),
        "error": pa.concat_arrays([pa.nulls(n_ok, pa.string()),
                                   col(bad, "error", n_bad, pa.string())]),
    })


def decisions_table(run: SweepRun) -> pa.Table:
    """:func:`decisions` as an Arrow table, for a loaded run."""
    if run.is_choice_run:
        raise InputError("this run's judge picks responses itself: its decisions are the rows "
                         "of per_scenario.parquet", file=run.path)
    rows = _score_rows(run)
    bench = run.bench
    ids = {s.id: i for i, s in enumerate(bench.scenarios)}
    attrs = {a: j for j, a in enumerate(bench.attributes)}
    s_idx = np.array([ids.get(s, -1) for s in rows["scenario"].to_pylist()], dtype=np.int64)
    a_idx = np.array([attrs.get(a, -1) for a in rows["attribute"].to_pylist()], dtype=np.int64)
    resp = np.asarray(rows["response"], dtype=np.int64)
    sizes = np.diff(bench.offsets)
    keep = (s_idx >= 0) & (a_idx >= 0)
    keep[keep] &= resp[keep] < sizes[s_idx[keep]]
    rows, s_idx, a_idx, resp = rows.filter(pa.array(keep)), s_idx[keep], a_idx[keep], resp[keep]
    order = np.lexsort((np.asarray(rows["sample"]), a_idx, resp, s_idx))
    rows, s_idx, a_idx, resp = rows.take(pa.array(order)), s_idx[order], a_idx[order], resp[order]
    flat = bench.offsets[s_idx] + resp
    table = pa.table({
        "scenario": rows["scenario"], "response": rows["response"],
        "attribute": rows["attribute"], "sample": rows["sample"],
        "prediction": rows["prediction"],
        "label": pa.array(bench.labels[flat, a_idx], pa.float64()),
        "reasoning": rows["reasoning"],
        "raw": pa.array([_raw(m) for m in rows["meta"].to_pylist()], pa.string()),
        "error": rows["error"],
    })
    for name, share in _chosen_shares(run).items():
        table = table.append_column(CHOSEN_PREFIX + name,
                                    pa.array(share[flat], pa.float64()))
    return table


def _chosen_shares(run: SweepRun) -> dict[str, np.ndarray]:
    """{set: float64 (N,)}: per flat response, the share of the set's targets choosing it."""
    path = run.path / "per_scenario.parquet"
    if not path.is_file():
        return {}
    t = pq.read_table(path, columns=["set", "target", "scenario", "chosen"]).to_pydict()
    ids = {s.id: i for i, s in enumerate(run.bench.scenarios)}
    counts: dict[str, np.ndarray] = {}
    per_scenario: dict[str, np.ndarray] = {}
    offsets = run.bench.offsets
    for set_name, scenario, chosen in zip(t["set"], t["scenario"], t["chosen"], strict=True):
        s = ids.get(scenario)
        if s is None or not 0 <= chosen < offsets[s + 1] - offsets[s]:
            continue
        counts.setdefault(set_name, np.zeros(run.bench.n_responses))[offsets[s] + chosen] += 1
        per_scenario.setdefault(set_name, np.zeros(run.bench.n_scenarios))[s] += 1
    with np.errstate(invalid="ignore", divide="ignore"):
        return {k: v / per_scenario[k][run.bench.scenario_of] for k, v in counts.items()}


def decisions(run: str | os.PathLike[str] | SweepRun, *,
              cache: str | os.PathLike[str] | None = None,
              data: str | None = None) -> pd.DataFrame:
    """Every decision of a sweep folder as a pandas DataFrame, one row per scenario x response
    x attribute x sample: ``prediction``, ``label``, ``reasoning``, ``raw`` (the judge's answer
    as the cache stores it, secrets redacted), ``error`` (an item that failed), and one
    ``chosen:<set>`` column per target set of per_scenario.parquet (the share of the set's
    targets for which the response was chosen)."""
    loaded = run if isinstance(run, SweepRun) else load_sweep(run, cache=cache, data=data,
                                                              predictions=False)
    return decisions_table(loaded).to_pandas()


def write_decisions(run: str | os.PathLike[str] | SweepRun, *,
                    cache: str | os.PathLike[str] | None = None,
                    data: str | None = None) -> Path:
    """Write :func:`decisions` as ``decisions.parquet`` into the run folder (with the
    manifest of the command writing it); returns its path."""
    loaded = run if isinstance(run, SweepRun) else load_sweep(run, cache=cache, data=data,
                                                              predictions=False)
    path = loaded.path / "decisions.parquet"
    table = decisions_table(loaded)
    write_parquet_atomic(path, table.cast(with_version(table.schema, "decisions")))
    return path
