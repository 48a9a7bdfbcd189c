"""Per-scenario records of a re-alignment: for every (target, scenario) the chosen response, the
label-closest responses, whether the scenario counts, and each response's two distances.

Built with the reference rules of :mod:`pluralign.engine.align.align_loop` (one target and one
scenario at a time), so the records equal what the fast path counts.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from pluralign.engine.align.align_loop import (
    label_correct,
    predicted_choice,
    predicted_distances,
    target_scale,
)
from pluralign.engine.data.benchmark import Benchmark
from pluralign.engine.data.targets import TargetSet
from pluralign.engine.run.progress import bar

if TYPE_CHECKING:
    import pyarrow as pa


def per_scenario_columns(
    bench: Benchmark, predictions: np.ndarray, targets: TargetSet
) -> dict[str, list[object]]:
    """Columns of ``PER_SCENARIO_SCHEMA`` for every target of ``targets``."""
    scale = target_scale(bench, targets)
    units = np.round(bench.labels * scale).astype(np.int64)
    cols: dict[str, list[object]] = {k: [] for k in (
        "set", "target", "scenario", "chosen", "correct", "counted", "predicted_distance",
        "label_distance")}
    with bar(len(targets), f"per-scenario records ({targets.name})", unit="target") as b:
        for t in range(len(targets)):
            _target_columns(bench, predictions, targets, t, scale, units, cols)
            b.update(1)
    return cols


def _target_columns(bench: Benchmark, predictions: np.ndarray, targets: TargetSet, t: int,
                    scale: int, units: np.ndarray, cols: dict[str, list[object]]) -> None:
    """Append target t's rows, one per scenario, to ``cols``."""
    items = [(a, float(v)) for a, v in enumerate(targets.values[t]) if not math.isnan(v)]
    unit_items = [(a, round(v * scale)) for a, v in items]
    text = targets.json(t)
    for s, sc in enumerate(bench.scenarios):
        lo, hi = int(bench.offsets[s]), int(bench.offsets[s + 1])
        good = label_correct(units[lo:hi], unit_items) if items else None
        label_d = [math.sqrt(sum((int(r[a]) - v) ** 2 for a, v in unit_items)) / scale
                   for r in units[lo:hi]]
        cols["set"].append(targets.name)
        cols["target"].append(text)
        cols["scenario"].append(sc.id)
        cols["chosen"].append(predicted_choice(predictions[lo:hi], items) if items else 0)
        cols["correct"].append(sorted(good) if good is not None else [])
        cols["counted"].append(good is not None)
        cols["predicted_distance"].append(predicted_distances(predictions[lo:hi], items))
        cols["label_distance"].append(label_d)


def per_scenario_table(
    bench: Benchmark, predictions: np.ndarray, sets: list[TargetSet]
) -> pa.Table:
    """A ``PER_SCENARIO_SCHEMA`` table over ``sets``."""
    import pyarrow as pa

    from pluralign.schemas.arrow import PER_SCENARIO_SCHEMA

    merged: dict[str, list[object]] = {f.name: [] for f in PER_SCENARIO_SCHEMA}
    for ts in sets:
        for k, v in per_scenario_columns(bench, predictions, ts).items():
            merged[k] += v
    return pa.table(merged, schema=PER_SCENARIO_SCHEMA)


def standard_error(accuracy: np.ndarray) -> float | None:
    """Standard error of the mean accuracy across the defined targets (sample std / sqrt n)."""
    a = np.asarray(accuracy, dtype=np.float64)
    a = a[~np.isnan(a)]
    if a.size < 2:
        return None
    return float(a.std(ddof=1) / math.sqrt(a.size))
