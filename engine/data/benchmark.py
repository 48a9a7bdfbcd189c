"""The in-memory benchmark: scenarios plus the flat label arrays every vectorized path uses.

Responses of all scenarios are laid end to end; ``offsets[s]:offsets[s+1]`` are scenario s's.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from pluralign.engine.data.levels import grid_scale
from pluralign.engine.errors import InputError
from pluralign.engine.store.hashing import Hasher
from pluralign.schemas.records import Scenario

HELPSTEER2_ATTRIBUTES = ("helpfulness", "correctness", "coherence", "complexity", "verbosity")
HELPSTEER2_LEVELS = (0.0, 0.25, 0.5, 0.75, 1.0)
MIC_ATTRIBUTES = ("care", "fairness", "liberty", "loyalty", "authority", "sanctity")
MIC_LEVELS = tuple(round(i / 6, 2) for i in range(7))
NEUTRAL = 0.5
MAX_RESPONSES = 26
"""Most responses one scenario may have: LLM judges letter them A to Z (and every scorer
reads a benchmark the same way, so a file one judge cannot read is refused at load)."""


@dataclass(frozen=True, eq=False)
class Benchmark:
    """A validated benchmark split. Build it with :func:`make_benchmark`."""

    name: str
    """Benchmark name, e.g. ``helpsteer2``."""
    split: str
    """Split name, e.g. ``eval``."""
    attributes: tuple[str, ...]
    """Attribute names in canonical order (the column order of every array)."""
    levels: tuple[float, ...]
    """The discrete label values."""
    scenarios: tuple[Scenario, ...]
    """The scenarios, in file order."""
    source: str = ""
    """Where it was loaded from (for error messages)."""
    origin: str = ""
    """For a subset: the identity of the benchmark it was cut from (see :attr:`identity`)."""
    _index: dict[str, int] = field(default_factory=dict, repr=False)

    @property
    def n_scenarios(self) -> int:
        return len(self.scenarios)

    @cached_property
    def offsets(self) -> np.ndarray:
        """int64 (S+1,): scenario s owns flat responses offsets[s]:offsets[s+1]."""
        counts = np.fromiter((len(s.responses) for s in self.scenarios), dtype=np.int64)
        return np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)

    @property
    def n_responses(self) -> int:
        return int(self.offsets[-1])

    @cached_property
    def labels(self) -> np.ndarray:
        """float64 (N, A): true label of every flat response, attributes in canonical order."""
        out = np.empty((self.n_responses, len(self.attributes)), dtype=np.float64)
        row = 0
        for sc in self.scenarios:
            for lab in sc.labels:
                out[row] = [lab[a] for a in self.attributes]
                row += 1
        out.flags.writeable = False
        return out

    @cached_property
    def scale(self) -> int:
        """Integer grid of the labels: label * scale is an exact integer (4 for quarters)."""
        return grid_scale(list(self.levels) + list(np.unique(self.labels)))

    @cached_property
    def scenario_of(self) -> np.ndarray:
        """int64 (N,): scenario index of every flat response."""
        return np.repeat(np.arange(self.n_scenarios), np.diff(self.offsets))

    @cached_property
    def response_index(self) -> np.ndarray:
        """int64 (N,): index of every flat response within its scenario."""
        return np.arange(self.n_responses) - np.repeat(self.offsets[:-1], np.diff(self.offsets))

    def index_of(self, scenario_id: str) -> int:
        """Position of a scenario id."""
        if not self._index:
            self._index.update({s.id: i for i, s in enumerate(self.scenarios)})
        return self._index[scenario_id]

    @cached_property
    def content_hash(self) -> str:
        """SHA-256 (16 hex) of everything that defines the benchmark's answers."""
        h = Hasher(json.dumps([self.name, self.split, self.attributes]))
        for sc in self.scenarios:
            h.update(json.dumps([sc.id, sc.prompt, list(sc.responses)]))
        return h.array(self.labels).hexdigest(16)

    @property
    def identity(self) -> str:
        """Name used in cache keys: ``name/split@hash``.

        A subset keeps the identity of the benchmark it was cut from: its scenarios are the same
        items, so scores cached by a run with a ``limit`` serve the full run and the other way
        round.
        """
        return self.origin or f"{self.name}/{self.split}@{self.content_hash}"

    def subset(self, n: int) -> Benchmark:
        """The first ``n`` scenarios (for quick runs), sharing this benchmark's cache keys."""
        if n >= self.n_scenarios:
            return self
        return Benchmark(self.name, self.split, self.attributes, self.levels,
                         self.scenarios[:n], self.source, origin=self.identity)


def make_benchmark(
    name: str,
    split: str,
    attributes: Sequence[str],
    levels: Sequence[float],
    scenarios: Sequence[Scenario],
    source: str = "",
) -> Benchmark:
    """Validate scenarios and build a :class:`Benchmark`.

    Every error names the source, the scenario and the field (:class:`InputError`).
    """
    attrs = tuple(attributes)
    if not attrs:
        raise InputError("a benchmark needs at least one attribute", file=source or None)
    if len(set(attrs)) != len(attrs):
        raise InputError(f"duplicate attribute names {attrs}", file=source or None)
    if not scenarios:
        raise InputError("no scenarios", file=source or None, hint="the split is empty")
    seen: set[str] = set()
    for pos, sc in enumerate(scenarios):
        _validate_scenario(sc, pos, attrs, seen, source)
    return Benchmark(name, split, attrs, tuple(float(v) for v in levels), tuple(scenarios), source)


def _validate_scenario(
    sc: Scenario, pos: int, attrs: tuple[str, ...], seen: set[str], source: str
) -> None:
    rec = f"{pos} (id {sc.id!r})"
    file = source or None
    if sc.id in seen:
        raise InputError("duplicate scenario id", file=file, record=rec, field="id")
    seen.add(sc.id)
    if not isinstance(sc.prompt, str):
        raise InputError("prompt must be a string", file=file, record=rec, field="prompt")
    if not sc.prompt.strip():
        raise InputError("empty prompt: there is nothing to steer a response to", file=file,
                         record=rec, field="prompt")
    if len(sc.responses) < 2:
        raise InputError(
            f"needs at least 2 responses, has {len(sc.responses)}",
            file=file, record=rec, field="responses",
        )
    if len(sc.responses) > MAX_RESPONSES:
        raise InputError(
            f"has {len(sc.responses):,} responses; at most {MAX_RESPONSES} are taken",
            file=file, record=rec, field="responses",
            hint="judges letter responses A to Z; split the scenario")
    for r, text in enumerate(sc.responses):
        if not isinstance(text, str):
            raise InputError(f"every response must be a string (response {r} is not)",
                             file=file, record=rec, field="responses")
        if not text.strip():
            raise InputError("empty response: there is nothing to judge", file=file,
                             record=rec, field=f"responses[{r}]")
    if len(sc.labels) != len(sc.responses):
        raise InputError(
            f"{len(sc.labels)} label dicts for {len(sc.responses)} responses",
            file=file, record=rec, field="labels",
        )
    for r, lab in enumerate(sc.labels):
        _validate_values(lab, attrs, file, rec, f"labels[{r}]", require_all=True)
    if sc.reasonings is not None and len(sc.reasonings) != len(sc.responses):
        raise InputError(
            f"{len(sc.reasonings)} reasonings for {len(sc.responses)} responses",
            file=file, record=rec, field="reasonings",
        )


def _validate_values(
    values: Mapping[str, float],
    attrs: tuple[str, ...],
    file: str | None,
    rec: object,
    where: str,
    require_all: bool,
) -> None:
    if not isinstance(values, Mapping):
        raise InputError("must be an object of attribute -> value", file=file, record=rec,
                         field=where)
    for a in values:
        if a not in attrs:
            raise InputError(
                f"unknown attribute {a!r}", file=file, record=rec, field=f"{where}.{a}",
                hint=f"known: {', '.join(attrs)}",
            )
    for a in attrs:
        if a not in values:
            if require_all:
                raise InputError("missing attribute", file=file, record=rec,
                                 field=f"{where}.{a}")
            continue
        v = values[a]
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise InputError(f"value {v!r} is not a number", file=file, record=rec,
                             field=f"{where}.{a}")
        if math.isnan(v) or not 0.0 <= v <= 1.0:
            raise InputError(f"value {v!r} is outside [0, 1]", file=file, record=rec,
                             field=f"{where}.{a}")


validate_values = _validate_values
