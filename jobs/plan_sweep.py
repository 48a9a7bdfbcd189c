"""The plan of a sweep's LLM scoring (``pluralign plan``): the same benchmark, judge, items
and cache the sweep would use, given to :func:`pluralign.jobs.plan.plan_items`; sends
nothing."""

from __future__ import annotations

from pluralign.engine.data.target_sets import resolve_target_sets
from pluralign.engine.data.targets import concat
from pluralign.engine.errors import InputError
from pluralign.engine.judges import CHOICE_JUDGES, SCORE_JUDGES
from pluralign.engine.store.cache import ScoreCache
from pluralign.engine.store.choices import ChoiceCache
from pluralign.jobs import api
from pluralign.jobs.llm_scoring import build_judge, samples_of, target_keys
from pluralign.jobs.plan import RunPlan, plan_items
from pluralign.jobs.runtime import cache_dir, load_splits
from pluralign.jobs.sweep import SweepConfig


def plan_sweep(config: SweepConfig) -> RunPlan:
    """What ``run_sweep(config)`` would send for its LLM judge, and its cost and time."""
    llm = config.llm
    if llm is None or config.scorer not in (*SCORE_JUDGES, *CHOICE_JUDGES):
        raise InputError(f"{config.scorer!r} calls no LLM: nothing to plan", field="scorer")
    s = config.splits
    bench, train = load_splits(s.benchmark, s.split, s.data, limit=s.limit,
                               train_split=s.train_split if api.needs_train(config.scorer, llm)
                               else None)
    targets = None
    if config.scorer == "prompt-aligned":
        sets = [ts for ts in resolve_target_sets(config.targets, bench, s.data)
                if ts.name != "all"]
        targets = concat(sets, "requested") if sets else None
    judge = build_judge(bench, train, config.scorer, llm)
    samples = samples_of(llm)
    items = judge.items(range(bench.n_scenarios), samples, target_keys(targets, config.scorer))
    root = cache_dir(s.cache)
    store = ChoiceCache(root) if judge.kind == "choice" else ScoreCache(root)
    return plan_items(judge, items, llm, store, benchmark=bench.identity, samples=samples)
