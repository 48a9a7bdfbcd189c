"""Running the pluralism judges (Overton entailment, survey answers) through the one scheduler:
the backend pool, limits and retries come from the same :class:`LLMConfig` (built from the same
flags) and public functions as ``sweep``'s LLM scoring; answers land in the choice cache, so a
rerun sends nothing.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from pluralign.engine.errors import InputError, ScoringInterrupted
from pluralign.engine.judges.base import JudgeSettings, WorkItem
from pluralign.engine.pluralism.judges import EntailmentJudge, SurveyJudge
from pluralign.engine.run.scheduler import (
    STDERR,
    Dispatcher,
    Idle,
    ScheduleReport,
    plan,
    run_schedule,
)
from pluralign.engine.store.choices import ChoiceCache
from pluralign.engine.store.claims import Claims
from pluralign.jobs.configs import LLMConfig
from pluralign.jobs.interrupts import Interrupts
from pluralign.jobs.llm_scoring import (
    judge_settings,
    make_pool,
    samples_of,
    scheduler_config,
)
from pluralign.jobs.runtime import cache_dir, progress

__all__ = ["PluralismJudge", "cache_store", "run_judge", "samples_of", "settings"]

PluralismJudge = EntailmentJudge | SurveyJudge
"""The judges of ``overton`` and ``opinions``: their answers land in the choice cache."""


def settings(config: LLMConfig) -> JudgeSettings:
    """Model and sampling settings of the config (few-shot does not apply, so ``shots`` is
    refused rather than ignored)."""
    if config.shots is not None:
        raise InputError("`shots` applies to few-shot judges only", field="shots",
                         hint="drop `shots`")
    s = judge_settings(config)
    return JudgeSettings(**{**s.as_dict(), "few_shot": False})


def cache_store(cache: str | None) -> ChoiceCache:
    """The choice cache in the folder ``cache`` (None: the default cache folder)."""
    return ChoiceCache(cache_dir(cache))


def run_judge(judge: PluralismJudge, items: list[WorkItem], config: LLMConfig,
              cache: str | None, backend: Dispatcher | None = None) -> ScheduleReport:
    """Send the items the cache lacks; no backend is started when nothing is missing.
    ``backend`` overrides the pool built from ``config`` (tests)."""
    store = cache_store(cache)
    report = asyncio.run(_run(judge, items, config, store, backend))
    if report.stop_kind == "interrupted":  # every answer received is stored; exit 130
        raise ScoringInterrupted()
    return report


async def _run(judge: PluralismJudge, items: list[WorkItem], config: LLMConfig,
               store: ChoiceCache, backend: Dispatcher | None) -> ScheduleReport:
    pending = plan(items, store.completed_keys(judge.benchmark, judge.identity)).pending
    owned = backend is None and bool(pending)
    pool: Any = make_pool(config) if owned else (backend or Idle())
    progress(f"{judge.name}: {len(items):,} items, {len(pending):,} not cached "
             f"(cache: {store.root})")
    interrupts = Interrupts(STDERR, pool)  # signals stop sending, as in sweep
    try:
        with interrupts.installed():
            if owned:
                await pool.start()
            return await run_schedule(judge, items, pool, store, scheduler_config(config),
                                      benchmark=judge.benchmark, claims=Claims(Path(store.root)),
                                      on_start=interrupts.attach)
    finally:
        if owned:
            await pool.close()
