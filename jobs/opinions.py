"""The ``opinions`` job: distributional pluralism from a model (the pluralism roadmap,
Sorensen et al. 2024, §3.3, App. A).

Asks the model each multiple-choice survey question N times (``samples`` of its LLMConfig),
takes the share of answers per option as its distribution, and compares it with every
population's by Jensen–Shannon distance, entropy and the shuffled-label control of the
``distribution`` job. Answers are cached per (question, model settings, sample): a rerun sends
nothing. With ``logprobs`` = K (App. A) the model is asked once per question for the letter of
its answer with the first token's K most likely alternatives; its distribution is the option
letters' probabilities, renormalised.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa

from pluralign.engine.align.results import rows_table
from pluralign.engine.data.field_data import SurveyLoad, load_global_opinions, load_opinionqa
from pluralign.engine.errors import InputError, PluralignError
from pluralign.engine.judges.base import letters
from pluralign.engine.pluralism.distributional import (
    DistributionReport,
    Question,
    evaluate_distributions,
    load_distributions,
)
from pluralign.engine.pluralism.judges import SURVEY_BENCHMARK, SurveyJudge
from pluralign.engine.pluralism.opinions import (
    answers_by_question,
    logprob_distribution,
    logprobs_by_question,
    with_distributions,
    with_model,
)
from pluralign.engine.run.backend import NO_LOGPROBS
from pluralign.engine.run.scheduler import Dispatcher, ScheduleReport
from pluralign.engine.store.files import check_output
from pluralign.engine.store.manifest import current, file_record
from pluralign.engine.store.redaction import safe_url
from pluralign.jobs.configs import LLMConfig
from pluralign.jobs.pluralism_runs import cache_store, run_judge, samples_of, settings
from pluralign.jobs.runtime import write_json_atomic, write_parquet_atomic

__all__ = ["LOGPROBS_K", "OpinionsConfig", "OpinionsResult", "load_questions", "load_survey",
           "mean_refusal", "run_opinions"]

LOGPROBS_K = 20
"""Alternatives asked for when ``--logprobs`` is given without K."""


@dataclass(frozen=True, kw_only=True)
class OpinionsConfig:
    """The survey ``pluralign opinions`` asks the model, how, and where it writes. Exactly one
    of ``file``, ``global_opinions`` and ``opinionqa`` names the questions."""

    file: str | None = None
    """Distribution file (JSON, as for pluralign distribution)."""
    global_opinions: str | None = None
    """GlobalOpinionQA global_opinions.csv."""
    opinionqa: str | None = None
    """An OpinionQA human_resp/<survey> folder."""
    group_by: str | None = None
    """OpinionQA: demographic column for populations."""
    rotate_options: bool = False
    """Rotate the option order per sample (position-bias control)."""
    logprobs: int | None = None
    """Distribution from the first token's top-K option-letter log-probabilities (K default
    20), one request per question, instead of sampling."""
    shuffles: int = 100
    """Shuffled-label permutations."""
    seed: int = 0
    """Seed of the shuffles."""
    limit: int | None = None
    """Only the first N questions (a limited run shares its cache entries with a full one)."""
    cache: str | None = None
    """Cache folder (default: $PLURALIGN_CACHE, then the user cache dir)."""
    out: str
    """Folder for summary.json and opinions.parquet."""


@dataclass(frozen=True)
class OpinionsResult:
    """What an opinions run asked, compared and wrote."""

    model: str
    """The model's name: its label in the tables."""
    mode: Literal["samples", "logprobs"]
    """How the model's distribution was taken."""
    samples: int
    """Samples per question (1 in the log-probability mode)."""
    top_logprobs: int | None
    """K of the log-probability mode (None when sampling)."""
    questions: list[Question]
    """The questions asked."""
    answered: list[Question]
    """Those with the model's distribution added (under ``model``)."""
    unanswered: list[str]
    """Ids of the questions without an answer (left out)."""
    report: DistributionReport
    """Per (model, group) averages and per-question rows."""
    schedule: ScheduleReport
    """The scheduler's counts."""
    out: Path
    """The folder written: summary.json (and opinions.parquet when any question compares)."""
    skipped: dict[str, int]
    """Records the loader skipped, by reason (also in summary.json and the manifest)."""
    refusal: dict[str, float]
    """OpinionQA: population -> mean refusal rate over the questions asked (refusal options
    are kept out of the distributions, as the dataset's authors do); empty otherwise."""


def load_questions(config: OpinionsConfig) -> list[Question]:
    """The survey questions of the one source ``config`` names (the first ``limit``)."""
    return load_survey(config).questions


def load_survey(config: OpinionsConfig) -> SurveyLoad:
    """The survey of the one source ``config`` names (its first ``limit`` questions), with
    the records its loader skipped and OpinionQA's refusal rates."""
    if sum(bool(s) for s in (config.file, config.global_opinions, config.opinionqa)) != 1:
        raise InputError("give the questions as exactly one of a distribution file, "
                         "GlobalOpinionQA and OpinionQA", field="file",
                         hint="`file`, `global_opinions` or `opinionqa`")
    if config.group_by and not config.opinionqa:
        raise InputError("`group_by` applies to OpinionQA only", field="group_by",
                         hint="GlobalOpinionQA's populations are its countries")
    if config.file:
        survey = SurveyLoad(load_distributions(config.file), str(config.file))
    elif config.global_opinions:
        survey = load_global_opinions(config.global_opinions)
    else:
        survey = load_opinionqa(str(config.opinionqa), config.group_by)
    if config.limit:
        kept = survey.questions[: config.limit]
        survey = SurveyLoad(kept, survey.source, survey.skipped,
                            {q.id: survey.refusal[q.id] for q in kept if q.id in survey.refusal})
    m = current()
    if m is not None:
        m.benchmark = {"files": [file_record(f) for f in _files(survey.source)],
                       "questions": len(survey.questions), "skipped": survey.skipped}
    return survey


def _files(source: str) -> list[Path]:
    p = Path(source)
    return sorted(f for f in p.glob("*.csv")) if p.is_dir() else [p]


def mean_refusal(survey: SurveyLoad) -> dict[str, float]:
    """Population -> mean refusal rate over the questions it answered."""
    by: dict[str, list[float]] = {}
    for rates in survey.refusal.values():
        for g, r in rates.items():
            by.setdefault(g, []).append(r)
    return {g: sum(v) / len(v) for g, v in sorted(by.items())}


def run_opinions(config: OpinionsConfig, llm: LLMConfig,
                 backend: Dispatcher | None = None) -> OpinionsResult:
    """Ask ``llm`` every question (what the choice cache lacks), compare its distributions
    with the populations'; write opinions.parquet and summary.json under ``config.out``.
    ``backend`` replaces the pool ``llm`` would start (tests)."""
    check_output(config.out)
    if config.shuffles < 1:
        raise InputError("`shuffles` must be at least 1", field="shuffles")
    k = config.logprobs
    if k is not None and k < 1:
        raise InputError("`logprobs` K must be at least 1", field="logprobs")
    if k is not None and (config.rotate_options or (llm.samples or 1) > 1):
        raise InputError("`logprobs` asks once per question: drop `samples` and "
                         "`rotate_options`", field="logprobs")
    survey = load_survey(config)
    questions = survey.questions
    judge = SurveyJudge(questions, settings(llm), rotate=config.rotate_options, logprobs=k)
    samples = samples_of(llm)
    schedule = run_judge(judge, judge.items(samples), llm, config.cache, backend)
    rows = cache_store(config.cache).read(SURVEY_BENCHMARK, judge.identity).to_pylist()
    keys = [judge.scenario_key(i) for i in range(len(questions))]
    label = llm.model
    if k is None:
        answered, missing = with_model(questions, keys, answers_by_question(rows, samples),
                                       label)
    else:
        tops = logprobs_by_question(rows)
        if not tops and any(NO_LOGPROBS in (r["error"] or "") for r in rows):
            raise PluralignError(f"{safe_url(llm.base_url or llm.backend)}: {NO_LOGPROBS}")
        dists = {key: logprob_distribution(tops[key], letters(len(q.options)))
                 for q, key in zip(questions, keys, strict=True) if key in tops}
        answered, missing = with_distributions(questions, keys, dists, label)
    report = evaluate_distributions(answered, n_shuffles=config.shuffles, seed=config.seed)
    refusal = mean_refusal(survey)
    out = Path(config.out)
    if report.questions:
        write_parquet_atomic(out / "opinions.parquet", _table(report.questions, answered, label))
    write_json_atomic(out / "summary.json", {
        "model": label, "judge": judge.describe(),
        "mode": "samples" if k is None else "logprobs", "top_logprobs": k,
        "samples": samples if k is None else None,
        "questions": len(questions), "answered": len(answered), "unanswered": missing,
        "shuffles": config.shuffles, "seed": config.seed, "pairs": report.pairs,
        "skipped": survey.skipped, "refusal_rate": refusal,
        "scoring": schedule.as_dict()})
    return OpinionsResult(label, "samples" if k is None else "logprobs", samples, k, questions,
                          answered, missing, report, schedule, out, survey.skipped, refusal)


def _table(rows: list[dict[str, Any]], questions: list[Question], model: str) -> pa.Table:
    dist = {q.id: [float(x) for x in q.models[model]] for q in questions}
    return rows_table([{**r, "model_distribution": dist[r["question"]]} for r in rows],
                      "opinions")
