"""Re-alignment queries answered from the score cache alone: the logic behind ``pluralign
serve`` (locally and as a Ray Serve deployment), with no HTTP in it.

A query names a benchmark, a scorer (by name and options, as ``pluralign align`` takes them,
or by its exact identity) and targets (inline objects or the set names ``all``, ``sampled``,
``high``, ``low``, ``random-sampled``; never files); the answer is computed by the same functions ``pluralign align`` calls
(:func:`resolve_target_sets`, :meth:`ScoreCache.predictions`, :func:`realign`,
:func:`chosen_responses`), except that a set of a few targets goes to :func:`realign_few`,
equal to those two bit for bit and several times cheaper there (no label index to build).
Benchmarks, scorer identities, predictions and label indexes are kept in bounded LRU maps;
predictions are keyed by the cache's part listing, so a part a sweep adds is picked up by the
next query without a restart. ``align(ready_only=True)`` answers only a small query whose
pieces are all in memory (:class:`NotReady` otherwise): the local server computes those in
its event loop.
"""

from __future__ import annotations

import fnmatch
import functools
import json
import math
import os
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, NotRequired, TypedDict, TypeVar

import numpy as np

from pluralign.engine.align.align_loop import target_scale
from pluralign.engine.align.realign import (
    FEW_TARGETS,
    AlignResult,
    LabelIndex,
    chosen_responses,
    parse_memory_budget,
    realign,
    realign_few,
)
from pluralign.engine.data.benchmark import Benchmark
from pluralign.engine.data.sources import parse_synthetic
from pluralign.engine.data.target_sets import TARGET_SET_NAMES, resolve_target_sets
from pluralign.engine.data.targets import TargetSet
from pluralign.engine.errors import DataNotFoundError, InputError, NotCached, TooLarge
from pluralign.engine.scorers import Scorer, get_scorer, scorer_names
from pluralign.engine.store.cache import ScoreCache, summarize
from pluralign.engine.store.hashing import Hasher
from pluralign.engine.store.parts import PART_GLOB
from pluralign.jobs.runtime import load_splits, scorer_options

__all__ = ["LRU", "QUERY_FIELDS", "AlignAnswer", "Answer", "ErrorAnswer", "HealthAnswer", "Limits",
           "NotCached", "NotReady", "Query", "QueryService", "ScorerRow", "ScorersAnswer", "TargetAnswer",
           "TooLarge", "parse_query", "status_of"]

QUERY_FIELDS = frozenset({"benchmark", "split", "limit", "scorer", "scorer_id", "seed",
                          "value", "samples", "targets", "per_scenario", "weighted"})
"""The fields of a ``POST /v1/align`` body (jobs/serve/openapi.py describes each)."""

INLINE_PAIRS = 1 << 16
"""A query is answered where it arrives (``align(ready_only=True)``) when its targets x
responses are at most this: tens of microseconds of compiled work."""

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
T = TypeVar("T")
D = TypeVar("D")


@dataclass(frozen=True)
class Limits:
    """Service limits: request body bytes and read time, targets per request, per-scenario
    cells, samples, and the size of synthetic benchmarks (none unless the operator allows)."""

    max_body: int = 1 << 20
    max_targets: int = 120_000
    max_choice_cells: int = 2_000_000
    max_samples: int = 1_000
    max_synthetic_scenarios: int = 0
    """Largest synthetic benchmark a request may name (0: synthetic benchmarks not served)."""
    body_seconds: float = 10.0
    """Time a client has to send its whole request body (408 beyond)."""


SERVED_BENCHMARKS = ("helpsteer2", "mic")
"""Benchmarks the service reads from its data folder, by name only (never a path)."""
SERVED_SPLITS = ("eval", "train")
"""Splits a request may name."""
MAX_SEED = 2**63 - 1
_PART = re.compile(fnmatch.translate(PART_GLOB))


class LRU(Generic[K, V]):
    """A small thread-safe LRU map with a compute-on-miss ``get``: at most ``size`` entries
    and, with ``weigh``, at most ``max_weight`` in total (the newest entry always stays)."""

    def __init__(self, size: int, *, weigh: Callable[[V], int] | None = None,
                 max_weight: int = 0) -> None:
        self.size = max(1, size)
        self._d: OrderedDict[K, V] = OrderedDict()
        self._w: dict[K, int] = {}
        self._weigh, self._max_weight = weigh, max_weight
        self._total = 0
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def get(self, key: K, make: Callable[[], V]) -> V:
        found = self.peek(key)
        if found is not None:
            return found
        value = make()
        with self._lock:
            self.misses += 1
        self.put(key, value)
        return value

    def peek(self, key: K) -> V | None:
        """The value kept for ``key`` (now the most recent), or None."""
        with self._lock:
            if key in self._d:
                self._d.move_to_end(key)
                self.hits += 1
                return self._d[key]
        return None

    def put(self, key: K, value: V) -> None:
        """Keep ``value``, dropping the least recent entries beyond the bounds."""
        with self._lock:
            if key in self._d:
                self._total -= self._w[key]
            self._d[key] = value
            self._d.move_to_end(key)
            self._w[key] = self._weigh(value) if self._weigh else 0
            self._total += self._w[key]
            while len(self._d) > 1 and (len(self._d) > self.size or (
                    self._weigh and self._total > self._max_weight)):
                old, _ = self._d.popitem(last=False)
                self._total -= self._w.pop(old, 0)

    @property
    def weight(self) -> int:
        """The entries' total weight."""
        return self._total

    def __len__(self) -> int:
        return len(self._d)


class NotReady(Exception):
    """``align(ready_only=True)``: the answer needs something loaded (a benchmark, a scorer,
    predictions, a named target set) or is too large to compute where the request arrived."""


def _kept(lru: LRU[K, V], key: K, make: Callable[[], V], ready_only: bool) -> V:
    """``lru.get(key, make)``; with ``ready_only``, only what is kept (else :class:`NotReady`)."""
    if not ready_only:
        return lru.get(key, make)
    found = lru.peek(key)
    if found is None:
        raise NotReady
    return found


# -- answers (JSON objects) -------------------------------------------------------------------
class TargetAnswer(TypedDict):
    """One target's answer: ``pluralign align``'s figures, the weighted scores when asked
    (the default) and the chosen response per scenario with ``per_scenario``."""

    set: str
    target: dict[str, float]
    accuracy: float | None
    counted: int
    correct: int
    weighted_score: NotRequired[float | None]
    closeness: NotRequired[float | None]
    chosen: NotRequired[list[int]]


class AlignAnswer(TypedDict):
    """``POST /v1/align``."""

    benchmark: str
    scorer: str
    scenarios: int
    targets: list[TargetAnswer]
    scenario_ids: NotRequired[list[str]]


class ScorerRow(TypedDict):
    """One (benchmark, scorer identity) the cache holds, as ``pluralign cache show`` says."""

    benchmark: str
    scorer: str
    name: str
    complete: int
    failed: int
    scenarios: int
    attributes: list[str]
    samples: int
    settings: dict[str, Any] | None
    """The decoded scorer settings stored with the parts (JSON as written)."""


class ScorersAnswer(TypedDict):
    """``GET /v1/scorers``."""

    cache_parts: int
    scorers: list[ScorerRow]


class LRUSizes(TypedDict):
    benchmarks: int
    predictions: int
    label_indexes: int


class HealthAnswer(TypedDict):
    """``GET /healthz``."""

    status: str
    cache: str
    lru: LRUSizes


class ErrorAnswer(TypedDict):
    """Any error: one line."""

    error: str


Answer = AlignAnswer | ScorersAnswer | HealthAnswer | ErrorAnswer | dict[str, Any]
"""Every JSON object the service answers."""


# -- the query ---------------------------------------------------------------------------------
def _kind_error(name: str, names: str, value: object) -> InputError:
    return InputError(f"must be {names}, got {type(value).__name__}", field=name)


def _field(body: Mapping[str, object], name: str, kind: type[T], default: D) -> T | D:
    """``body[name]`` when of type ``kind`` (a bool is never an int), ``default`` when absent."""
    value = body.get(name, default)
    if value is default:
        return default
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise _kind_error(name, kind.__name__, value)
    return value


def _number(body: Mapping[str, object], name: str, default: float) -> float:
    value = body.get(name, default)
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise _kind_error(name, "int or float", value)
    return float(value)


@dataclass(frozen=True)
class Query:
    benchmark: str
    split: str
    limit: int | None
    scorer: str
    scorer_id: str | None
    seed: int
    value: float
    samples: int | None
    targets: tuple[str, ...]
    """Each target spec as ``pluralign align`` takes it: a set name or inline JSON."""
    per_scenario: bool
    weighted: bool


_IDENTITY = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:+-]{0,200}#[0-9a-f]{6,64}")
"""A scorer identity as the cache stores it (``ridge#3f2a...``, ``comparative-regression#...``)."""


def _benchmark(name: str, limits: Limits) -> str:
    """``name`` when the service serves it: helpsteer2 or mic (read from the data folder it
    was started with), or a synthetic benchmark within the operator's size cap. Never a path."""
    if name in SERVED_BENCHMARKS:
        return name
    if name == "synthetic" or name.startswith("synthetic:"):
        if limits.max_synthetic_scenarios <= 0:
            raise InputError("synthetic benchmarks are not served here", field="benchmark",
                             hint="the operator enables them with a size cap")
        scenarios = _synthetic_scenarios(name)
        if scenarios > limits.max_synthetic_scenarios:
            raise TooLarge(f"a synthetic benchmark of {scenarios:,} scenarios; this service "
                           f"serves at most {limits.max_synthetic_scenarios:,}")
        return name
    raise InputError(f"unknown benchmark {name[:40]!r}", field="benchmark",
                     hint=f"one of {', '.join(SERVED_BENCHMARKS)}")


@functools.lru_cache(maxsize=64)
def _synthetic_scenarios(name: str) -> int:
    """The scenarios of a synthetic benchmark's name, once per name: parsing it checks free
    memory (a read of the system's figures per query otherwise); a refusal is not kept, and
    generating the benchmark checks again."""
    return int(parse_synthetic(name)["S"])


def parse_query(body: object, limits: Limits) -> Query:
    """A validated query, or :class:`InputError` naming the field (or :class:`TooLarge`)."""
    if not isinstance(body, dict):
        raise InputError("the request body must be a JSON object", field="body")
    unknown = sorted(set(body) - QUERY_FIELDS)
    if unknown:
        raise InputError(f"unknown field(s) {', '.join(unknown)}", field=unknown[0],
                         hint=f"known: {', '.join(sorted(QUERY_FIELDS))}")
    if "benchmark" not in body:
        raise InputError("missing", field="benchmark")
    bench = _benchmark(_field(body, "benchmark", str, ""), limits)
    split = _field(body, "split", str, "eval")
    if split not in SERVED_SPLITS:
        raise InputError(f"unknown split {split[:40]!r}", field="split",
                         hint=f"one of {', '.join(SERVED_SPLITS)}")
    limit = _field(body, "limit", int, None)
    if limit is not None and limit < 1:
        raise InputError("must be at least 1", field="limit")
    samples = _field(body, "samples", int, None)
    if samples is not None and not 1 <= samples <= limits.max_samples:
        raise InputError(f"must be between 1 and {limits.max_samples}", field="samples")
    scorer = _field(body, "scorer", str, "ridge")
    served = [n for n in scorer_names("model-free") if n != "predictions"]
    if scorer not in served:
        raise InputError(f"unknown scorer {scorer[:40]!r}", field="scorer",
                         hint=f"one of {', '.join(served)}; a model's cached scores by their "
                              "identity as scorer_id")
    seed = _field(body, "seed", int, 0)
    if not 0 <= seed <= MAX_SEED:
        raise InputError("must be between 0 and 2**63 - 1", field="seed")
    scorer_id = _field(body, "scorer_id", str, None)
    if scorer_id is not None and not _IDENTITY.fullmatch(scorer_id):
        raise InputError("not a scorer identity (name#hex, as pluralign cache show lists)",
                         field="scorer_id")
    value = _number(body, "value", 0.5)
    if not math.isfinite(value):
        raise InputError("must be finite", field="value")
    raw: object = body.get("targets")
    if raw is None:
        raise InputError("missing", field="targets")
    items: list[object] = list(raw) if isinstance(raw, list) else [raw]
    if not items:
        raise InputError("empty target list", field="targets")
    if len(items) > limits.max_targets:
        raise TooLarge(f"{len(items)} targets in one request; the limit is {limits.max_targets}")
    specs: list[str] = []
    for i, t in enumerate(items):
        if isinstance(t, dict):
            specs.append(json.dumps(t))
        elif isinstance(t, str) and t in TARGET_SET_NAMES:
            specs.append(t)
        else:
            raise InputError(f"a target is an object of attribute values or one of "
                             f"{', '.join(TARGET_SET_NAMES)}; got {str(t)[:40]!r}",
                             field=f"targets[{i}]")
    return Query(bench, split, limit, scorer, scorer_id, seed, value, samples, tuple(specs),
                 _field(body, "per_scenario", bool, False),
                 _field(body, "weighted", bool, True))


def _benchmarks_bytes(pair: tuple[Benchmark, Benchmark | None]) -> int:
    """Rough bytes of loaded splits: their arrays plus ~1 KB of text per response."""
    total = 0
    for b in pair:
        if b is not None:
            arrays = [v for v in vars(b).values() if isinstance(v, np.ndarray)]
            total += sum(a.nbytes for a in arrays) + 1024 * b.n_responses
    return total


def _index_bytes(index: LabelIndex) -> int:
    held: list[np.ndarray | None] = [index.masks, getattr(index, "l1", None),
                                     getattr(index, "l2", None), index.units]
    return int(sum(a.nbytes for a in held if a is not None))


def _check_scale(bench: Benchmark, ts: TargetSet) -> None:
    """Target values on a grid fine enough to compare exactly (what re-alignment needs
    first), or :class:`InputError` naming the targets."""
    try:
        target_scale(bench, ts)
    except ValueError as e:
        raise InputError(f"{str(e)[:160]}", field="targets",
                         hint="give target values such as 0.25, 0.5 or 1") from None


def _finite(x: float) -> float | None:
    return None if math.isnan(x) else float(x)


class QueryService:
    """Answers queries from one cache folder; safe to call from several threads."""

    def __init__(self, cache: str | Path, data: str | None = None, *, lru: int = 16,
                 limits: Limits | None = None, memory_budget: int | str | None = None) -> None:
        self.cache = ScoreCache(cache)
        self.data = data
        self.limits = limits or Limits()
        self.memory_budget = parse_memory_budget(memory_budget)
        # Benchmarks are bounded by count and by bytes (a request names one; all the service
        # keeps across requests is these maps, each bounded).
        self._benches: LRU[tuple[str, str, int | None, bool],
                           tuple[Benchmark, Benchmark | None]] = LRU(
            lru, weigh=_benchmarks_bytes, max_weight=self.memory_budget)
        self._idents: LRU[tuple[str, str, int | None, str, int, float], str] = LRU(4 * lru)
        self._scorers: LRU[tuple[str, int, float], Scorer] = LRU(4 * lru)  # slow to build
        self._preds: LRU[tuple[str, str, int | None, int], np.ndarray] = LRU(lru)
        self._targets: LRU[tuple[str, tuple[str, ...]], list[TargetSet]] = LRU(16 * lru)
        # Label indexes of one target weigh little, of all targets up to the budget: bounded
        # by entries and by bytes.
        self._indexes: LRU[tuple[str, str], LabelIndex] = LRU(
            16 * lru, weigh=_index_bytes, max_weight=self.memory_budget)
        self._listing: tuple[int, int] | None = None
        """(modification time, version) of the cache folder at its last listing."""

    # -- pieces, each kept in an LRU ------------------------------------------------------
    def _splits(self, q: Query, need_train: bool, ready_only: bool = False
                ) -> tuple[Benchmark, Benchmark | None]:
        key = (q.benchmark, q.split, q.limit, need_train)
        return _kept(self._benches, key, lambda: load_splits(
            q.benchmark, q.split, self.data, limit=q.limit,
            train_split="train" if need_train else None), ready_only)

    def identity(self, q: Query, ready_only: bool = False) -> tuple[Benchmark, str]:
        """(benchmark, scorer identity) as ``pluralign align`` computes them."""
        if q.scorer_id:
            bench, _ = self._splits(q, False, ready_only)
            return bench, q.scorer_id
        scorer = _kept(self._scorers, (q.scorer, q.seed, q.value), lambda: get_scorer(
            q.scorer, **scorer_options(q.scorer, seed=q.seed, value=q.value)), ready_only)
        bench, train = self._splits(q, bool(scorer.needs_train), ready_only)
        key = (q.benchmark, q.split, q.limit, q.scorer, q.seed, q.value)
        return bench, _kept(self._idents, key, lambda: str(scorer.identity(bench, train)),
                            ready_only)

    def version(self) -> int:
        """A number that changes whenever a part file is added to the cache or removed from
        it: a hash of the part names (one directory listing, no stat per file), listed again
        only when the folder's modification time moved or is under a second old (a change
        within the same clock tick leaves it as it was)."""
        try:
            mtime = os.stat(self.cache.root).st_mtime_ns
        except FileNotFoundError:
            return 0
        seen = self._listing
        if seen is not None and seen[0] == mtime and time.time_ns() - mtime > 1_000_000_000:
            return seen[1]
        try:
            names = os.listdir(self.cache.root)
        except FileNotFoundError:
            return 0
        version = hash(tuple(sorted(n for n in names if _PART.fullmatch(n))))
        self._listing = (mtime, version)
        return version

    def predictions(self, bench: Benchmark, ident: str, samples: int | None,
                    ready_only: bool = False) -> np.ndarray:
        key = (bench.identity, ident, samples, self.version())  # a new part: a new key

        def load() -> np.ndarray:
            preds = self.cache.predictions(bench, ident, samples)
            missing = int(np.isnan(preds).any(axis=1).sum())
            if missing:
                raise NotCached(f"the cache holds no complete scores of {ident} for "
                                f"{bench.identity} ({missing} of {bench.n_responses} "
                                "responses missing); run pluralign sweep first")
            return preds

        return _kept(self._preds, key, load, ready_only)

    def target_sets(self, bench: Benchmark, specs: tuple[str, ...], ready_only: bool = False
                    ) -> list[TargetSet]:
        """The named sets and inline targets of a query; with ``ready_only``, a named set only
        when kept (inline targets are parsed, never loaded)."""
        key = (bench.identity, specs)
        make = lambda: resolve_target_sets(list(specs), bench, self.data)  # noqa: E731
        inline = all(s not in TARGET_SET_NAMES for s in specs)
        return _kept(self._targets, key, make, ready_only and not inline)

    def index(self, bench: Benchmark, ts: TargetSet) -> LabelIndex:
        h = Hasher().array(ts.values).hexdigest()
        _check_scale(bench, ts)
        return self._indexes.get(
            (bench.content_hash, h),
            lambda: LabelIndex(bench, ts, memory_budget=self.memory_budget))

    def _realign(self, bench: Benchmark, preds: np.ndarray, ts: TargetSet, q: Query
                 ) -> tuple[AlignResult, np.ndarray | None]:
        """One set's result and, with ``per_scenario``, its choices: a few targets by the
        exact rule alone (:func:`realign_few`: building and keeping a label index costs more
        than such an answer), more through a kept label index."""
        if len(ts) <= FEW_TARGETS:
            _check_scale(bench, ts)
            return realign_few(bench, preds, ts, weighted=q.weighted,
                               keep_chosen=q.per_scenario)
        index = self.index(bench, ts)
        res = realign(bench, preds, ts, weighted=q.weighted, index=index)
        chosen = chosen_responses(bench, preds, ts, index=index) if q.per_scenario else None
        return res, chosen

    # -- the query -------------------------------------------------------------------------
    def align(self, body: object, *, ready_only: bool = False) -> AlignAnswer:
        """The answer to one query (a JSON-ready dict). With ``ready_only``, only a small
        answer from what is kept in memory (at most :data:`INLINE_PAIRS` targets x responses;
        else :class:`NotReady`): one a server may compute where the request arrived."""
        q = parse_query(body, self.limits)
        if ready_only and len(q.targets) > FEW_TARGETS:
            raise NotReady
        bench, ident = self.identity(q, ready_only)
        sets = self.target_sets(bench, q.targets, ready_only)
        n_targets = sum(len(ts) for ts in sets)
        if ready_only and (any(len(ts) > FEW_TARGETS for ts in sets)
                           or n_targets * bench.n_responses > INLINE_PAIRS):
            raise NotReady
        if n_targets > self.limits.max_targets:
            raise TooLarge(f"the request names {n_targets} targets; the limit is "
                           f"{self.limits.max_targets}")
        if q.per_scenario and n_targets * bench.n_scenarios > self.limits.max_choice_cells:
            raise TooLarge(f"per-scenario output of {n_targets} targets x {bench.n_scenarios} "
                           f"scenarios exceeds {self.limits.max_choice_cells} cells")
        preds = self.predictions(bench, ident, q.samples, ready_only)
        out: list[TargetAnswer] = []
        for ts in sets:
            res, chosen = self._realign(bench, preds, ts, q)
            # Python numbers per column at once (tolist), not per element.
            acc, counted, correct = (res.accuracy.tolist(), res.counted.tolist(),
                                     res.correct.tolist())
            scores = None
            if res.weighted is not None and res.closeness is not None:
                scores = res.weighted.tolist(), res.closeness.tolist()
            for t in range(len(ts)):
                row = TargetAnswer(set=ts.name, target=ts.target(t), accuracy=_finite(acc[t]),
                                   counted=counted[t], correct=correct[t])
                if scores is not None:
                    row["weighted_score"] = _finite(scores[0][t])
                    row["closeness"] = _finite(scores[1][t])
                if chosen is not None:
                    row["chosen"] = chosen[:, t].tolist()
                out.append(row)
        answer = AlignAnswer(benchmark=bench.identity, scorer=ident,
                             scenarios=bench.n_scenarios, targets=out)
        if q.per_scenario:
            answer["scenario_ids"] = [s.id for s in bench.scenarios]
        return answer

    def scorers(self) -> ScorersAnswer:
        """What the cache holds, per benchmark and scorer identity, decoded (the same summary
        as ``pluralign cache show``): complete/failed items, scenarios, samples, settings."""
        rows = summarize(self.cache.root) if self.cache.root.is_dir() else []
        return ScorersAnswer(cache_parts=len(self.cache.parts()), scorers=[
            ScorerRow(benchmark=r.benchmark, scorer=r.scorer, name=r.scorer.split("#")[0],
                      complete=r.complete, failed=r.failed, scenarios=r.scenarios,
                      attributes=list(r.attributes), samples=r.samples, settings=r.settings)
            for r in rows])

    def health(self) -> HealthAnswer:
        return HealthAnswer(status="ok", cache="readable" if self.cache.root.is_dir() else "empty",
                            lru=LRUSizes(benchmarks=len(self._benches),
                                         predictions=len(self._preds),
                                         label_indexes=len(self._indexes)))


def status_of(exc: BaseException) -> int:
    """The HTTP status of an error raised while answering."""
    if isinstance(exc, TooLarge):
        return 413
    if isinstance(exc, NotCached | DataNotFoundError):
        return 404
    if isinstance(exc, InputError):
        return 400
    return 500
