"""pluralign: an async, distributed evaluation engine for pluralistic alignment.

The public surface (docs/api.md walks through it)::

    import pluralign as pa
    bench = pa.load_benchmark("helpsteer2", "eval")
    scores = pa.score(bench, "ridge")                  # model-free, through the cache
    per_target = pa.realign(scores, ["all", "sampled"])  # a pandas DataFrame
    scores = await pa.ascore_llm(bench, "comparative-regression", pa.LLMConfig(model="m"))

Names are imported on first use, so ``import pluralign`` (and ``pluralign --help``) stays
light. The repository's folders install as ``pluralign.engine``, ``pluralign.actors``,
``pluralign.jobs`` and ``pluralign.schemas``.
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

try:
    __version__ = version("pluralign")
except PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+unknown"

_LAZY = {
    "LLMConfig": "pluralign.jobs.configs",
    "RewardConfig": "pluralign.jobs.configs",
    "Scores": "pluralign.jobs.api",
    "Choices": "pluralign.jobs.api",
    "load_benchmark": "pluralign.jobs.api",
    "scorer_names": "pluralign.jobs.api",
    "get_scorer": "pluralign.jobs.api",
    "score": "pluralign.jobs.api",
    "score_llm": "pluralign.jobs.api",
    "score_reward": "pluralign.jobs.api",
    "ascore_llm": "pluralign.jobs.api",
    "ascore": "pluralign.jobs.api",
    "choose_llm": "pluralign.jobs.api",
    "achoose_llm": "pluralign.jobs.api",
    "scorer_identity": "pluralign.jobs.api",
    "cached_scores": "pluralign.jobs.api",
    "targets": "pluralign.jobs.api",
    "realign": "pluralign.jobs.api",
    "summarize": "pluralign.jobs.api",
    "jury": "pluralign.jobs.api",
    "spica_evaluate": "pluralign.jobs.api",
    "load_spica_bank": "pluralign.jobs.api",
    "write_report": "pluralign.jobs.api",
    "Benchmark": "pluralign.engine.data.benchmark",
    "TargetSet": "pluralign.engine.data.targets",
    "PluralignError": "pluralign.engine.errors",
    "InputError": "pluralign.engine.errors",
}

__all__ = [
    "Benchmark", "Choices", "InputError", "LLMConfig", "PluralignError", "RewardConfig", "Scores",
    "TargetSet", "__version__", "achoose_llm", "ascore", "ascore_llm", "cached_scores",
    "choose_llm", "get_scorer", "jury", "load_benchmark", "load_spica_bank", "realign", "score",
    "score_llm", "score_reward", "scorer_identity", "scorer_names", "spica_evaluate",
    "summarize", "targets", "write_report",
]

if TYPE_CHECKING:
    from pluralign.engine.data.benchmark import Benchmark
    from pluralign.engine.data.targets import TargetSet
    from pluralign.engine.errors import InputError, PluralignError
    from pluralign.jobs.api import (
        Choices,
        Scores,
        achoose_llm,
        ascore,
        ascore_llm,
        cached_scores,
        choose_llm,
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


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'pluralign' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
