"""``--scorer reward``: a reward (pooling) model scores each response; see engine/judges/reward.py.

Backends: ``--backend openai`` posts to ``--base-url`` + ``--reward-route`` (vLLM's server
``/pooling`` or ``/classify``, or any endpoint answering their shape); ``--backend vllm`` runs
the model in this process (vLLM's pooling runner). ``--reward-attributes ATTR=HEAD,...`` says
which output head scores which attribute; every attribute a target uses must be mapped (a
scalar model maps head 0 to each attribute it is taken to measure).
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

import numpy as np

from pluralign.engine.benchmark import Benchmark
from pluralign.engine.cache import ScoreCache
from pluralign.engine.errors import PluralignError
from pluralign.engine.judges.reward import (
    RewardScorer,
    RewardSettings,
    parse_reward_attributes,
    score_rewards,
)


def add_reward_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("reward-model scorer (--scorer reward)")
    g.add_argument("--reward-attributes", default=None, metavar="ATTR=HEAD,...",
                   help="output head per attribute, e.g. helpfulness=0,verbosity=1")
    g.add_argument("--reward-route", default="/pooling",
                   help="HTTP route: /pooling (default) or /classify from the server root (as "
                        "vLLM serves them), or a path relative to --base-url")
    g.add_argument("--reward-squash", action="store_true",
                   help="map head values through the logistic function onto (0, 1)")
    g.add_argument("--reward-batch", type=int, default=32, help="inputs per request (32)")


def reward_scorer(args: argparse.Namespace, bench: Benchmark) -> RewardScorer:
    if not getattr(args, "model", None):
        raise PluralignError("--scorer reward needs --model")
    if not args.reward_attributes:
        raise PluralignError("--scorer reward needs --reward-attributes ATTR=HEAD,...")
    heads = parse_reward_attributes(args.reward_attributes, bench.attributes)
    unmapped = [a for a in bench.attributes if a not in heads]
    if unmapped:
        raise PluralignError(f"--reward-attributes maps no head to {unmapped}: re-alignment "
                             "needs a score for every attribute (reuse a head: a=0,b=0)")
    backend = ("vllm" if args.backend == "vllm"
               else f"http:{args.reward_route}")
    return RewardScorer(bench, RewardSettings(
        model=args.model, heads=heads, backend=backend, revision=args.revision,
        squash=args.reward_squash))


def _backend(args: argparse.Namespace) -> Any:
    if args.backend == "vllm":
        from pluralign.actors.reward_client import VLLMRewardModel

        return VLLMRewardModel(args.model, revision=args.revision)
    from pluralign.actors.reward_client import HTTPRewardClient

    key_env = None if args.api_key_env == "none" else args.api_key_env
    return HTTPRewardClient(args.base_url or "https://api.openai.com/v1", args.model,
                            route=args.reward_route, api_key_env=key_env)


def run_reward_scoring(args: argparse.Namespace, bench: Benchmark,
                       cache: ScoreCache) -> tuple[np.ndarray, str, dict[str, Any]]:
    """(predictions, identity, counts); only pairs not in the cache are sent."""
    scorer = reward_scorer(args, bench)
    todo = scorer.pending(cache.completed_keys(bench.identity, scorer.identity))
    counts = {"sent": 0, "scored": 0, "failed": 0}
    if todo:
        counts = asyncio.run(score_rewards(scorer, cache, _backend(args),
                                           batch=args.reward_batch))
    preds = cache.predictions(bench, scorer.identity)
    return preds, scorer.identity, {**counts, "describe": scorer.describe()}
