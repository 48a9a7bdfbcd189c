"""The Python API: load a benchmark, score it through the cache (model-free or LLM judges),
re-align any targets, evaluate juries and SPICA retrieval (the scorers: model-free, LLM judges
with an :class:`LLMConfig`, a reward model with a :class:`RewardConfig`). Results are Arrow tables or pandas
DataFrames; every call that may reach the network has an ``async`` twin that works inside a
running event loop (a notebook).

The command line is a client of these functions: its commands turn flags into typed arguments
(an :class:`LLMConfig` or :class:`RewardConfig`, loaded splits, target sets) and call them, so a sweep and a notebook
score, cache and tabulate the same way.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import numpy as np
import pyarrow as pa

from pluralign.engine.align.per_scenario import standard_error
from pluralign.engine.align.realign import realign as run_realign
from pluralign.engine.align.results import per_target_table, rows_table
from pluralign.engine.data.benchmark import Benchmark
from pluralign.engine.data.sources import load_benchmark as load
from pluralign.engine.data.target_sets import resolve_target_sets
from pluralign.engine.data.targets import TargetSet, concat
from pluralign.engine.errors import InputError, PluralignError
from pluralign.engine.pluralism.juries import load_jury, parse_jury
from pluralign.engine.pluralism.jury_eval import JuryConfig, evaluate_jury
from pluralign.engine.run.scheduler import STDERR, ScheduleReport
from pluralign.engine.scorers import get_scorer as get
from pluralign.engine.scorers import score_through_cache, scorer_class
from pluralign.engine.scorers import scorer_names as registered
from pluralign.engine.scorers.base import Scorer
from pluralign.engine.scorers.registry import ScorerKind
from pluralign.engine.spica.authors import load_spica_layout
from pluralign.engine.spica.bank import ALL, ScenarioBank
from pluralign.engine.spica.evaluate import GroupEvaluation, evaluate_retrieval
from pluralign.engine.spica.io import read_bank
from pluralign.engine.spica.retrieval import Retriever, Weights
from pluralign.engine.spica.synthetic_bank import SyntheticConfig, synthetic_bank
from pluralign.engine.store.cache import ScoreCache
from pluralign.engine.store.files import write_bytes
from pluralign.engine.store.manifest import current, endpoint_host
from pluralign.jobs.compare import compare as compare
from pluralign.jobs.configs import LLMConfig, RewardConfig
from pluralign.jobs.decisions import decisions as decisions
from pluralign.jobs.llm_scoring import (
    ScoringReport,
    few_shot_for,
    llm_choices,
    llm_scorer_identity,
    require_complete,
    run_llm_scoring,
)
from pluralign.jobs.report import build_report
from pluralign.jobs.reward_scoring import reward_scorer, run_reward_scoring
from pluralign.jobs.runtime import cache_dir, note_manifest, progress

if TYPE_CHECKING:  # pandas is imported when a table is asked for (it takes a while to load)
    import pandas as pd

T = TypeVar("T")

LLM_SCORERS = tuple(registered("llm-score"))
"""LLM judges that score attributes (:func:`score_llm`)."""
CHOICE_JUDGES = tuple(registered("llm-choice"))
"""LLM judges that pick a response per (scenario, target) instead (:func:`choose_llm`)."""
REWARD_SCORER = registered("reward")[0]
"""A reward (pooling) model's output heads as attribute scores (:func:`score` with a
:class:`RewardConfig`)."""


@dataclass(frozen=True)
class Scores:
    """Predicted attribute scores of one scorer on one benchmark split, as cached."""

    bench: Benchmark
    """The split that was scored."""
    predictions: np.ndarray
    """float64 (responses, attributes), rows in benchmark order."""
    identity: str
    """The scorer's cache identity (pass it to ``pluralign align --scorer-id``)."""
    report: ScheduleReport | dict[str, int] | None = None
    """For LLM judges, the scheduler's counts (items, cached, failed, requests, tokens); for
    the reward scorer, a dict of inputs ``sent`` and rows ``scored`` and ``failed``."""
    samples: int | None = 1
    """Samples per item the predictions average (LLM judges with ``samples`` > 1; None: every
    cached sample, as :func:`cached_scores` reads them without a count)."""

    def to_arrow(self) -> pa.Table:
        """One row per (scenario, response) with a column per attribute."""
        b = self.bench
        ids = [s.id for s in b.scenarios]
        cols: dict[str, Any] = {
            "scenario": [ids[i] for i in b.scenario_of.tolist()],
            "response": b.response_index.astype(np.int32),
        }
        for j, a in enumerate(b.attributes):
            cols[a] = self.predictions[:, j]
        return pa.table(cols)

    def to_pandas(self) -> pd.DataFrame:
        """:meth:`to_arrow` as a pandas DataFrame."""
        return self.to_arrow().to_pandas()


@dataclass(frozen=True)
class Choices:
    """Responses an LLM choice judge (prompt-aligned, unaligned) picked, as cached."""

    bench: Benchmark
    """The split that was judged."""
    judge: str
    """The judge's name."""
    identity: str
    """The judge's cache identity."""
    samples: int
    """Samples per (scenario, target); :meth:`chosen` takes their majority."""
    report: ScheduleReport
    """The scheduler's counts."""
    cache: ScoreCache
    """The score cache whose choice cache holds the answers."""

    def chosen_indices(self, targets: TargetSet) -> np.ndarray:
        """int64 (scenarios, targets): the picked response per scenario and target (its index
        within the scenario); -1 where no answer is cached. The unaligned judge's one pick per
        scenario serves every target."""
        return llm_choices(self.bench, self.judge, self.identity, targets, self.samples,
                           self.cache)

    def chosen(self, targets: TargetSet | Sequence[TargetSet]) -> pd.DataFrame:
        """The picked response per scenario and target, labelled: one row per scenario (index
        ``scenario``, its id), one column per target (its JSON, as in ``per_target``'s
        ``target`` column); the response's index within the scenario, or -1 where no answer is
        cached."""
        import pandas as pd

        ts = _one_set(targets)
        return pd.DataFrame(self.chosen_indices(ts), columns=ts.json_all(),
                            index=pd.Index([s.id for s in self.bench.scenarios],
                                           name="scenario"))


def _one_set(targets: TargetSet | Sequence[TargetSet]) -> TargetSet:
    """One target set from one or several (as :func:`targets` returns them)."""
    if isinstance(targets, TargetSet):
        return targets
    sets = list(targets)
    if not sets:
        raise InputError("no targets given", field="targets")
    return sets[0] if len(sets) == 1 else concat(sets, "requested")


def _cache(cache: str | os.PathLike[str] | None) -> ScoreCache:
    return ScoreCache(cache_dir(None if cache is None else str(cache)))


def load_benchmark(name: str = "helpsteer2", split: str = "eval", *,
                   data: str | os.PathLike[str] | None = None,
                   limit: int | None = None) -> Benchmark:
    """A benchmark split: ``helpsteer2``, ``mic``, ``synthetic:S=..,R=..`` or a JSON file;
    ``limit`` keeps the first scenarios (a limited run shares its cache entries)."""

    bench = load(name, split, data)
    return bench.subset(limit) if limit is not None and limit < bench.n_scenarios else bench


def scorer_names(kind: ScorerKind | None = None) -> list[str]:
    """Every scorer name of the one registry, or those of one ``kind``: ``model-free``,
    ``llm-score`` (:func:`score_llm`), ``llm-choice`` (:func:`choose_llm`), ``reward``
    (:func:`score_reward`)."""
    return registered(kind)


def get_scorer(name: str = "ridge", **options: Any) -> Scorer:
    """A model-free scorer by name (``ridge``, ``oracle``, ``random``, ``constant``,
    ``predictions:PATH``) with its keyword options, e.g. ``get_scorer("random", seed=1)``."""

    return get(name, **options)


def needs_train(scorer: str | Scorer, config: LLMConfig | RewardConfig | None = None) -> bool:
    """Whether scoring with ``scorer`` (a name or a scorer object) reads the training split:
    model-free scorers that are fitted, LLM judges that get in-context examples."""
    if not isinstance(scorer, str):
        return bool(scorer.needs_train)
    if scorer == REWARD_SCORER:
        return False
    if scorer in (*LLM_SCORERS, *CHOICE_JUDGES):

        return few_shot_for(scorer, config.few_shot if isinstance(config, LLMConfig) else None)

    return bool(scorer_class(scorer.partition(":")[0].strip()).needs_train)


def _train_split(bench: Benchmark, train: Benchmark | str | None) -> Benchmark | None:
    if train is None or isinstance(train, Benchmark):
        return train
    return load_benchmark(bench.name.split("/")[0], train)


def _llm_config(judge: str, config: LLMConfig | RewardConfig | None) -> LLMConfig:

    if not isinstance(config, LLMConfig):
        got = "no settings" if config is None else f"a {type(config).__name__}"
        raise InputError(f"{judge} is an LLM judge and needs its settings, an LLMConfig "
                         f"(got {got})", field="config",
                         hint="pass config=pluralign.LLMConfig(model=...)")
    return config


def _reward_config(config: LLMConfig | RewardConfig | None) -> RewardConfig:

    if not isinstance(config, RewardConfig):
        got = "no settings" if config is None else f"a {type(config).__name__}"
        raise InputError(f"the reward scorer needs its settings, a RewardConfig (got {got})",
                         field="config",
                         hint="pass config=pluralign.RewardConfig(model=..., attributes=...)")
    return config


def score(bench: Benchmark, scorer: str | Scorer = "ridge", *, train: Benchmark | str | None = "train",
          cache: str | os.PathLike[str] | None = None,
          config: LLMConfig | RewardConfig | None = None,
          out: str | os.PathLike[str] | None = None, quiet: bool = False,
          **options: Any) -> Scores:
    """Scores of any scorer through the cache: only what the cache lacks is computed (a
    model-free scorer, by name with its keyword ``options`` or as an object) or sent (an LLM
    judge named in :data:`LLM_SCORERS` with its :class:`LLMConfig`, see :func:`score_llm`;
    ``"reward"`` with its :class:`RewardConfig`, see :func:`score_reward`). ``train`` is the
    split (or a loaded benchmark) scorers learn from, read only when they need one.
    Progress goes to stderr unless ``quiet``; inside a ``pluralign`` run the scorer and its
    settings are recorded in the run manifest."""

    if isinstance(scorer, str) and scorer in CHOICE_JUDGES:
        raise InputError(f"{scorer} picks responses and has no scores", field="scorer",
                         hint="use comparative-regression or regression, or choose_llm")
    if isinstance(scorer, str) and scorer in LLM_SCORERS:
        return score_llm(bench, scorer, _llm_config(scorer, config), train=train, cache=cache,
                         quiet=quiet, out=out)
    if isinstance(scorer, str) and scorer == REWARD_SCORER:
        return score_reward(bench, _reward_config(config), cache=cache, quiet=quiet)
    if config is not None:
        raise InputError(f"{scorer if isinstance(scorer, str) else scorer.name} is a "
                         "model-free scorer and takes no config", field="config",
                         hint="pass its options as keywords")

    s = get_scorer(scorer, **options) if isinstance(scorer, str) else scorer
    name = scorer if isinstance(scorer, str) else s.name
    tr = _train_split(bench, train) if s.needs_train else None
    c = _cache(cache)
    if not quiet:
        progress(f"scoring {bench.identity} with {name} (cache: {c.root})")
    preds = score_through_cache(s, bench, c, train=tr)
    ident = s.identity(bench, tr)
    note_manifest(bench, tr, scorer={"identity": ident, "name": name, "kind": "scores",
                                     "settings": dict(options)})
    return Scores(bench, preds, ident)


def score_reward(bench: Benchmark, config: RewardConfig, *,
                 cache: str | os.PathLike[str] | None = None, quiet: bool = False) -> Scores:
    """A reward model's head values as attribute scores through the cache (the function
    ``pluralign sweep --scorer reward`` runs): only (scenario, response) pairs the cache lacks
    are sent, one request per ``config.batch`` inputs. Raises when any response stays without
    a score (failed inputs are retried on the next call), after recording the settings and
    counts in the run manifest. Inside a running event loop it works in a worker thread."""

    ident = reward_scorer(config, bench).identity  # bad settings fail before anything runs
    c = _cache(cache)
    if not quiet:
        progress(f"scoring {bench.identity} with {ident} ({config.model}; cache: {c.root})")
    report = _outside_loop(run_reward_scoring, config, bench, c)
    note_manifest(bench, None, scorer=report.settings, counts=dict(report.counts))
    missing = int(np.isnan(report.predictions).any(axis=1).sum())
    if missing:
        raise PluralignError(f"{missing} responses have no reward score (failed items are "
                             "retried on the next run)")
    return Scores(bench, report.predictions, report.identity, dict(report.counts))


def score_llm(bench: Benchmark, judge: str, config: LLMConfig, *,
              train: Benchmark | str | None = "train",
              cache: str | os.PathLike[str] | None = None, quiet: bool = False,
              out: str | os.PathLike[str] | None = None) -> Scores:
    """LLM judge scores (``comparative-regression`` or ``regression``) through the cache:
    only missing (scenario, attribute[, response], sample) items are sent. Raises when items
    stay unanswered (nothing is re-aligned on incomplete scores), after writing a partial
    ``summary.json`` into the folder ``out`` when given. Inside a running event loop it still
    works (it blocks that loop until done); ``await`` :func:`ascore_llm` there instead to keep
    the loop responsive."""

    if judge not in LLM_SCORERS:
        raise InputError(f"{judge!r} is not a scoring LLM judge", field="judge",
                         hint=f"one of {', '.join(LLM_SCORERS)}")
    report, c = _run_llm(bench, judge, config, train=train, cache=cache, quiet=quiet, out=out)
    preds = c.predictions(report.bench, report.identity, report.samples)
    return Scores(report.bench, preds, report.identity, report.schedule, report.samples)


async def ascore_llm(bench: Benchmark, judge: str, config: LLMConfig, *,
                     train: Benchmark | str | None = "train",
                     cache: str | os.PathLike[str] | None = None, quiet: bool = False,
                     out: str | os.PathLike[str] | None = None) -> Scores:
    """:func:`score_llm` for a running event loop: the scheduler runs its own loop in a worker
    thread, so the caller's loop stays responsive."""
    return await asyncio.to_thread(score_llm, bench, judge, config, train=train, cache=cache,
                                   quiet=quiet, out=out)


async def ascore(bench: Benchmark, scorer: str | Scorer = "ridge", **kwargs: Any) -> Scores:
    """:func:`score` for a running event loop (same arguments), in a worker thread."""
    return await asyncio.to_thread(score, bench, scorer, **kwargs)


async def achoose_llm(bench: Benchmark, judge: str, config: LLMConfig,
                      targets: TargetSet | Sequence[TargetSet] | None = None,
                      **kwargs: Any) -> Choices:
    """:func:`choose_llm` for a running event loop (same arguments), in a worker thread."""
    return await asyncio.to_thread(choose_llm, bench, judge, config, targets, **kwargs)


def _outside_loop(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``fn(*args, **kwargs)``, which runs an event loop of its own: directly, or in a worker
    thread when this thread already runs one (a notebook cell calling a blocking function),
    where ``asyncio.run`` would refuse. The caller blocks until it is done either way."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return fn(*args, **kwargs)
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="pluralign") as pool:
        return pool.submit(fn, *args, **kwargs).result()


def choose_llm(bench: Benchmark, judge: str, config: LLMConfig,
               targets: TargetSet | Sequence[TargetSet] | None = None, *, train: Benchmark | str | None = "train",
               cache: str | os.PathLike[str] | None = None, quiet: bool = False,
               out: str | os.PathLike[str] | None = None) -> Choices:
    """An LLM choice judge's picks through the cache: ``prompt-aligned`` asks once per
    (scenario, target) of ``targets`` (a set, or the list :func:`targets` returns),
    ``unaligned`` once per scenario (no targets). Raises on unanswered items like
    :func:`score_llm`."""

    if judge not in CHOICE_JUDGES:
        raise InputError(f"{judge!r} is not a choice judge", field="judge",
                         hint=f"one of {', '.join(CHOICE_JUDGES)}")
    report, c = _run_llm(bench, judge, config, train=train, cache=cache, quiet=quiet, out=out,
                         targets=None if targets is None else _one_set(targets))
    return Choices(report.bench, judge, report.identity, report.samples, report.schedule, c)


def _run_llm(bench: Benchmark, judge: str, config: LLMConfig, *,
             train: Benchmark | str | None, cache: str | os.PathLike[str] | None, quiet: bool,
             out: str | os.PathLike[str] | None,
             targets: TargetSet | None = None) -> tuple[ScoringReport, ScoreCache]:
    """(scoring report, cache) of one LLM judge run, recorded in the run manifest; raises
    unless every item is answered."""

    tr = _train_split(bench, train) if few_shot_for(judge, config.few_shot) else None
    c = _cache(cache)
    log = None if quiet else STDERR
    report = _outside_loop(run_llm_scoring, bench, tr, judge, config, c, targets=targets,
                           log=log)
    _note_llm(report, config, tr)
    require_complete(report, out, log=log)  # raises IncompleteScoring on missing answers
    return report, c


def _note_llm(report: ScoringReport, config: LLMConfig, train: Benchmark | None) -> None:
    """Decoded judge settings (with backend and endpoint host, never the key) and the
    scheduler's counts into the run manifest, when one is being written."""

    m = current()
    if m is None:
        return
    env = config.api_key_env
    key = os.environ.get(env) if env and env != "none" else None
    if key:
        m.secrets = (key, *m.secrets)
    counts = report.schedule.as_dict()
    counts["sent"], counts["retried"] = counts["requests"], counts["retries"]
    counts["spread"] = report.spread
    counts["samples"] = report.samples
    note_manifest(report.bench, train, counts=counts, scorer={
        **report.settings,
        "backend": config.backend,
        "endpoint": None if config.backend == "vllm" else endpoint_host(
            config.base_url or "https://api.openai.com/v1"),
        "samples": report.samples,
        "api_key_env": config.api_key_env,
    })


def scorer_identity(bench: Benchmark, scorer: str | Scorer = "ridge", *,
                    train: Benchmark | str | None = "train",
                    config: LLMConfig | RewardConfig | None = None, **options: Any) -> str:
    """The cache identity :func:`score` writes ``scorer``'s scores under, computing and
    sending nothing (an LLM judge or the reward scorer needs its ``config``)."""
    if isinstance(scorer, str) and scorer == REWARD_SCORER:

        return reward_scorer(_reward_config(config), bench).identity
    if isinstance(scorer, str) and scorer in (*LLM_SCORERS, *CHOICE_JUDGES):

        cfg = _llm_config(scorer, config)
        tr = _train_split(bench, train) if needs_train(scorer, cfg) else None
        return llm_scorer_identity(bench, tr, scorer, cfg)
    s = get_scorer(scorer, **options) if isinstance(scorer, str) else scorer
    return str(s.identity(bench, _train_split(bench, train) if s.needs_train else None))


def cached_scores(bench: Benchmark, identity: str, *, samples: int | None = None,
                  cache: str | os.PathLike[str] | None = None) -> Scores:
    """The scores the cache holds under ``identity`` (as :func:`score` wrote them; the mean of
    the first ``samples`` samples, all when None), computing nothing. Raises an input error
    when any response lacks a score."""

    c = _cache(cache)
    preds = c.predictions(bench, identity, samples)
    missing = int(np.isnan(preds).any(axis=1).sum())
    if missing:
        raise InputError(
            f"the cache holds no complete scores of {identity} for {bench.identity} "
            f"({missing} of {bench.n_responses} responses missing)",
            file=str(c.root), hint="run pluralign sweep with the same options first")
    return Scores(bench, preds, identity, samples=samples)


def targets(bench: Benchmark, *specs: str, data: str | os.PathLike[str] | None = None
            ) -> list[TargetSet]:
    """Target sets as the command line names them: ``all``, ``sampled``, ``high``, ``low``,
    JSON files or folders, inline ``{"helpfulness": 1}`` or ``helpfulness=1,verbosity=0``."""

    sets: list[TargetSet] = resolve_target_sets(list(specs) or ["all"], bench,
                                                None if data is None else str(data))
    return sets


def realign(scores: Scores, sets: Sequence[TargetSet | str] = ("all",), *,
            data: str | os.PathLike[str] | None = None) -> pd.DataFrame:
    """Accuracy, counts and weighted score per target (the steerable-pluralism paper, §5.1) from
    cached scores alone, as a pandas DataFrame (the columns of per_target.parquet)."""

    named = [s for s in sets if isinstance(s, str)]
    resolved = targets(scores.bench, *named, data=data) if named else []
    rows = [(ts, run_realign(scores.bench, scores.predictions, ts, weighted=True))
            for ts in [*[s for s in sets if not isinstance(s, str)], *resolved]]
    return per_target_table(rows).to_pandas()


def summarize(per_target: pd.DataFrame) -> pd.DataFrame:
    """Accuracy over the defined targets per set and number of target attributes
    (steerable-pluralism paper, Fig. 8), from :func:`realign`'s table: ``mean``, ``std`` (sample,
    ddof 1), ``standard_error``
    (that std over sqrt(count); NaN below two targets) and ``count``."""

    defined = per_target[per_target["accuracy"].notna()]
    groups = defined.groupby(["set", "n_attributes"])["accuracy"]
    table = groups.agg(["mean", "std", "count"])
    se = groups.agg(lambda a: standard_error(a.to_numpy()))
    table.insert(2, "standard_error", se.astype("float64"))
    return table.reset_index()


def jury(scores: Scores, groups: str | os.PathLike[str] | dict[str, Any], *,
         alphas: Sequence[float] = (0.0, 1.0, float("inf")), tau: float = 0.5,
         bootstrap: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Per-group accuracy, utility and welfare w_α with bootstrap intervals (the pluralism
    roadmap, Sorensen et al. 2024, §4.3), one DataFrame row per group and ``ALL`` (the rows of
    ``pluralign jury``'s groups.parquet). ``groups`` is a group file (docs/juries.md) or the
    same content as a dict."""

    b = scores.bench
    if isinstance(groups, dict):
        j = parse_jury(groups, b.attributes, b.levels, "groups")
    else:
        j = load_jury(groups, b.attributes, b.levels)
    cfg = JuryConfig(alphas=tuple(float(a) for a in alphas), tau=tau, n_bootstrap=bootstrap,
                     seed=seed)
    return rows_table(evaluate_jury(b, scores.predictions, j, cfg).rows(),
                      "jury_groups").to_pandas()


# ---------------------------------------------------------------- SPICA


def load_spica_bank(bank: str | os.PathLike[str] | None = None, *,
                    annotations: Sequence[str] | None = None,
                    scenarios: Sequence[str] | None = None) -> ScenarioBank:
    """A SPICA scenario bank: ``synthetic[:SEED]``, a bank Parquet file, or the authors'
    layout (``annotations``: JSON files, each ``SPLIT=FILE`` or ``FILE`` for train, with their
    ``scenarios`` JSON files)."""

    if annotations or scenarios:

        if not (annotations and scenarios):
            raise InputError("the authors' layout needs both `annotations` and `scenarios`",
                             field="annotations")
        by_split: dict[str, list[str]] = {}
        for spec in annotations:
            split, _, path = spec.rpartition("=") if "=" in spec else ("", "", spec)
            by_split.setdefault(split or "train", []).append(path)
        return load_spica_layout(by_split, list(scenarios))
    if not bank:
        raise InputError("no bank given", field="bank",
                         hint="pass `bank` (FILE.parquet or synthetic:SEED), or `annotations` "
                              "and `scenarios` (the authors' layout)")
    text = str(bank)
    if text.startswith("synthetic"):

        _, _, seed = text.partition(":")
        try:
            cfg = SyntheticConfig(seed=int(seed or 0))
        except ValueError:
            raise InputError(f"bad synthetic seed {seed!r}", field="bank",
                             hint="synthetic or synthetic:SEED") from None
        return synthetic_bank(cfg).bank

    return read_bank(text)


def spica_groups(bank: ScenarioBank, groups: Sequence[str] | None = None) -> list[str]:
    """``groups`` checked against the bank (None: every group, then ``ALL``)."""

    names = [g.strip() for g in groups if g.strip()] if groups else [*bank.groups, ALL]
    for g in names:
        bank.check_group(g)
    return names


def spica_retriever(bank: ScenarioBank, *, train_split: str = "train",
                    similarity: str = "tfidf",
                    rating: Literal["response", "strategy"] = "response") -> Retriever:
    """The retriever over the bank's ``train_split``, by ``similarity`` (tfidf, embedding)
    with the norms and mismatch of the ``rating`` kind (response, strategy)."""

    return Retriever(bank.select(train_split), similarity, rating)


def spica_results(bank: ScenarioBank, *, k: int = 5, bootstrap: int = 2000, seed: int = 0,
                  groups: Sequence[str] | None = None, weights: dict[str, Weights] | None = None,
                  train_split: str = "train", dev_split: str = "dev", test_split: str = "test",
                  similarity: str = "tfidf",
                  rating: Literal["response", "strategy"] = "response"
                  ) -> list[GroupEvaluation]:
    """SPICA's retrieval error per group on a loaded bank, one result per group (``ALL``
    last): the given ``weights`` by group, or weights fitted on ``dev_split``; similarity-only
    vs group-informed top-``k`` retrieval on ``test_split`` with ``bootstrap`` resamples."""

    names = spica_groups(bank, groups)
    retriever = spica_retriever(bank, train_split=train_split, similarity=similarity,
                                rating=rating)
    fitted = weights or retriever.fit_all(bank.select(dev_split), names)
    return list(evaluate_retrieval(retriever, bank.select(test_split), fitted, names, k,
                                   bootstrap, seed))


def spica_evaluate(bank: str | os.PathLike[str] | ScenarioBank = "synthetic:0", *, k: int = 5,
                   bootstrap: int = 2000, seed: int = 0, groups: Sequence[str] | None = None,
                   **options: Any) -> pd.DataFrame:
    """SPICA's retrieval error per group (Chen et al., SPICA, §3.2 and Fig. 3): weights fitted
    on the bank's dev split, similarity-only vs group-informed retrieval on its test split,
    with bootstrap intervals; one DataFrame row per group (``ALL`` last). ``bank`` is
    ``synthetic:SEED``, a bank Parquet file or a loaded bank; ``options`` are
    :func:`spica_results`' (splits, similarity, rating, weights)."""
    import pandas as pd

    b = load_spica_bank(bank) if isinstance(bank, (str, os.PathLike)) else bank
    rows = []
    for e in spica_results(b, k=k, bootstrap=bootstrap, seed=seed, groups=groups, **options):
        rows.append({"group": e.group, "n_queries": e.n_queries,
                     **{f"{name}_{part}": getattr(getattr(e, name), part)
                        for name in ("baseline", "spica", "gain")
                        for part in ("mean", "low", "high")}})
    return pd.DataFrame(rows)


def write_report(runs: Sequence[str | os.PathLike[str]], out: str | os.PathLike[str],
                 title: str = "pluralign report") -> Path:
    """Write one self-contained HTML report over run folders (needs the ``report`` extra)."""

    written: Path = write_bytes(out, build_report([Path(r) for r in runs], title).encode())
    return written
