"""``--scorer reward``: a reward (pooling) model scores each response; see engine/judges/reward.py.

Backends: ``--backend openai`` posts to ``--base-url`` + ``--reward-route`` (vLLM's server
``/pooling`` or ``/classify``, or any endpoint answering their shape); ``--backend vllm`` runs
the model in this process (vLLM's pooling runner). ``--reward-attributes ATTR=HEAD,...`` says
which output head scores which attribute; every attribute a target uses must be mapped (a
scalar model maps head 0 to each attribute it is taken to measure).

Settings arrive as a typed :class:`~pluralign.jobs.configs.RewardConfig` (the command line builds it
with ``jobs/cli/args.py``), so ``pluralign.score(bench, "reward", config=...)`` and
``pluralign sweep --scorer reward`` run the same code and write the same cache rows.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from pluralign.actors.backends.reward_client import HTTPRewardClient, VLLMRewardModel
from pluralign.actors.backends.vllm_replica import parse_engine_arg, typed_engine_args
from pluralign.engine.data.benchmark import Benchmark
from pluralign.engine.errors import InputError, ScoringInterrupted
from pluralign.engine.judges.reward import (
    RewardScorer,
    RewardSettings,
    check_reward_heads,
    parse_reward_attributes,
    score_rewards,
)
from pluralign.engine.run.scheduler import STDERR
from pluralign.engine.store.cache import ScoreCache
from pluralign.jobs.configs import RewardConfig
from pluralign.jobs.interrupts import Interrupts


@dataclass(frozen=True)
class RewardReport:
    """What one reward scoring run leaves: the cached scores and how many inputs were sent."""

    predictions: np.ndarray
    """float64 (responses, attributes) read back from the cache; NaN where a score failed."""
    identity: str
    """The scorer's cache identity."""
    counts: dict[str, int]
    """``sent`` (inputs posted or run), ``scored`` and ``failed`` (cache rows written)."""
    settings: dict[str, Any]
    """The scorer's decoded settings for the run manifest."""


def reward_heads(config: RewardConfig, bench: Benchmark) -> dict[str, int]:
    """The config's head per attribute, checked against the benchmark: every attribute must be
    mapped (re-alignment needs a score for each)."""
    spec = config.attributes
    if not spec:
        raise InputError("the reward scorer needs its head per attribute",
                         field="reward-attributes",
                         hint="--reward-attributes ATTR=HEAD,... or RewardConfig(attributes=...)")
    if isinstance(spec, Mapping):
        heads = check_reward_heads(spec, bench.attributes)
    else:
        heads = parse_reward_attributes(str(spec), bench.attributes)
    unmapped = [a for a in bench.attributes if a not in heads]
    if unmapped:
        raise InputError(f"maps no head to {unmapped}: re-alignment needs a score for every "
                         "attribute (reuse a head: a=0,b=0)", field="reward-attributes")
    return heads


def reward_scorer(config: RewardConfig, bench: Benchmark) -> RewardScorer:
    """The scorer the config describes (its identity is the cache identity)."""
    if not config.model:
        raise InputError("the reward scorer needs a model", field="model",
                         hint="--model NAME or RewardConfig(model=...)")
    if config.backend not in ("openai", "vllm"):
        raise InputError(f"unknown backend {config.backend!r}", field="backend",
                         hint="openai (an HTTP endpoint) or vllm (in this process)")
    heads = reward_heads(config, bench)
    backend = "vllm" if config.backend == "vllm" else f"http:{config.route}"
    return RewardScorer(bench, RewardSettings(
        model=config.model, heads=heads, backend=backend, revision=config.revision,
        squash=bool(config.squash)))


def vllm_reward_kwargs(config: RewardConfig, vllm: Any) -> dict[str, Any]:
    """Engine keywords of the in-process pooling model: ``engine_args`` typed by vLLM's own
    parser (``vllm`` is the imported module) and the tensor-parallel size."""

    try:
        pairs = [parse_engine_arg(text) for text in config.engine_args]
        kwargs = typed_engine_args(vllm, pairs)
    except ValueError as e:
        raise InputError(str(e), field="engine_args") from None
    if int(config.tensor_parallel) < 1:
        raise InputError("--tensor-parallel must be at least 1", field="tensor-parallel")
    kwargs.setdefault("tensor_parallel_size", int(config.tensor_parallel))
    return kwargs


def _backend(config: RewardConfig) -> Any:
    if config.backend == "vllm":
        import vllm


        return VLLMRewardModel(config.model, revision=config.revision,
                               **vllm_reward_kwargs(config, vllm))

    env = config.api_key_env
    key_env = None if env in (None, "", "none") else env
    return HTTPRewardClient(config.base_url or "https://api.openai.com/v1", config.model,
                            route=config.route, api_key_env=key_env)


async def _score(scorer: RewardScorer, cache: ScoreCache, backend: Any,
                 batch: int) -> dict[str, int]:
    """:func:`score_rewards`, where SIGINT/SIGTERM (inside a command) stop sending: the batch
    in flight is written, then :class:`ScoringInterrupted` (exit 130)."""
    stops: list[str] = []
    interrupts = Interrupts(STDERR)
    with interrupts.installed():
        interrupts.attach(stops.append)
        counts = await score_rewards(scorer, cache, backend, batch=batch,
                                     stopped=lambda: bool(stops))
    if stops:
        raise ScoringInterrupted()
    return counts


def run_reward_scoring(config: RewardConfig, bench: Benchmark,
                       cache: ScoreCache) -> RewardReport:
    """Score ``bench`` with the reward model through ``cache``: only pairs the cache lacks are
    sent (a rerun with the same settings sends nothing), failures are written as failed rows
    and retried on the next run. The predictions are read back from the cache."""
    if int(config.batch) < 1:
        raise InputError("--reward-batch must be at least 1", field="reward-batch")
    scorer = reward_scorer(config, bench)
    todo = scorer.pending(cache.completed_keys(bench.identity, scorer.identity))
    counts = {"sent": 0, "scored": 0, "failed": 0}
    if todo:
        backend = _backend(config)
        try:
            counts = asyncio.run(_score(scorer, cache, backend, int(config.batch)))
        finally:
            close = getattr(backend, "close", None)  # the in-process vLLM model holds an engine
            if callable(close):
                close()
    preds = cache.predictions(bench, scorer.identity)
    return RewardReport(preds, scorer.identity, counts, scorer.describe())
