"""Scorers: the one registry of every scorer (:mod:`.registry`) and the model-free ones.

``get_scorer("ridge")``, ``get_scorer("random", seed=3)``, ``get_scorer("predictions:PATH")``
build model-free scorers; LLM judges are built by :func:`pluralign.engine.judges.make_judge`;
:func:`score_through_cache` computes only what the score cache lacks.
"""

from __future__ import annotations

import inspect

from pluralign.engine.errors import InputError
from pluralign.engine.scorers.base import Scorer, checked_predictions
from pluralign.engine.scorers.registry import (
    JUDGE_KINDS,
    KINDS,
    ScorerInfo,
    ScorerKind,
    register_scorer,
    scorer_class,
    scorer_info,
    scorer_names,
)
from pluralign.engine.scorers.through_cache import score_through_cache

__all__ = [
    "JUDGE_KINDS",
    "KINDS",
    "Scorer",
    "ScorerInfo",
    "ScorerKind",
    "checked_predictions",
    "get_scorer",
    "register_scorer",
    "score_through_cache",
    "scorer_class",
    "scorer_info",
    "scorer_names",
]

_BUILT_ELSEWHERE = {
    "llm-score": "an LLM judge: build it with make_judge (or pluralign.score with `config`)",
    "llm-choice": "an LLM judge: build it with make_judge (or pluralign.score with `config`)",
    "reward": "the reward scorer: it needs its settings (pluralign.score with `config`)",
}


def get_scorer(spec: str, **options: object) -> Scorer:
    """A model-free scorer from ``name`` or ``name:ARG`` (ARG is the first positional
    argument, e.g. the file of ``predictions:PATH``), with keyword ``options``."""
    name, sep, arg = spec.partition(":")
    info = scorer_info(name.strip())
    if info.kind != "model-free":
        raise InputError(f"{info.name!r} is not a model-free scorer", field="scorer",
                         hint=f"{info.name} is {_BUILT_ELSEWHERE[info.kind]}")
    cls = info.factory()
    args = (arg,) if sep else ()
    try:
        inspect.signature(cls).bind(*args, **options)
    except TypeError as e:
        raise InputError(f"bad options for scorer {name!r}: {e}", field="scorer",
                         hint=f"{name}{inspect.signature(cls)}") from None
    scorer = cls(*args, **options)
    assert isinstance(scorer, Scorer)
    return scorer
