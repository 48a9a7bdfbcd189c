"""LLM judges of the steerable pluralistic models (seed 003 §4): comparative regression,
per-response regression, prompt-aligned and unaligned, plus few-shot rubric selection.

Judges are pure: they build typed generation requests and parse answers into cache rows;
:mod:`pluralign.engine.run.scheduler` sends the requests.
"""

from __future__ import annotations

from dataclasses import replace

from pluralign.engine.data.benchmark import Benchmark
from pluralign.engine.errors import InputError
from pluralign.engine.judges.base import AnswerError, Judge, JudgeSettings, WorkItem
from pluralign.engine.judges.comparative import ComparativeJudge
from pluralign.engine.judges.fewshot import (
    CHOICE_SHOTS,
    RUBRIC_SHOTS,
    ChoiceExampleSelector,
    FewShotSelector,
    check_shots,
)
from pluralign.engine.judges.prompt_aligned import PromptAlignedJudge
from pluralign.engine.judges.prompts import PromptFile, load_prompts
from pluralign.engine.judges.regression import RegressionJudge
from pluralign.engine.judges.unaligned import UnalignedJudge

SCORE_JUDGES = ("comparative-regression", "regression")
"""Judges whose answers are attribute scores (they serve every target from the cache)."""
CHOICE_JUDGES = ("prompt-aligned", "unaligned")
"""Judges whose answers are a chosen response."""
JUDGE_NAMES = SCORE_JUDGES + CHOICE_JUDGES

__all__ = [
    "CHOICE_JUDGES",
    "DEFAULT_SHOTS",
    "JUDGE_NAMES",
    "SCORE_JUDGES",
    "AnswerError",
    "ComparativeJudge",
    "FewShotSelector",
    "Judge",
    "JudgeSettings",
    "PromptAlignedJudge",
    "PromptFile",
    "RegressionJudge",
    "UnalignedJudge",
    "WorkItem",
    "judge_shots",
    "load_prompts",
    "make_judge",
]


DEFAULT_SHOTS = {"comparative-regression": RUBRIC_SHOTS, "regression": RUBRIC_SHOTS,
                 "prompt-aligned": CHOICE_SHOTS}
"""In-context examples of each few-shot judge when ``JudgeSettings.shots`` is None: one per
label level for the regression judges' rubric, five solved scenarios for prompt-aligned."""


def judge_shots(name: str, settings: JudgeSettings) -> JudgeSettings:
    """``settings`` with ``shots`` checked for judge ``name``: refused for a zero-shot run or
    a judge without examples, and None when it is the judge's default (so the identity is
    the default's)."""
    if settings.shots is None:
        return settings
    shots = check_shots(settings.shots)
    if name not in DEFAULT_SHOTS:
        raise InputError(f"{name} has no in-context examples; --shots does not apply",
                         field="shots", hint="drop --shots")
    if not settings.few_shot:
        raise InputError(f"--shots {shots} sets in-context examples, but this {name} run is "
                         "zero-shot", field="shots", hint="add --few-shot, or drop --shots")
    return replace(settings, shots=None if shots == DEFAULT_SHOTS[name] else shots)


def make_judge(
    name: str,
    bench: Benchmark,
    settings: JudgeSettings,
    *,
    train: Benchmark | None = None,
    prompts: PromptFile | None = None,
) -> Judge:
    """The judge called ``name``; few-shot settings need ``train`` (the training split);
    ``prompts`` overrides templates and definitions (docs/prompts.md); ``settings.shots`` sets
    the number of in-context examples (:data:`DEFAULT_SHOTS` when None)."""
    templates = None if prompts is None else prompts.for_judge(name)
    if name not in JUDGE_NAMES:
        raise InputError(f"unknown LLM scorer {name!r}", field="scorer",
                         hint=f"choose one of {', '.join(JUDGE_NAMES)}")
    settings = judge_shots(name, settings)
    if settings.few_shot and train is None and name in (*SCORE_JUDGES, "prompt-aligned"):
        raise InputError("few-shot scoring needs the training split", field="train",
                         hint="pass --zero-shot or provide the benchmark's train split")
    k = settings.shots if settings.shots is not None else DEFAULT_SHOTS.get(name, 1)
    if name in SCORE_JUDGES:
        selector = None
        if settings.few_shot and train is not None:
            selector = FewShotSelector(train, settings.similarity, k)
        cls = ComparativeJudge if name == "comparative-regression" else RegressionJudge
        definitions = None if prompts is None else dict(prompts.definitions)
        return cls(bench, settings, fewshot=selector, templates=templates,
                   definitions=definitions)
    if name == "prompt-aligned":
        choice_examples = None
        if settings.few_shot and train is not None:
            choice_examples = ChoiceExampleSelector(train, settings.similarity, k)
        return PromptAlignedJudge(bench, settings, templates=templates, fewshot=choice_examples)
    if settings.few_shot:
        raise InputError(f"{name} has no in-context examples", field="few-shot",
                         hint="run it zero-shot")
    return UnalignedJudge(bench, settings, templates=templates)
