"""The research code's per-target runs, imported as choices: a folder of runs (or one run's
``input_output.json``), each aligned to one target, re-scored into the choice cache.

Every layout their ``score.py`` reads is accepted: items whose ``output.choice_info`` holds
predictions (all attributes, or only the target's, as in their sampled-target regression runs)
are re-aligned to the run's target by our choice rule; items without predictions
(prompt-aligned, unaligned, random, reward-model runs) contribute their
``output.selected_response_index``. A run's target is ``target.json`` beside its
``input_output.json``, else the ``alignment_target`` named in the run's ``.hydra/config.yaml``,
read from ``targets_dir`` (the folder holding their ``alignment_targets/``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pluralign.engine.align.align_loop import predicted_choice
from pluralign.engine.data.benchmark import Benchmark
from pluralign.engine.data.targets import from_dicts
from pluralign.engine.errors import InputError
from pluralign.engine.store.cache import scorer_identity
from pluralign.engine.store.choices import ChoiceCache, choice_key
from pluralign.engine.store.files import read_json
from pluralign.engine.store.hashing import Hasher

RUN_FILE = "input_output.json"
_HYDRA_TARGET = re.compile(r"^alignment_target:\s*['\"]?([^'\"#\s]+)", re.MULTILINE)


@dataclass(frozen=True)
class ImportedRun:
    """One run: its file, its target and its items."""

    file: Path
    """The run's ``input_output.json``."""
    target: Mapping[str, float]
    """The target the run was aligned to."""
    items: list[object]
    """The run's items, one per scenario in benchmark order."""


def run_files(path: str | Path) -> list[Path]:
    """``path`` itself when it is a file, else every input_output.json below it (sorted)."""
    p = Path(path)
    if p.is_file():
        return [p]
    found = sorted(p.rglob(RUN_FILE)) if p.is_dir() else []
    if not found:
        raise InputError(f"no {RUN_FILE} found", file=p,
                         hint="point predictions: at a run's file or a folder of runs")
    return found


def run_target(file: Path, targets_dir: str | Path | None) -> dict[str, float]:
    """The target of the run holding ``file``; errors say where it looked."""
    beside = file.parent / "target.json"
    if beside.is_file():
        return _target_dict(read_json(beside), beside)
    hydra = file.parent / ".hydra" / "config.yaml"
    if hydra.is_file():
        m = _HYDRA_TARGET.search(hydra.read_text(encoding="utf-8", errors="replace"))
        if m and targets_dir is not None:
            named = Path(targets_dir) / f"{m.group(1)}.json"
            if named.is_file():
                return _target_dict(read_json(named), named)
            raise InputError(f"target {m.group(1)!r} not found (looked for {named})",
                             file=hydra, field="alignment_target")
        if m:
            raise InputError(f"the run names target {m.group(1)!r}; say where targets live",
                             file=hydra, field="alignment_target",
                             hint="pass the folder holding alignment_targets/ as `targets_dir`")
    raise InputError("the run's target is unknown (looked for target.json and "
                     ".hydra/config.yaml beside it)", file=file)


def _target_dict(data: object, file: Path) -> dict[str, float]:
    if not isinstance(data, Mapping) or not data:
        raise InputError("a target must be a non-empty object of attribute -> value", file=file)
    return {str(k): v for k, v in data.items()}


def load_runs(path: str | Path, targets_dir: str | Path | None = None) -> list[ImportedRun]:
    out = []
    for f in run_files(path):
        items = read_json(f)
        if not isinstance(items, list):
            raise InputError("expected a list of input/output items", file=f)
        out.append(ImportedRun(f, run_target(f, targets_dir), items))
    return out


def run_choices(bench: Benchmark, run: ImportedRun) -> np.ndarray:
    """int64 (S,): the response each scenario's item selects for the run's target."""
    if len(run.items) != bench.n_scenarios:
        raise InputError(f"{len(run.items)} items for {bench.n_scenarios} scenarios",
                         file=run.file, hint=f"the run must cover {bench.identity} in order")
    keys = list(run.target)
    out = np.empty(bench.n_scenarios, dtype=np.int64)
    for s, item in enumerate(run.items):
        rec = f"{s} (scenario {bench.scenarios[s].id!r})"
        k = len(bench.scenarios[s].responses)
        output = item.get("output") if isinstance(item, Mapping) else None
        if not isinstance(output, Mapping):
            raise InputError("missing", file=run.file, record=rec, field="output")
        info = output.get("choice_info")
        preds = info.get("predictions") if isinstance(info, Mapping) else None
        if preds is not None:
            out[s] = _predicted(preds, keys, run, rec, k)
        else:
            out[s] = _selected(output.get("selected_response_index"), run, rec, k)
    return out


def _predicted(preds: object, keys: list[str], run: ImportedRun, rec: str, k: int) -> int:
    where = "output.choice_info.predictions"
    if not isinstance(preds, list) or len(preds) != k:
        raise InputError(f"needs one dict per response ({k})", file=run.file, record=rec,
                         field=where)
    rows = []
    for r, p in enumerate(preds):
        if not isinstance(p, Mapping) or any(a not in p for a in keys):
            raise InputError(f"needs the target's attributes {keys}", file=run.file,
                             record=rec, field=f"{where}[{r}]")
        row = [p[a] for a in keys]
        if any(isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)
               for v in row):
            raise InputError("scores must be finite numbers", file=run.file, record=rec,
                             field=f"{where}[{r}]")
        rows.append(row)
    items = [(j, float(run.target[a])) for j, a in enumerate(keys)]
    return predicted_choice(np.asarray(rows, dtype=np.float64), items)


def _selected(v: object, run: ImportedRun, rec: str, k: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < k:
        raise InputError(f"{v!r} is not a response index below {k}", file=run.file,
                         record=rec, field="output.selected_response_index",
                         hint="an item needs choice_info.predictions or a selected index")
    return v


def import_runs(bench: Benchmark, path: str | Path, cache: ChoiceCache,
                targets_dir: str | Path | None = None) -> tuple[str, list[str]]:
    """Write every run's choices into ``cache``; returns (scorer identity, canonical target
    JSON per run). The identity hashes the runs' contents (never their paths)."""
    runs = load_runs(path, targets_dir)
    ident = scorer_identity("predictions-runs",
                            {"sha256": Hasher().files(r.file for r in runs).hexdigest()})
    done = cache.completed_keys(bench.identity, ident)
    targets = []
    for run in runs:
        target = from_dicts("run", bench.attributes, [run.target], source=str(run.file)).json(0)
        targets.append(target)
        rows = []
        for s, choice in enumerate(run_choices(bench, run).tolist()):
            sc = bench.scenarios[s]
            key = choice_key(bench.identity, sc.id, target, ident, 0)
            if key not in done:
                rows.append({"key": key, "benchmark": bench.identity, "scenario": sc.id,
                             "target": target, "scorer": ident, "sample": 0,
                             "choice": int(choice), "reasoning": None, "error": None,
                             "meta": "{}"})
        cache.append(rows)
    return ident, targets
