"""The ``cache`` jobs: what a cache directory holds, whether to trust it, and cleanup.

A cache directory holds up to two part stores (``engine/store/parts.py``): the parts at its
root, and the choice parts under ``choices/``. The root parts are score parts, except in a
folder given to the ``spica`` commands as ``cache``, whose root parts are SPICA generations;
each function covers every store it finds. ``.claims/`` (work claims of running jobs) is never
touched. ``pluralign cache ls|show|verify|gc`` prints what these return.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypedDict

import pyarrow as pa
import pyarrow.parquet as pq

from pluralign.engine.errors import InputError
from pluralign.engine.store.cache import SCORE_LAYOUT, ScorerSummary, summarize
from pluralign.engine.store.choices import CHOICE_KIND, CHOICE_LAYOUT
from pluralign.engine.store.generations import GENERATION_LAYOUT
from pluralign.engine.store.parts import (
    CacheCheck,
    GCReport,
    PartLayout,
    PartStore,
    gc,
    list_parts,
    refuse_bad,
    verify,
)
from pluralign.jobs.runtime import cache_dir
from pluralign.schemas.arrow import schema_version_of

__all__ = ["CacheListing", "ChoiceRow", "GenerationRow", "ScoreRow", "ScorerSettings", "Store",
           "StoreCheck", "StoreGC", "cache_root", "gc_cache", "list_cache", "show_scorers",
           "stores", "verify_cache"]

StoreName = Literal["scores", "choices", "generations"]


@dataclass(frozen=True)
class Store:
    """One part store of a cache directory."""

    name: StoreName
    """``scores``, ``choices`` or ``generations``."""
    root: Path
    """Its directory."""
    layout: PartLayout
    """What its parts hold."""


class ScoreCounts(TypedDict):
    """The counts the score store keeps for one (benchmark, scorer identity)."""

    benchmark: str
    scorer: str
    complete: int
    failed: int
    scenarios: int
    attributes: list[str]
    samples: int


class ScoreRow(ScoreCounts):
    """What the score store holds for one (benchmark, scorer identity)."""

    store: Literal["scores"]


class ScorerSettings(ScoreCounts):
    """One scorer's counts and its stored settings, decoded."""

    settings: dict[str, Any] | None
    """The settings stored with the parts (JSON as written; None without a manifest)."""


class ChoiceRow(TypedDict):
    """What the choice store holds for one (benchmark, judge identity)."""

    store: Literal["choices"]
    benchmark: str
    scorer: str
    complete: int
    failed: int
    scenarios: int
    targets: int
    samples: int


class GenerationRow(TypedDict):
    """What the generation store holds for one (task, model)."""

    store: Literal["generations"]
    task: str
    model: str
    complete: int
    failed: int


@dataclass(frozen=True)
class CacheListing:
    """Everything ``cache ls`` lists."""

    scores: list[ScoreRow]
    choices: list[ChoiceRow]
    generations: list[GenerationRow]

    def rows(self) -> list[ScoreRow | ChoiceRow | GenerationRow]:
        return [*self.scores, *self.choices, *self.generations]


@dataclass(frozen=True)
class StoreCheck:
    """``verify`` of one store."""

    store: Store
    check: CacheCheck


@dataclass(frozen=True)
class StoreGC:
    """``gc`` of one store."""

    store: Store
    report: GCReport


def cache_root(cache: str | os.PathLike[str] | None) -> Path:
    """The cache directory (``cache``, else ``$PLURALIGN_CACHE``, else the user cache dir); an
    input error when there is none."""
    root = cache_dir(cache)
    if not root.is_dir():
        raise InputError("no cache here (not a directory)", file=root)
    return root


def stores(root: Path) -> list[Store]:
    """The part stores of a cache directory: the root's (score parts, or generation parts when
    every readable root part says so) and ``choices/`` when it exists."""
    kinds = set()
    for name in list_parts(root):
        try:
            kinds.add(schema_version_of(pq.read_schema(root / name))[1])
        except (pa.ArrowException, OSError):
            continue  # verify reports it
    out = [Store("generations", root, GENERATION_LAYOUT)
           if kinds == {GENERATION_LAYOUT.kind} else Store("scores", root, SCORE_LAYOUT)]
    if (root / CHOICE_KIND).is_dir():
        out.append(Store("choices", root / CHOICE_KIND, CHOICE_LAYOUT))
    return out


def _summaries(root: Path, found: list[Store]) -> list[ScorerSummary]:
    return summarize(root) if found[0].name == "scores" else []


Pair = tuple[str, str]


def _tally(store: Store, columns: Pair
           ) -> tuple[Counter[Pair], Counter[Pair], dict[Pair, dict[str, set[object]]]]:
    """Per pair of ``columns`` values: complete keys, failed keys, and the distinct scenarios,
    targets and samples where the store has them."""
    ok, bad = PartStore(store.root, store.layout).resolve()
    done = Counter(zip(*(ok[c].to_pylist() for c in columns), strict=True))
    failed = Counter(zip(*(bad[c].to_pylist() for c in columns), strict=True))
    extra = [c for c in ("scenario", "target", "sample") if c in store.layout.index_columns]
    seen: dict[Pair, dict[str, set[object]]] = {}
    for table in (ok, bad):
        cols = [table[c].to_pylist() for c in (*columns, *extra)]
        for a, b, *vals in zip(*cols, strict=True):
            per = seen.setdefault((a, b), {c: set() for c in extra})
            for c, v in zip(extra, vals, strict=True):
                per[c].add(v)
    return done, failed, seen


def _choice_rows(store: Store) -> list[ChoiceRow]:
    done, failed, seen = _tally(store, ("benchmark", "scorer"))
    return [ChoiceRow(store="choices", benchmark=a, scorer=b, complete=done[(a, b)],
                      failed=failed[(a, b)], scenarios=len(seen[(a, b)]["scenario"]),
                      targets=len(seen[(a, b)]["target"]), samples=len(seen[(a, b)]["sample"]))
            for a, b in sorted(seen)]


def _generation_rows(store: Store) -> list[GenerationRow]:
    done, failed, seen = _tally(store, ("task", "model"))
    return [GenerationRow(store="generations", task=a, model=b, complete=done[(a, b)],
                          failed=failed[(a, b)])
            for a, b in sorted(seen)]


def list_cache(cache: str | os.PathLike[str] | None = None) -> CacheListing:
    """Each (benchmark, scorer) of the scores and choices, and each (task, model) of the
    generations, with complete and failed items."""
    root = cache_root(cache)
    found = stores(root)
    scores = [ScoreRow(store="scores", benchmark=r.benchmark, scorer=r.scorer,
                       complete=r.complete, failed=r.failed, scenarios=r.scenarios,
                       attributes=list(r.attributes), samples=r.samples)
              for r in _summaries(root, found)]
    choices = [r for s in found if s.name == "choices" for r in _choice_rows(s)]
    gens = [r for s in found if s.name == "generations" for r in _generation_rows(s)]
    return CacheListing(scores, choices, gens)


def show_scorers(cache: str | os.PathLike[str] | None = None, which: str | None = None, *,
                 benchmark: str | None = None) -> list[ScorerSettings]:
    """The counts and stored settings of the scorer ``which`` (its identity or its name; None:
    every scorer), on ``benchmark`` (an identity; None: every benchmark)."""
    root = cache_root(cache)
    rows = [ScorerSettings(benchmark=r.benchmark, scorer=r.scorer, complete=r.complete,
                           failed=r.failed, scenarios=r.scenarios,
                           attributes=list(r.attributes), samples=r.samples,
                           settings=r.settings)
            for r in _summaries(root, stores(root))
            if (which is None or r.scorer == which or r.scorer.split("#", 1)[0] == which)
            and (benchmark is None or r.benchmark == benchmark)]
    if not rows:
        raise InputError(f"no scorer {which!r} in this cache (see `pluralign cache ls`)",
                         field="scorer")
    return rows


def verify_cache(cache: str | os.PathLike[str] | None = None) -> list[StoreCheck]:
    """Every part of every store checked (kind and version, exact schema, each row's key
    against its fields), with the leftover temp files; changes nothing."""
    return [StoreCheck(s, verify(s.root, s.layout)) for s in stores(cache_root(cache))]


def gc_cache(cache: str | os.PathLike[str] | None = None, *, min_age: float = 600.0
             ) -> list[StoreGC]:
    """Remove temp files older than ``min_age`` seconds (of killed writes) and superseded
    duplicate rows, compacting each store into one part; while any part of any store cannot be
    trusted, raise and change nothing."""
    found = stores(cache_root(cache))
    checks = [verify(s.root, s.layout) for s in found]
    refuse_bad(checks)  # one bad part anywhere: no store is touched
    return [StoreGC(store, gc(store.root, store.layout, min_age=min_age, check=check))
            for store, check in zip(found, checks, strict=True)]
