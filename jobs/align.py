"""The ``align`` job: re-align targets from the score cache alone.

No model is called and nothing is scored: :func:`run_align` reads the cached scores of one
scorer (by name and options, or by its exact identity), resolves the target sets, re-aligns
each (locally within a memory budget, or sharded over Ray) and returns an :class:`Alignment`;
with ``out`` set it also writes the answer (``.json``: everything; else Parquet: the chosen
response per scenario and target). ``pluralign align`` is a thin layer over it
(``jobs/cli/align.py``): its flags are this config's fields.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, NotRequired, TypedDict

import numpy as np
import pyarrow as pa

from pluralign.engine.align.realign import AlignResult, chosen_responses, parse_memory_budget
from pluralign.engine.align.results import finite_or_none
from pluralign.engine.data.benchmark import Benchmark
from pluralign.engine.data.target_sets import resolve_target_sets
from pluralign.engine.data.targets import TargetSet
from pluralign.engine.errors import InputError
from pluralign.engine.judges import CHOICE_JUDGES, SCORE_JUDGES
from pluralign.engine.store.files import check_output
from pluralign.jobs import api
from pluralign.jobs.configs import (
    MAX_SHARDS,
    LLMConfig,
    Range,
    RewardConfig,
    SplitConfig,
    check_numbers,
)
from pluralign.jobs.runtime import (
    check_samples,
    load_splits,
    note_manifest,
    progress,
    scorer_options,
    write_json_atomic,
    write_parquet_atomic,
)
from pluralign.jobs.sharded import realign_for_args

__all__ = ["CHOICES_LIMIT", "JSON_LIMIT", "AlignConfig", "AlignReport", "Alignment",
           "ChoiceColumns", "SetAlignment", "TargetRow", "run_align",
           "write_alignment"]

JSON_LIMIT = 50_000_000
"""Estimated JSON bytes above which the per-scenario choices go to a Parquet file instead."""
CHOICES_LIMIT = 5000
"""Targets in one set above which the chosen responses per scenario are not computed."""


@dataclass(frozen=True)
class AlignConfig:
    """What to re-align and from which cached scores. Every field not set keeps the command
    line's default (``pluralign align --help``)."""

    splits: SplitConfig = field(default_factory=SplitConfig)
    """The benchmark split, the training split, the data and the cache."""
    scorer: str = "ridge"
    """Scorer whose cached scores to use (as given to sweep)."""
    scorer_id: str | None = None
    """Exact scorer identity (as printed by sweep, e.g. of an LLM scorer): read its cached
    scores instead of those of the scorer named."""
    samples: Annotated[int, Range(1)] | None = None
    """With cached samples: average the first N (None: every cached sample)."""
    seed: int = 0
    """Seed of the random scorer."""
    value: float = 0.5
    """Value of the constant scorer."""
    targets: tuple[str, ...] = ()
    """Target sets: all, sampled, high, low, target JSON files or folders, or inline targets
    ('{"helpfulness": 1}' or helpfulness=1,verbosity=0)."""
    target: tuple[str, ...] = ()
    """An inline target (repeatable)."""
    shards: Annotated[int, Range(1, MAX_SHARDS)] | None = None
    """Re-align as N Ray tasks over blocks of targets (None: automatic above 2e9 responses x
    targets when Ray is already running)."""
    memory_budget: int | str | None = None
    """Memory one re-alignment may hold (512M, 2G, 25%; None: 1/8 of RAM); beyond it targets
    and scenarios are processed in blocks."""
    out: str | None = None
    """Write per-scenario choices (.parquet) or everything (.json)."""
    llm: LLMConfig | None = None
    """The LLM judge's settings, for an LLM scorer: its cache identity depends on them
    (nothing is sent)."""
    reward: RewardConfig | None = None
    """The reward model's settings, for ``reward`` read without `scorer_id`."""

    def __post_init__(self) -> None:
        check_numbers(self)
        if self.memory_budget is not None:
            parse_memory_budget(self.memory_budget)

    def specs(self) -> list[str]:
        """Every target spec: the sets, then the inline targets."""
        return [*self.targets, *self.target]

    def model_config(self) -> LLMConfig | RewardConfig | None:
        """The settings of the model ``scorer`` names (None for a model-free scorer)."""
        if self.scorer == "reward":
            return self.reward
        return self.llm if self.scorer in (*SCORE_JUDGES, *CHOICE_JUDGES) else None


class TargetRow(TypedDict):
    """One target's answer."""

    set: str
    target: str
    """The target as JSON text."""
    accuracy: float | None
    """Percent correct; None where no scenario counts."""
    counted: int
    correct: int


class ChoiceColumns(TypedDict):
    """The chosen response per (target, scenario), as table columns."""

    target: list[str]
    scenario: list[str]
    chosen: list[int]


class AlignReport(TypedDict):
    """The ``.json`` answer file."""

    benchmark: str
    scorer: str
    targets: list[TargetRow]
    chosen: NotRequired[ChoiceColumns]
    chosen_file: NotRequired[str]
    """Where the choices went instead (beside the report, Parquet) when too large for JSON."""


@dataclass(frozen=True)
class SetAlignment:
    """One target set re-aligned."""

    targets: TargetSet
    result: AlignResult
    chosen: np.ndarray | None
    """int8 (scenarios, targets): the response chosen per scenario and target; None for a set
    of more than :data:`CHOICES_LIMIT` targets."""

    def rows(self) -> list[TargetRow]:
        res, ts = self.result, self.targets
        acc = res.accuracy
        return [TargetRow(set=ts.name, target=ts.json(t),
                          accuracy=finite_or_none(float(acc[t])),
                          counted=int(res.counted[t]), correct=int(res.correct[t]))
                for t in range(len(ts))]


@dataclass(frozen=True)
class Alignment:
    """The answer of :func:`run_align`."""

    bench: Benchmark
    identity: str
    """The scorer identity whose cached scores were read."""
    sets: tuple[SetAlignment, ...]

    def rows(self) -> list[TargetRow]:
        """Every target of every set, in order."""
        return [row for s in self.sets for row in s.rows()]

    def choices(self) -> ChoiceColumns:
        """The chosen responses of the sets that have them (every scenario per target)."""
        cols = ChoiceColumns(target=[], scenario=[], chosen=[])
        ids = [s.id for s in self.bench.scenarios]
        for s in self.sets:
            if s.chosen is None:
                continue
            for t in range(len(s.targets)):
                cols["target"] += [s.targets.json(t)] * self.bench.n_scenarios
                cols["scenario"] += ids
                cols["chosen"] += s.chosen[:, t].tolist()
        return cols


def cached_scores(config: AlignConfig) -> api.Scores:
    """The cached scores of ``scorer_id``, or of the scorer ``scorer`` and its settings describe
    (the identity ``sweep`` writes under; nothing is computed or sent)."""
    settings = config.model_config()
    need = not config.scorer_id and api.needs_train(config.scorer, settings)
    s = config.splits
    bench, train = load_splits(s.benchmark, s.split, s.data, limit=s.limit,
                               train_split=s.train_split if need else None)
    check_samples(bench, config.samples)
    ident = config.scorer_id or api.scorer_identity(
        bench, config.scorer, train=train, config=settings,
        **scorer_options(config.scorer, seed=config.seed, value=config.value))
    note_manifest(bench, train, scorer={"identity": ident,
                                        "name": config.scorer_id or config.scorer})
    return api.cached_scores(bench, ident, samples=config.samples, cache=s.cache)


def run_align(config: AlignConfig, *, on_set: Callable[[Alignment, SetAlignment], None] | None
              = None, json_limit: int | None = None) -> Alignment:
    """Re-align ``config``'s targets from the cached scores alone (an input error naming what
    to run when they are not cached); with ``out``, write the answer there (choices beyond
    ``json_limit`` estimated JSON bytes, default :data:`JSON_LIMIT`, go to Parquet beside).
    ``on_set`` sees each target set as soon as it is re-aligned (with the answer so far)."""
    if config.out is not None:
        check_output(config.out, folder=False)
    specs = config.specs()
    if not specs:
        raise InputError("no targets given", field="targets",
                         hint="pass `targets` (all, sampled, high, low, files, inline targets) "
                              "or `target` (an inline target)")
    scores = cached_scores(config)
    bench, preds = scores.bench, scores.predictions
    sets: list[SetAlignment] = []
    for ts in resolve_target_sets(specs, bench, config.splits.data):
        res = realign_for_args(config, bench, preds, ts, weighted=True)
        chosen = chosen_responses(bench, preds, ts) if len(ts) <= CHOICES_LIMIT else None
        sets.append(SetAlignment(ts, res, chosen))
        if on_set is not None:
            on_set(Alignment(bench, scores.identity, tuple(sets)), sets[-1])
    alignment = Alignment(bench, scores.identity, tuple(sets))
    if config.out:
        write_alignment(Path(config.out), alignment,
                        json_limit=JSON_LIMIT if json_limit is None else json_limit)
    return alignment


def write_alignment(out: Path, alignment: Alignment, *, json_limit: int = JSON_LIMIT) -> None:
    """``.json``: the targets' answers and the choices (those to a Parquet file beside when
    their JSON would exceed ``json_limit`` bytes); any other suffix: the choices as Parquet."""
    rows = alignment.choices()
    if out.suffix == ".json":
        head = AlignReport(benchmark=alignment.bench.identity, scorer=alignment.identity,
                           targets=alignment.rows())
        size = sum(len(t) + 30 for t in rows["target"]) + 40 * len(rows["scenario"])
        if size > json_limit:
            side = out.with_suffix(".chosen.parquet")
            progress(f"warning: the choices would make about {size / 1e6:.0f} MB of JSON; "
                     f"writing them to {side} (Parquet) instead")
            write_parquet_atomic(side, pa.table(dict(rows)))
            head["chosen_file"] = side.name
        else:
            head["chosen"] = rows
        write_json_atomic(out, head)
    else:
        write_parquet_atomic(out, pa.table(dict(rows)))
    progress(f"wrote {out}")
