"""Alignment targets: the all / sampled / high / low sets, target files and inline targets.

A target maps attributes to desired values; attributes at exactly the neutral 0.5 are dropped, so
the all-neutral combination is the empty target. Sets are stored as a (T, A) float matrix with
NaN for an absent attribute, in the benchmark's attribute order.
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pluralign.engine.data.benchmark import NEUTRAL, validate_values
from pluralign.engine.errors import InputError
from pluralign.engine.store.files import DuplicateKeyError, loads_unique, read_json


@dataclass(frozen=True, eq=False)
class TargetSet:
    """An ordered set of alignment targets over fixed attributes."""

    name: str
    """Set name: ``all``, ``sampled``, ``high``, ``low``, a file name or ``inline``."""
    attributes: tuple[str, ...]
    """Attribute order of ``values``' columns."""
    values: np.ndarray
    """float64 (T, A); NaN where the target does not name the attribute."""
    grid: tuple[tuple[float, ...], ...] | None = None
    """Set when ``values`` is the full product of these per-attribute values (NaN = neutral),
    first attribute varying slowest: lets re-alignment use the grid structure."""
    labels: tuple[str, ...] | None = None
    """Optional per-target names (e.g. the file each came from)."""

    def __len__(self) -> int:
        return int(self.values.shape[0])

    @property
    def n_attributes(self) -> np.ndarray:
        """int64 (T,): how many attributes each target names."""
        return (~np.isnan(self.values)).sum(axis=1).astype(np.int64)

    def target(self, i: int) -> dict[str, float]:
        """Target ``i`` as an attribute -> value dict (neutral attributes absent)."""
        row = self.values[i]
        return {a: float(v) for a, v in zip(self.attributes, row, strict=True) if not np.isnan(v)}

    def json(self, i: int) -> str:
        """Canonical JSON text of target ``i`` (attribute order of the benchmark)."""
        return json.dumps(self.target(i))

    def json_all(self) -> list[str]:
        return [self.json(i) for i in range(len(self))]

    def take(self, idx: Sequence[int] | np.ndarray, name: str | None = None) -> TargetSet:
        """A subset (loses the grid marker)."""
        idx = np.asarray(idx, dtype=np.int64)
        labels = None if self.labels is None else tuple(self.labels[i] for i in idx)
        return TargetSet(name or self.name, self.attributes, self.values[idx], None, labels)


def _row(target: Mapping[str, float], attributes: Sequence[str]) -> list[float]:
    return [
        float("nan") if a not in target or float(target[a]) == NEUTRAL else float(target[a])
        for a in attributes
    ]


def from_dicts(
    name: str,
    attributes: Sequence[str],
    targets: Sequence[Mapping[str, float]],
    *,
    source: str | None = None,
    labels: Sequence[str] | None = None,
) -> TargetSet:
    """Validate dict targets (unknown attribute, value outside [0,1]) and build a set."""
    attrs = tuple(attributes)
    for i, t in enumerate(targets):
        validate_values(t, attrs, source, i, "target", require_all=False)
    values = np.array([_row(t, attrs) for t in targets], dtype=np.float64).reshape(-1, len(attrs))
    return TargetSet(name, attrs, values, None, tuple(labels) if labels else None)


def all_targets(attributes: Sequence[str], levels: Sequence[float]) -> TargetSet:
    """Every combination of levels over all attributes (neutral dropped): L**A targets."""
    attrs = tuple(attributes)
    per_attr = tuple(float("nan") if v == NEUTRAL else float(v) for v in levels)
    grid = tuple(per_attr for _ in attrs)
    values = np.array(list(itertools.product(*grid)), dtype=np.float64)
    return TargetSet("all", attrs, values.reshape(-1, len(attrs)), grid)


GENERATED_SAMPLED = "random-sampled"
"""Name of the generated stand-in for a published ``sampled`` set."""


def high_target(attributes: Sequence[str]) -> TargetSet:
    """Every attribute at 1.0."""
    return TargetSet("high", tuple(attributes), np.ones((1, len(attributes))))


def low_target(attributes: Sequence[str]) -> TargetSet:
    """Every attribute at 0.0."""
    return TargetSet("low", tuple(attributes), np.zeros((1, len(attributes))))


def sampled_targets(
    attributes: Sequence[str], levels: Sequence[float], per_count: int = 10, seed: int = 0
) -> TargetSet:
    """``per_count`` random targets for each number of attributes 1..A (the sampled targets of
    Adams et al., "Steerable Pluralism: Pluralistic Alignment via Few-Shot Comparative
    Regression", §5.1).

    Values are drawn from the non-neutral levels, so each target names exactly that many
    attributes. A generated set, so it carries its own name (``random-sampled``), never the
    published set's.
    """
    attrs = tuple(attributes)
    rng = np.random.default_rng(seed)
    choices = [float(v) for v in levels if v != NEUTRAL]
    rows, labels = [], []
    for k in range(1, len(attrs) + 1):
        for j in range(per_count):
            row = [float("nan")] * len(attrs)
            for a in rng.choice(len(attrs), size=k, replace=False):
                row[int(a)] = float(rng.choice(choices))
            rows.append(row)
            labels.append(f"{k}attributes_target{j:02d}")
    return TargetSet(GENERATED_SAMPLED, attrs, np.array(rows), None, tuple(labels))


def load_target_files(
    paths: Sequence[str | os.PathLike[str]], attributes: Sequence[str], name: str | None = None
) -> TargetSet:
    """Targets from JSON files: each holds one target object or a list of them.

    A directory stands for every ``*.json`` in it, sorted by name.
    """
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files.extend(sorted(p.glob("*.json")))
        elif p.exists():
            files.append(p)
        else:
            raise InputError("target file not found", file=p)
    if not files:
        raise InputError("no target files", file=", ".join(map(str, paths)))
    dicts: list[Mapping[str, float]] = []
    labels: list[str] = []
    attrs = tuple(attributes)
    for f in files:
        data = read_json(f, unique_keys=True)
        if data == []:
            raise InputError("empty target list: the file holds no target", file=f,
                             hint="write at least one target object")
        items = data if isinstance(data, list) else [data]
        for i, t in enumerate(items):
            rec = i if isinstance(data, list) else None
            if not isinstance(t, dict):
                raise InputError("a target must be a JSON object", file=f, record=rec)
            validate_values(t, attrs, str(f), rec, "target", require_all=False)
            dicts.append(t)
            labels.append(f.stem if rec is None else f"{f.stem}[{i}]")
    default = files[0].parent.name if len(files) > 1 else files[0].stem
    return from_dicts(name or default, attrs, dicts, labels=labels)


def parse_inline(text: str, attributes: Sequence[str]) -> TargetSet:
    """An inline target: JSON (``'{"helpfulness": 1}'``) or ``helpfulness=1,verbosity=0``."""
    text = text.strip()
    try:
        if text.startswith("{") or text.startswith("["):
            data = loads_unique(text)
        else:
            data = {}
            for part in filter(None, (p.strip() for p in text.split(","))):
                key, _, val = part.partition("=")
                if key.strip() in data:
                    raise DuplicateKeyError(key.strip())
                data[key.strip()] = float(val)
    except DuplicateKeyError as e:
        raise InputError(f"inline target {text!r}: {e}", file="inline target", field=e.key,
                         hint="name each attribute once") from None
    except (json.JSONDecodeError, ValueError) as e:
        raise InputError(f"cannot parse inline target {text!r}: {e}",
                         hint='write {"attr": value} or attr=value,attr=value') from None
    items = data if isinstance(data, list) else [data]
    if not items:
        raise InputError(f"inline target {text!r} names no target", file="inline target",
                         hint='write {"attr": value} or a non-empty list of them')
    for i, t in enumerate(items):
        if not isinstance(t, dict):
            raise InputError("a target must be an object", file="inline target", record=i)
        validate_values(t, tuple(attributes), "inline target", i, "target", require_all=False)
    return from_dicts("inline", attributes, items)


def concat(sets: Sequence[TargetSet], name: str) -> TargetSet:
    """Several sets as one (loses the grid marker)."""
    attrs = sets[0].attributes
    values = np.concatenate([s.values for s in sets], axis=0)
    labels: list[str] = []
    for s in sets:
        labels.extend(s.labels or [f"{s.name}[{i}]" for i in range(len(s))])
    return TargetSet(name, attrs, values, None, tuple(labels))
