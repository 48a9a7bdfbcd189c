"""pluralign: an async, distributed evaluation engine for pluralistic alignment.

The public surface (docs/api.md walks through it)::

    import pluralign as pa
    bench = pa.load_benchmark("helpsteer2", "eval")
    scores = pa.score(bench, "ridge")                  # model-free, through the cache
    per_target = pa.realign(scores, ["all", "sampled"])  # a pandas DataFrame
    scores = await pa.ascore_llm(bench, "comparative-regression", pa.LLMConfig(model="m"))

This module is the facade: it re-exports the jobs (:mod:`pluralign.jobs`) and the engine's
public types and errors, and nothing in the package imports it. Names load on first use, so
``import pluralign`` (and ``pluralign --help``) stays light.
"""

from __future__ import annotations

import importlib as _importlib
import typing as _typing

from pluralign.engine.version import __version__

_API = "pluralign.jobs.api"
_ERRORS = "pluralign.engine.errors"
_LAZY = {
    "LLMConfig": "pluralign.jobs.configs",
    "RewardConfig": "pluralign.jobs.configs",
    "Scores": _API,
    "Choices": _API,
    "load_benchmark": _API,
    "scorer_names": _API,
    "get_scorer": _API,
    "score": _API,
    "score_llm": _API,
    "score_reward": _API,
    "ascore_llm": _API,
    "ascore": _API,
    "choose_llm": _API,
    "achoose_llm": _API,
    "scorer_identity": _API,
    "cached_scores": _API,
    "compare": _API,
    "decisions": _API,
    "targets": _API,
    "realign": _API,
    "summarize": _API,
    "jury": _API,
    "spica_evaluate": _API,
    "load_spica_bank": _API,
    "write_report": _API,
    "Benchmark": "pluralign.engine.data.benchmark",
    "TargetSet": "pluralign.engine.data.targets",
    "ScoreCache": "pluralign.engine.store.cache",
    "PluralignError": _ERRORS,
    "InputError": _ERRORS,
    "DataNotFoundError": _ERRORS,
    "CacheSchemaError": _ERRORS,
    "IncompleteScoring": _ERRORS,
    "ScoringInterrupted": _ERRORS,
    "TooLarge": _ERRORS,
    "NotCached": _ERRORS,
    "GenerationInterrupted": _ERRORS,
    "DownloadError": _ERRORS,
    "CacheCorruptError": _ERRORS,
    "DuplicateKeyError": _ERRORS,
    "AnswerError": _ERRORS,
    "ReplicaStartError": _ERRORS,
    "VLLMUnavailable": _ERRORS,
}

__all__ = [
    "AnswerError", "Benchmark", "CacheCorruptError", "CacheSchemaError", "Choices",
    "DataNotFoundError", "DownloadError", "DuplicateKeyError", "GenerationInterrupted",
    "IncompleteScoring", "InputError", "LLMConfig", "NotCached", "PluralignError",
    "ReplicaStartError", "RewardConfig", "ScoreCache", "Scores", "ScoringInterrupted",
    "TargetSet", "TooLarge", "VLLMUnavailable", "__version__", "achoose_llm", "ascore",
    "ascore_llm", "cached_scores", "choose_llm", "compare", "decisions", "get_scorer", "jury", "load_benchmark",
    "load_spica_bank", "realign", "score", "score_llm", "score_reward", "scorer_identity",
    "scorer_names", "spica_evaluate", "summarize", "targets", "write_report",
]
assert sorted([*_LAZY, "__version__"]) == __all__  # one list of the public names

if _typing.TYPE_CHECKING:
    from pluralign.engine.data.benchmark import Benchmark
    from pluralign.engine.data.targets import TargetSet
    from pluralign.engine.errors import (
        AnswerError,
        CacheCorruptError,
        CacheSchemaError,
        DataNotFoundError,
        DownloadError,
        DuplicateKeyError,
        GenerationInterrupted,
        IncompleteScoring,
        InputError,
        NotCached,
        PluralignError,
        ReplicaStartError,
        ScoringInterrupted,
        TooLarge,
        VLLMUnavailable,
    )
    from pluralign.engine.store.cache import ScoreCache
    from pluralign.jobs.api import (
        Choices,
        Scores,
        achoose_llm,
        ascore,
        ascore_llm,
        cached_scores,
        choose_llm,
        compare,
        decisions,
        get_scorer,
        jury,
        load_benchmark,
        load_spica_bank,
        realign,
        score,
        score_llm,
        score_reward,
        scorer_identity,
        scorer_names,
        spica_evaluate,
        summarize,
        targets,
        write_report,
    )
    from pluralign.jobs.configs import LLMConfig, RewardConfig


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'pluralign' has no attribute {name!r}")
    value = getattr(_importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """The public surface only (what ``from pluralign import *`` gives)."""
    return list(__all__)
