"""What the viewer shows, as JSON-ready dicts: the runs, one target re-aligned from the cache,
the per-scenario table of a target set, one scenario's decisions, and two runs compared.

Everything is computed from the run folders, the benchmark and the score cache, the same way
``pluralign align``, ``pluralign compare`` and :func:`pluralign.decisions` compute it.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pluralign.engine.align.paired import Outcomes, all_outcomes, distances, outcomes
from pluralign.engine.data.benchmark import NEUTRAL
from pluralign.engine.data.targets import TargetSet, from_dicts
from pluralign.engine.errors import InputError
from pluralign.engine.pluralism.juries import load_jury
from pluralign.jobs.compare import compare_runs, run_sets
from pluralign.jobs.decisions import decisions_table
from pluralign.jobs.runs import SweepRun, check_comparable, load_sweep, read_summary

JSONObj = dict[str, Any]

PROMPT_EXCERPT = 160
"""Characters of a prompt the scenario table shows."""


def _num(x: float | int | None) -> float | None:
    """A finite number as a JSON float (full precision), else None."""
    if x is None or not math.isfinite(float(x)):
        return None
    return float(x)


@dataclass
class ViewRun:
    """A loaded run and what the viewer derived from it (computed once, on first use)."""

    run: SweepRun
    sets: list[TargetSet]
    per_target: dict[str, dict[str, JSONObj]]
    """{target JSON: {set: row of per_target.parquet}}."""

    def __post_init__(self) -> None:
        self.lock = threading.Lock()
        self._decisions: dict[str, list[JSONObj]] | None = None
        self._tables: dict[tuple[str, int | None, str | None], tuple[np.ndarray, np.ndarray]] = {}


class ViewData:
    """The runs one viewer shows; refuses runs that are not comparable."""

    def __init__(self, runs: Sequence[str | Path], *, cache: str | None = None,
                 data: str | None = None, bootstrap: int = 500, seed: int = 0,
                 groups: str | None = None) -> None:
        if not runs:
            raise InputError("no run folders given", field="runs")
        check_comparable([(str(r), read_summary(Path(r))) for r in runs])
        labels = _unique_labels([Path(r).name or str(r) for r in runs])
        self.runs = [_load(r, label, cache, data) for r, label in zip(runs, labels, strict=True)]
        if groups:
            for vr in self.runs:
                vr.sets += group_sets(groups, vr.run)
        self.bootstrap, self.seed = bootstrap, seed
        self._compared: dict[tuple[int, int], JSONObj] = {}
        self.compute = threading.Lock()
        """Held around every computation (the compiled kernels are not re-entrant)."""

    # -- lookups -----------------------------------------------------------------------
    def get(self, index: object) -> ViewRun:
        try:
            i = int(str(index))
        except ValueError:
            raise InputError(f"run {index!r} is not a number", field="run") from None
        if not 0 <= i < len(self.runs):
            raise InputError(f"no run {i} (there are {len(self.runs)})", field="run")
        return self.runs[i]

    def target(self, vr: ViewRun, text: str | None) -> TargetSet:
        """A one-target set from its JSON text (``{"a": 1}``; neutral attributes left out)."""
        try:
            raw = json.loads(text or "{}")
        except json.JSONDecodeError as e:
            raise InputError(f"target is not JSON ({e})", field="target") from None
        if not isinstance(raw, dict):
            raise InputError("target must be a JSON object", field="target")
        return from_dicts("target", vr.run.bench.attributes, [raw], source="target")

    # -- answers -----------------------------------------------------------------------
    def runs_info(self) -> JSONObj:
        return {"runs": [_run_info(i, vr) for i, vr in enumerate(self.runs)]}

    def align(self, run: object, target: str | None) -> JSONObj:
        """One target re-aligned from the cache: totals, and per scenario the choice, the
        label-closest responses and whether it counts and is right."""
        vr = self.get(run)
        ts = self.target(vr, target)
        with self.compute:
            o, closest = _one_target(vr.run, ts)
        counted, correct = int(o.counted.sum()), int(o.correct.sum())
        text = ts.json(0)
        return {
            "target": json.loads(text), "target_json": text,
            "counted": counted, "correct": correct,
            "accuracy": _num(100.0 * correct / counted) if counted else None,
            "weighted_score": _num(float(o.weighted.sum()) / counted) if counted else None,
            "chosen": o.chosen[:, 0].astype(int).tolist(),
            "closest": closest,
            "outcome": [("right" if c else "wrong") if k else "tie"
                        for c, k in zip(o.correct[:, 0].tolist(), o.counted[:, 0].tolist(),
                                        strict=True)],
            "in_run": vr.per_target.get(text, {}),
        }

    def table(self, run: object, set_name: str | None, k: object = None,
              attribute: str | None = None) -> JSONObj:
        """Per scenario: the share of the set's targets (those with ``k`` attributes, naming
        ``attribute``) for which the run chose a label-closest response."""
        vr = self.get(run)
        ts = _select(vr, set_name, k, attribute)
        key = (ts.name, None if k in (None, "") else int(str(k)), attribute or None)
        with vr.lock:
            cached = vr._tables.get(key)
        if cached is None:
            with self.compute:
                cached = _set_outcomes(vr.run, ts)
            with vr.lock:
                vr._tables[key] = cached
        correct, counted = cached
        bench = vr.run.bench
        rows = [{"id": sc.id, "prompt": sc.prompt[:PROMPT_EXCERPT],
                 "responses": len(sc.responses),
                 "set_accuracy": _num(100.0 * c / n) if n else None}
                for sc, c, n in zip(bench.scenarios, correct.tolist(), counted.tolist(),
                                    strict=True)]
        return {"set": ts.name, "targets": len(ts), "rows": rows}

    def search_text(self, run: object) -> JSONObj:
        """Per scenario, the lower-cased text a search looks in (id, prompt, responses)."""
        vr = self.get(run)
        return {"text": [" ".join([sc.id, sc.prompt, *sc.responses]).lower()
                         for sc in vr.run.bench.scenarios]}

    def scenario(self, run: object, scenario_id: str | None) -> JSONObj:
        """One scenario: prompt, responses, labels and predictions per attribute with every
        sample's reasoning and raw answer, and the run's choice under each one-target set."""
        vr = self.get(run)
        bench = vr.run.bench
        try:
            s = bench.index_of(str(scenario_id))
        except KeyError:
            raise InputError(f"no scenario {scenario_id!r} in this run", field="id") from None
        sc = bench.scenarios[s]
        lo = int(bench.offsets[s])
        samples = self._decisions(vr).get(sc.id, [])
        preds = vr.run.predictions
        responses = []
        for r, text in enumerate(sc.responses):
            responses.append({
                "index": r, "text": text,
                "labels": {a: _num(bench.labels[lo + r, j]) for j, a in enumerate(bench.attributes)},
                "predictions": {a: (None if preds is None else _num(preds[lo + r, j]))
                                for j, a in enumerate(bench.attributes)},
                "samples": [d for d in samples if d["response"] == r],
            })
        return {"id": sc.id, "index": s, "prompt": sc.prompt, "attributes": list(bench.attributes),
                "responses": responses}

    def compare(self, a: object, b: object, target: str | None) -> JSONObj:
        """Runs a and b paired (``pluralign compare``'s numbers), and for ``target`` the
        scenarios whose choice differs."""
        ra, rb = self.get(a), self.get(b)
        ia, ib = self.runs.index(ra), self.runs.index(rb)
        if ia == ib:
            raise InputError("pick two different runs", field="b")
        if (ia, ib) not in self._compared:
            with self.compute:
                result = compare_runs(ra.run, rb.run, bootstrap=self.bootstrap, seed=self.seed,
                                      sets=ra.sets)
            self._compared[(ia, ib)] = result.to_json()
        ts = self.target(ra, target)
        with self.compute:
            oa, _ = _one_target(ra.run, ts)
            ob, _ = _one_target(rb.run, ts)
        ids = [sc.id for sc in ra.run.bench.scenarios]
        differ = [{"id": ids[s], "a": int(oa.chosen[s, 0]), "b": int(ob.chosen[s, 0]),
                   "a_right": bool(oa.correct[s, 0]), "b_right": bool(ob.correct[s, 0]),
                   "counted": bool(oa.counted[s, 0])}
                  for s in np.flatnonzero(oa.chosen[:, 0] != ob.chosen[:, 0]).tolist()]
        return {**self._compared[(ia, ib)], "label_a": ra.run.label, "label_b": rb.run.label,
                "target_json": ts.json(0), "differ": differ}

    def _decisions(self, vr: ViewRun) -> dict[str, list[JSONObj]]:
        with vr.lock:
            if vr._decisions is None:
                vr._decisions = _by_scenario(decisions_table(vr.run))
            return vr._decisions


GROUP_PREFIX = "group: "
"""Target sets made of a jury group's jurors are named ``group: <name>``."""


def group_sets(path: str, run: SweepRun) -> list[TargetSet]:
    """One target set per group of a jury file (docs/juries.md): its jurors' targets, named
    by juror."""
    jury = load_jury(path, run.bench.attributes, run.bench.levels)
    out = []
    for g, name in enumerate(jury.group_names):
        idx = np.flatnonzero(jury.group_of == g)
        out.append(TargetSet(GROUP_PREFIX + name, jury.attributes, jury.values[idx], None,
                             tuple(jury.juror_ids[i] for i in idx)))
    return out


def _unique_labels(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for n in names:
        seen[n] = seen.get(n, 0) + 1
        out.append(n if seen[n] == 1 else f"{n} ({seen[n]})")
    return out


def _load(path: str | Path, label: str, cache: str | None, data: str | None) -> ViewRun:
    run = load_sweep(path, cache=cache, data=data, label=label)
    if run.predictions is None:
        raise InputError("the viewer re-aligns score judges; this run's judge picks responses "
                         "itself", file=run.path)
    sets = run_sets(run)
    table = pq.read_table(run.path / "per_target.parquet").to_pydict()
    per_target: dict[str, dict[str, JSONObj]] = {}
    keys = [k for k in ("accuracy", "weighted_score", "counted", "correct") if k in table]
    for i, (s, t) in enumerate(zip(table["set"], table["target"], strict=True)):
        per_target.setdefault(str(t), {})[str(s)] = {k: table[k][i] for k in keys}
    return ViewRun(run, sets, per_target)


def _run_info(i: int, vr: ViewRun) -> JSONObj:
    run, bench = vr.run, vr.run.bench
    presets = []
    for ts in vr.sets:
        if len(ts) > 200:  # the grid of every target: reachable with the sliders
            continue
        for t in range(len(ts)):
            name = ts.name if len(ts) == 1 else f"{ts.name} {t + 1}"
            if ts.labels is not None:
                name = f"{ts.name}: {ts.labels[t]}"
            presets.append({"name": name, "set": ts.name, "target": ts.target(t)})
    sets = [{k: s.get(k) for k in ("name", "n_targets", "n_defined", "mean", "weighted_mean")}
            for s in run.summary.get("sets", []) if isinstance(s, dict)]
    return {"index": i, "label": run.label, "path": str(run.path), "scorer": run.scorer,
            "benchmark": bench.identity, "split": bench.split, "scenarios": bench.n_scenarios,
            "attributes": list(bench.attributes), "levels": list(bench.levels),
            "neutral": NEUTRAL, "sets": sets, "presets": presets,
            "target_sets": [{"name": ts.name, "targets": len(ts)} for ts in vr.sets]}


def _one_target(run: SweepRun, ts: TargetSet) -> tuple[Outcomes, list[list[int]]]:
    assert run.predictions is not None
    o = outcomes(run.bench, run.predictions, ts)
    d = distances(run.bench, ts)[:, 0]
    off = run.bench.offsets
    closest = []
    for s in range(run.bench.n_scenarios):
        ds = d[off[s]:off[s + 1]]
        closest.append(np.flatnonzero(ds == ds.min()).astype(int).tolist())
    return o, closest


def _select(vr: ViewRun, set_name: str | None, k: object, attribute: str | None) -> TargetSet:
    ts = next((s for s in vr.sets if s.name == set_name), vr.sets[0] if vr.sets else None)
    if ts is None:
        raise InputError("the run has no target sets", field="set")
    keep = np.ones(len(ts), dtype=bool)
    if k not in (None, ""):
        try:
            keep &= ts.n_attributes == int(str(k))
        except ValueError:
            raise InputError(f"k {k!r} is not a number", field="k") from None
    if attribute:
        if attribute not in ts.attributes:
            raise InputError(f"no attribute {attribute!r}", field="attribute")
        keep &= ~np.isnan(ts.values[:, ts.attributes.index(attribute)])
    return ts if keep.all() else ts.take(np.flatnonzero(keep), ts.name)


def _set_outcomes(run: SweepRun, ts: TargetSet) -> tuple[np.ndarray, np.ndarray]:
    """(S,) correct and counted summed over the set's targets."""
    assert run.predictions is not None
    correct = np.zeros(run.bench.n_scenarios, dtype=np.int64)
    counted = np.zeros(run.bench.n_scenarios, dtype=np.int64)
    for o in all_outcomes(run.bench, run.predictions, ts):
        correct += o.correct.sum(axis=1)
        counted += o.counted.sum(axis=1)
    return correct, counted


def _by_scenario(table: pa.Table) -> dict[str, list[JSONObj]]:
    cols = ("scenario", "response", "attribute", "sample", "prediction", "reasoning", "raw",
            "error")
    d = table.select(list(cols)).to_pydict()
    out: dict[str, list[JSONObj]] = {}
    for i in range(table.num_rows):
        row = {c: d[c][i] for c in cols[1:]}
        row["prediction"] = _num(row["prediction"])
        out.setdefault(str(d["scenario"][i]), []).append(row)
    return out
