"""The Python API: load a benchmark, score it through the cache (model-free or LLM judges),
re-align any targets, evaluate juries and SPICA retrieval. Results are Arrow tables or pandas
DataFrames; every call that may reach the network has an ``async`` twin that works inside a
running event loop (a notebook)."""

from __future__ import annotations

import argparse
import asyncio
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pluralign.config import LLMConfig
from pluralign.engine.benchmark import Benchmark
from pluralign.engine.targets import TargetSet

LLM_SCORERS = ("comparative-regression", "regression")
"""LLM judges that score attributes (the choice judges are for the command line)."""


@dataclass(frozen=True)
class Scores:
    """Predicted attribute scores of one scorer on one benchmark split, as cached."""

    bench: Benchmark
    """The split that was scored."""
    predictions: np.ndarray
    """float64 (responses, attributes), rows in benchmark order."""
    identity: str
    """The scorer's cache identity (pass it to ``pluralign align --scorer-id``)."""
    report: Any = None
    """For LLM judges, the scheduler's counts (items, cached, failed, requests, tokens)."""

    def to_arrow(self) -> Any:
        """One row per (scenario, response) with a column per attribute."""
        import pyarrow as pa

        b = self.bench
        ids = [s.id for s in b.scenarios]
        cols: dict[str, Any] = {
            "scenario": [ids[i] for i in b.scenario_of.tolist()],
            "response": b.response_index.astype(np.int32),
        }
        for j, a in enumerate(b.attributes):
            cols[a] = self.predictions[:, j]
        return pa.table(cols)

    def to_pandas(self) -> Any:
        return self.to_arrow().to_pandas()


def _cache(cache: str | os.PathLike[str] | None) -> Any:
    from pluralign.engine.cache import ScoreCache
    from pluralign.jobs.common import cache_dir

    return ScoreCache(cache_dir(None if cache is None else str(cache)))


def load_benchmark(name: str = "helpsteer2", split: str = "eval", *,
                   data: str | os.PathLike[str] | None = None,
                   limit: int | None = None) -> Benchmark:
    """A benchmark split: ``helpsteer2``, ``mic``, ``synthetic:S=..,R=..`` or a JSON file;
    ``limit`` keeps the first scenarios (a limited run shares its cache entries)."""
    from pluralign.engine.data import load_benchmark as load

    bench = load(name, split, data)
    return bench.subset(limit) if limit is not None and limit < bench.n_scenarios else bench


def scorer_names() -> list[str]:
    """Every scorer name: the model-free registry, then the LLM judges."""
    from pluralign.engine.scorers import scorer_names as model_free

    return [*model_free(), *LLM_SCORERS]


def get_scorer(name: str = "ridge", **options: Any) -> Any:
    """A model-free scorer by name (``ridge``, ``oracle``, ``random``, ``constant``,
    ``predictions:PATH``) with its keyword options, e.g. ``get_scorer("random", seed=1)``."""
    from pluralign.engine.scorers import get_scorer as get

    return get(name, **options)


def _train_split(bench: Benchmark, train: Benchmark | str | None) -> Benchmark | None:
    if train is None or isinstance(train, Benchmark):
        return train
    return load_benchmark(bench.name.split("/")[0], train)


def score(bench: Benchmark, scorer: Any = "ridge", *, train: Benchmark | str | None = "train",
          cache: str | os.PathLike[str] | None = None) -> Scores:
    """Model-free scores through the cache: computes only what the cache lacks. ``train`` is
    the split (or a loaded benchmark) scorers learn from, used only when they need one."""
    from pluralign.engine.scorers import score_through_cache

    s = get_scorer(scorer) if isinstance(scorer, str) else scorer
    tr = _train_split(bench, train) if s.needs_train else None
    preds = score_through_cache(s, bench, _cache(cache), train=tr)
    return Scores(bench, preds, s.identity(bench, tr))


def score_llm(bench: Benchmark, judge: str, config: LLMConfig, *,
              train: Benchmark | str | None = "train",
              cache: str | os.PathLike[str] | None = None, quiet: bool = False) -> Scores:
    """LLM judge scores (``comparative-regression`` or ``regression``) through the cache:
    only missing (scenario, attribute[, response], sample) items are sent. Raises when items
    stay unanswered (nothing is re-aligned on incomplete scores). Do not call this inside a
    running event loop: use :func:`ascore_llm` there."""
    import sys

    from pluralign.engine.errors import InputError
    from pluralign.jobs.llm_scoring import few_shot_for, require_complete, run_llm_scoring

    if judge not in LLM_SCORERS:
        raise InputError(f"{judge!r} is not a scoring LLM judge", field="judge",
                         hint=f"one of {', '.join(LLM_SCORERS)}")
    args = config.to_namespace()
    tr = _train_split(bench, train) if few_shot_for(judge, args) else None
    c = _cache(cache)
    log = None if quiet else sys.stderr
    report = run_llm_scoring(bench, tr, judge, args, c, log=log)
    require_complete(report, args, log=log)  # raises IncompleteScoring on missing scores
    preds = c.predictions(report.bench, report.identity, report.samples)
    return Scores(report.bench, preds, report.identity, report.schedule)


async def ascore_llm(bench: Benchmark, judge: str, config: LLMConfig, *,
                     train: Benchmark | str | None = "train",
                     cache: str | os.PathLike[str] | None = None, quiet: bool = False) -> Scores:
    """:func:`score_llm` for a running event loop: the scheduler runs its own loop in a worker
    thread, so the caller's loop stays responsive."""
    return await asyncio.to_thread(score_llm, bench, judge, config, train=train, cache=cache,
                                   quiet=quiet)


def targets(bench: Benchmark, *specs: str, data: str | os.PathLike[str] | None = None
            ) -> list[TargetSet]:
    """Target sets as the command line names them: ``all``, ``sampled``, ``high``, ``low``,
    JSON files or folders, inline ``{"helpfulness": 1}`` or ``helpfulness=1,verbosity=0``."""
    from pluralign.jobs.common import resolve_target_sets

    sets: list[TargetSet] = resolve_target_sets(list(specs) or ["all"], bench,
                                                None if data is None else str(data))
    return sets


def realign(scores: Scores, sets: Sequence[TargetSet | str] = ("all",), *,
            data: str | os.PathLike[str] | None = None) -> Any:
    """Accuracy, counts and weighted score per target (seed 003 §5.1) from cached scores
    alone, as a pandas DataFrame (the columns of per_target.parquet)."""
    from pluralign.engine.align import realign as run_realign
    from pluralign.jobs.cmd_sweep import per_target_table

    named = [s for s in sets if isinstance(s, str)]
    resolved = targets(scores.bench, *named, data=data) if named else []
    rows = [(ts, run_realign(scores.bench, scores.predictions, ts, weighted=True))
            for ts in [*[s for s in sets if not isinstance(s, str)], *resolved]]
    return per_target_table(rows).to_pandas()


def summarize(per_target: Any) -> Any:
    """Mean and standard deviation of accuracy over the defined targets, per set and number
    of target attributes (seed 003 Fig. 8), from :func:`realign`'s table."""
    defined = per_target[per_target["accuracy"].notna()]
    return (defined.groupby(["set", "n_attributes"])["accuracy"]
            .agg(["mean", "std", "count"]).reset_index())


def jury(scores: Scores, groups: str | os.PathLike[str] | dict[str, Any], *,
         alphas: Sequence[float] = (0.0, 1.0, float("inf")), tau: float = 0.5,
         bootstrap: int = 1000, seed: int = 0) -> Any:
    """Per-group accuracy, utility and welfare w_α with bootstrap intervals (the pluralism
    roadmap, Sorensen et al. 2024, §4.3), one DataFrame row per group and ``ALL``. ``groups``
    is a group file (docs/juries.md) or the same content as a dict."""
    import pandas as pd

    from pluralign.engine.juries import load_jury, parse_jury
    from pluralign.engine.jury_eval import JuryConfig, evaluate_jury

    b = scores.bench
    if isinstance(groups, dict):
        j = parse_jury(groups, b.attributes, b.levels, "groups")
    else:
        j = load_jury(groups, b.attributes, b.levels)
    cfg = JuryConfig(alphas=tuple(float(a) for a in alphas), tau=tau, n_bootstrap=bootstrap,
                     seed=seed)
    return pd.DataFrame(evaluate_jury(b, scores.predictions, j, cfg).rows())


def spica_evaluate(bank: str = "synthetic:0", *, k: int = 5, bootstrap: int = 2000,
                   seed: int = 0, groups: Sequence[str] | None = None) -> Any:
    """SPICA's retrieval error per group (Chen et al., SPICA, §3.2 and Fig. 3): weights fitted
    on the bank's dev split, similarity-only vs group-informed retrieval on its test split,
    with bootstrap intervals; one DataFrame row per group (``ALL`` last). ``bank`` is
    ``synthetic:SEED`` or a bank Parquet file."""
    import pandas as pd

    from pluralign.engine.spica.evaluate import evaluate_retrieval
    from pluralign.jobs.cmd_spica import _groups, _retriever, load_bank_arg

    ns = argparse.Namespace(bank=bank, spica_annotations=None, spica_scenarios=None,
                            train_split="train", similarity="tfidf", rating="response")
    b = load_bank_arg(ns)
    names = _groups(",".join(groups) if groups else None, b)
    retriever = _retriever(ns, b)
    weights = retriever.fit_all(b.select("dev"), names)
    rows = []
    for e in evaluate_retrieval(retriever, b.select("test"), weights, names, k, bootstrap, seed):
        rows.append({"group": e.group, "n_queries": e.n_queries,
                     **{f"{name}_{part}": getattr(getattr(e, name), part)
                        for name in ("baseline", "spica", "gain")
                        for part in ("mean", "low", "high")}})
    return pd.DataFrame(rows)


def write_report(runs: Sequence[str | os.PathLike[str]], out: str | os.PathLike[str],
           title: str = "pluralign report") -> Path:
    """Write one self-contained HTML report over run folders (needs the ``report`` extra)."""
    from pluralign.engine.files import write_bytes
    from pluralign.report import build_report

    written: Path = write_bytes(out, build_report([Path(r) for r in runs], title).encode())
    return written
