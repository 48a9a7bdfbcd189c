"""LLM judges of the steerable pluralistic models (seed 003 §4): comparative regression,
per-response regression, prompt-aligned and unaligned, plus few-shot rubric selection.

Judges are pure: they build typed generation requests and parse answers into cache rows;
:mod:`pluralign.engine.scheduler` sends the requests.
"""

from __future__ import annotations

from pluralign.engine.benchmark import Benchmark
from pluralign.engine.errors import InputError
from pluralign.engine.judges.base import AnswerError, Judge, JudgeSettings, WorkItem
from pluralign.engine.judges.comparative import ComparativeJudge
from pluralign.engine.judges.fewshot import ChoiceExampleSelector, FewShotSelector
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
    "load_prompts",
    "make_judge",
]


def make_judge(
    name: str,
    bench: Benchmark,
    settings: JudgeSettings,
    *,
    train: Benchmark | None = None,
    prompts: PromptFile | None = None,
) -> Judge:
    """The judge called ``name``; few-shot settings need ``train`` (the training split);
    ``prompts`` overrides templates and definitions (docs/prompts.md)."""
    templates = None if prompts is None else prompts.for_judge(name)
    if settings.few_shot and train is None and name in (*SCORE_JUDGES, "prompt-aligned"):
        raise InputError("few-shot scoring needs the training split", field="train",
                         hint="pass --zero-shot or provide the benchmark's train split")
    if name in SCORE_JUDGES:
        selector = None
        if settings.few_shot and train is not None:
            selector = FewShotSelector(train, settings.similarity)
        cls = ComparativeJudge if name == "comparative-regression" else RegressionJudge
        definitions = None if prompts is None else dict(prompts.definitions)
        return cls(bench, settings, fewshot=selector, templates=templates,
                   definitions=definitions)
    if name == "prompt-aligned":
        choice_examples = None
        if settings.few_shot and train is not None:
            choice_examples = ChoiceExampleSelector(train, settings.similarity)
        return PromptAlignedJudge(bench, settings, templates=templates, fewshot=choice_examples)
    if settings.few_shot:
        raise InputError(f"{name} has no in-context examples", field="few-shot",
                         hint="run it zero-shot")
    if name == "unaligned":
        return UnalignedJudge(bench, settings, templates=templates)
    raise InputError(f"unknown LLM scorer {name!r}", field="scorer",
                     hint=f"choose one of {', '.join(JUDGE_NAMES)}")
