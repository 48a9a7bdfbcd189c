"""LLM judges of the steerable pluralistic models of Adams et al., "Steerable Pluralism:
Pluralistic Alignment via Few-Shot Comparative Regression" (§4, the ablations of §5.3):
comparative regression, per-response regression, prompt-aligned and unaligned, plus few-shot
rubric selection.

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
from pluralign.engine.scorers.registry import JUDGE_KINDS, scorer_info, scorer_names

SCORE_JUDGES = tuple(scorer_names("llm-score"))
"""Judges whose answers are attribute scores (they serve every target from the cache)."""
CHOICE_JUDGES = tuple(scorer_names("llm-choice"))
"""Judges whose answers are a chosen response."""
JUDGE_NAMES = SCORE_JUDGES + CHOICE_JUDGES
"""Every LLM judge, from the one scorer registry (:mod:`pluralign.engine.scorers.registry`)."""

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
        raise InputError(f"{name} has no in-context examples; `shots` does not apply",
                         field="shots", hint="drop `shots`")
    if not settings.few_shot:
        raise InputError(f"`shots={shots}` sets in-context examples, but this {name} run is "
                         "zero-shot", field="shots", hint="set `few_shot=True`, or drop `shots`")
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
    info = scorer_info(name)  # an unknown name: the closest one and every scorer
    if info.kind not in JUDGE_KINDS:
        raise InputError(f"{name!r} is not an LLM judge ({info.kind})", field="scorer",
                         hint=f"LLM judges: {', '.join(JUDGE_NAMES)}")
    templates = None if prompts is None else prompts.for_judge(name)
    settings = judge_shots(name, settings)
    has_examples = name in DEFAULT_SHOTS
    if settings.few_shot and not has_examples:
        raise InputError(f"{name} has no in-context examples", field="few_shot",
                         hint="run it zero-shot: `few_shot=False`")
    if settings.few_shot and train is None:
        raise InputError("few-shot scoring needs the training split", field="train",
                         hint="set `few_shot=False` or pass the benchmark's training split "
                              "as `train`")
    k = settings.shots if settings.shots is not None else DEFAULT_SHOTS.get(name, 1)
    cls = info.factory()
    judge: Judge
    if info.kind == "llm-score":
        selector = None
        if settings.few_shot and train is not None:
            selector = FewShotSelector(train, settings.similarity, k)
        definitions = None if prompts is None else dict(prompts.definitions)
        judge = cls(bench, settings, fewshot=selector, templates=templates,
                    definitions=definitions)
    elif has_examples:
        examples = None
        if settings.few_shot and train is not None:
            examples = ChoiceExampleSelector(train, settings.similarity, k)
        judge = cls(bench, settings, templates=templates, fewshot=examples)
    else:
        judge = cls(bench, settings, templates=templates)
    return judge
