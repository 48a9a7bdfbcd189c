"""LLM scoring for ``pluralign sweep``: build the judge, the backend pool and the scheduler from
command-line arguments, send what the cache lacks, and say how to read the answers back.

Regression judges fill the score cache (then every target is re-aligned from it); choice judges
(prompt-aligned, unaligned) fill the choice cache beside it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from pluralign.engine.benchmark import Benchmark
from pluralign.engine.errors import InputError
from pluralign.engine.judges import CHOICE_JUDGES, JUDGE_NAMES, Judge, JudgeSettings, make_judge
from pluralign.engine.judges.choices import ChoiceCache
from pluralign.engine.judges.unaligned import NO_TARGET
from pluralign.engine.targets import TargetSet
from pluralign.jobs.scheduler import Dispatcher, SchedulerConfig, ScheduleReport, run_schedule

DEFAULT_SAMPLING_TEMPERATURE = 0.7
"""Temperature used with --samples > 1 when --temperature is not given (seed 003 §4.2)."""


@dataclass
class ScoringReport:
    """What ``run_llm_scoring`` did and how to read the results."""

    scorer: str
    """Scorer name (``comparative-regression`` ...)."""
    identity: str
    """Scorer identity: pass it to ``cache.predictions`` (scores) or :func:`llm_choices`."""
    kind: str
    """``scores`` or ``choice``."""
    bench: Benchmark
    """The benchmark actually scored (after --limit)."""
    samples: int
    """Samples per item (self-consistency); read predictions with this many."""
    schedule: ScheduleReport
    """Counts: items, cached, completed, failed, requests, tokens, budget stop."""
    spread: float | None = None
    """Mean standard deviation of a score over samples (None with one sample or choices)."""
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "scorer": self.scorer, "identity": self.identity, "kind": self.kind,
            "benchmark": self.bench.identity, "samples": self.samples,
            "spread": self.spread, **self.schedule.as_dict(), **self.extra,
        }


def _has_option(parser: argparse.ArgumentParser, flag: str) -> bool:
    return flag in parser._option_string_actions


def add_backend_args(parser: argparse.ArgumentParser) -> None:
    """Options of LLM scoring: backend, model, limits, sampling, few-shot, budget, Ray."""
    g = parser.add_argument_group("LLM scoring (comparative-regression, regression, "
                                  "prompt-aligned, unaligned)")
    g.add_argument("--backend", choices=("openai", "vllm"), default="openai",
                   help="OpenAI-compatible HTTP endpoint, or vLLM replicas on GPUs")
    g.add_argument("--base-url", default=None,
                   help="endpoint root ending in /v1 (default: https://api.openai.com/v1)")
    g.add_argument("--model", default=None, help="model name (required for LLM scorers)")
    g.add_argument("--api-key-env", default="OPENAI_API_KEY",
                   help="environment variable holding the API key ('none': no key)")
    g.add_argument("--rpm", type=float, default=None, help="requests per minute for this key")
    g.add_argument("--tpm", type=float, default=None, help="tokens per minute for this key")
    g.add_argument("--concurrency", type=int, default=16,
                   help="requests in flight per API client (default 16)")
    g.add_argument("--actors", type=int, default=1,
                   help="API-client actors or vLLM replicas (default 1)")
    g.add_argument("--tensor-parallel", type=int, default=1, help="GPUs per vLLM replica")
    g.add_argument("--samples", type=int, default=1,
                   help="samples per item (self-consistency; default 1 = greedy)")
    g.add_argument("--temperature", type=float, default=None,
                   help=f"sampling temperature (default 0 with one sample, "
                        f"{DEFAULT_SAMPLING_TEMPERATURE} with more)")
    g.add_argument("--max-tokens", type=int, default=1024, help="max tokens per answer")
    g.add_argument("--sampling-seed", type=int, default=None,
                   help="base seed sent with requests (default: none)")
    shot = g.add_mutually_exclusive_group()
    shot.add_argument("--few-shot", dest="few_shot", action="store_true", default=True,
                      help="in-context examples from the training split (default)")
    shot.add_argument("--zero-shot", dest="few_shot", action="store_false",
                      help="no in-context examples")
    g.add_argument("--similarity", choices=("tfidf", "embedding"), default="tfidf",
                   help="how in-context examples are ranked (default tfidf)")
    g.add_argument("--redis-url", default=None,
                   help="share rate limits across the cluster and publish job progress")
    g.add_argument("--job-id", default=None, help="job name for progress in Redis")
    g.add_argument("--token-budget", type=int, default=None,
                   help="stop sending once this many tokens were used")
    g.add_argument("--cost-budget", type=float, default=None,
                   help="stop sending once the estimated cost reaches this")
    g.add_argument("--price-prompt", type=float, default=0.0,
                   help="cost per 1,000 prompt tokens (for --cost-budget)")
    g.add_argument("--price-completion", type=float, default=0.0,
                   help="cost per 1,000 completion tokens (for --cost-budget)")
    g.add_argument("--request-timeout", type=float, default=60.0,
                   help="seconds before one HTTP attempt counts as timed out (default 60)")
    g.add_argument("--max-retries", type=int, default=6,
                   help="HTTP retries per attempt on 429, 5xx and timeouts (default 6)")
    g.add_argument("--max-in-flight", type=int, default=None,
                   help="requests in flight over the pool (default concurrency x actors)")
    g.add_argument("--no-ray", action="store_true",
                   help="run API clients in this process instead of Ray actors")
    if not _has_option(parser, "--limit"):
        g.add_argument("--limit", type=int, default=None, help="only the first N scenarios")


# ---------------------------------------------------------------- settings


def samples_of(args: argparse.Namespace) -> int:
    raw = getattr(args, "samples", None)
    n = 1 if raw is None else int(raw)
    if n < 1:
        raise InputError("--samples must be at least 1", field="samples")
    return n


def settings_from_args(args: argparse.Namespace) -> JudgeSettings:
    """Judge settings; the temperature defaults to greedy for one sample."""
    model = getattr(args, "model", None)
    if not model:
        raise InputError("LLM scorers need --model", field="model",
                         hint="e.g. --model meta-llama/Llama-3.2-3B-Instruct")
    temperature = getattr(args, "temperature", None)
    if temperature is None:
        temperature = 0.0 if samples_of(args) == 1 else DEFAULT_SAMPLING_TEMPERATURE
    if temperature < 0:
        raise InputError("--temperature must be >= 0", field="temperature")
    return JudgeSettings(
        model=str(model),
        temperature=float(temperature),
        max_tokens=int(getattr(args, "max_tokens", 1024)),
        seed=getattr(args, "sampling_seed", None),
        few_shot=bool(getattr(args, "few_shot", True)),
        similarity=str(getattr(args, "similarity", "tfidf")),
    )


def _limited(bench: Benchmark, args: argparse.Namespace) -> Benchmark:
    limit = getattr(args, "limit", None)
    if limit is None or limit >= bench.n_scenarios:
        return bench
    if limit < 1:
        raise InputError("--limit must be at least 1", field="limit")
    return bench.subset(limit)


def build_judge(bench: Benchmark, train: Benchmark | None, scorer_name: str,
                args: argparse.Namespace) -> Judge:
    if scorer_name not in JUDGE_NAMES:
        raise InputError(f"{scorer_name!r} is not an LLM scorer", field="scorer",
                         hint=f"LLM scorers: {', '.join(JUDGE_NAMES)}")
    settings = settings_from_args(args)
    if scorer_name in CHOICE_JUDGES and settings.few_shot:
        settings = JudgeSettings(**{**settings.as_dict(), "few_shot": False})
    return make_judge(scorer_name, bench, settings, train=train)


def llm_scorer_identity(bench: Benchmark, train: Benchmark | None, scorer_name: str,
                        args: argparse.Namespace) -> str:
    """The identity ``run_llm_scoring`` writes under, without sending anything."""
    return build_judge(_limited(bench, args), train, scorer_name, args).identity


# ---------------------------------------------------------------- backends


def api_key_env(args: argparse.Namespace) -> str | None:
    env = getattr(args, "api_key_env", "OPENAI_API_KEY")
    return None if env in (None, "", "none") else str(env)


def _api_config(args: argparse.Namespace) -> Any:
    from pluralign.actors.api_client import APIClientConfig

    kwargs: dict[str, Any] = {
        "model": settings_from_args(args).model,
        "api_key_env": api_key_env(args),
        "max_concurrency": int(args.concurrency),
        "rpm": args.rpm, "tpm": args.tpm, "redis_url": args.redis_url,
        "timeout": float(getattr(args, "request_timeout", 60.0)),
        "max_retries": int(getattr(args, "max_retries", 6)),
    }
    if args.base_url:
        kwargs["base_url"] = args.base_url
    return APIClientConfig(**kwargs)


def make_pool(args: argparse.Namespace) -> Any:
    """A BackendPool: in-process API clients (--no-ray), API-client actors, or vLLM replicas."""
    from pluralign.actors.pool import BackendPool, api_client_actors, vllm_replica_actors

    n = int(args.actors)
    if n < 1:
        raise InputError("--actors must be at least 1", field="actors")
    if args.backend == "vllm":
        from pluralign.actors.vllm_replica import VLLMConfig

        _ensure_ray()
        config = VLLMConfig(model=settings_from_args(args).model,
                            tensor_parallel_size=int(args.tensor_parallel))
        return vllm_replica_actors(config, n, **_placement("vllm_replica"))
    config = _api_config(args)
    if args.no_ray:
        from pluralign.actors.api_client import OpenAIBackend

        return BackendPool.of_backends([OpenAIBackend(config) for _ in range(n)])
    _ensure_ray()
    return api_client_actors(config, n, **_placement("api_client"))


def _placement(resource: str) -> dict[str, Any]:
    """Pin actors to the node type that advertises ``resource`` (see ray_cluster.yaml), when
    the cluster has one; a plain local cluster has none and places them anywhere."""
    import ray

    if ray.cluster_resources().get(resource, 0) > 0:  # type: ignore[no-untyped-call]
        return {"resources": {resource: 1}}
    return {}


def _ensure_ray() -> None:
    import ray

    if not ray.is_initialized():
        # Inside `ray job submit` RAY_ADDRESS names the cluster; otherwise start a local one.
        ray.init(address=os.environ.get("RAY_ADDRESS") or None, log_to_driver=False)


def _status(args: argparse.Namespace, scorer: str) -> Any:
    url = getattr(args, "redis_url", None)
    if not url:
        return None
    from pluralign.actors.ratelimit import RedisStatus

    job = getattr(args, "job_id", None) or f"{scorer}-{uuid.uuid4().hex[:8]}"
    return RedisStatus(url, job)


def scheduler_config(args: argparse.Namespace) -> SchedulerConfig:
    env = api_key_env(args)
    secret = os.environ.get(env) if env else None
    in_flight = getattr(args, "max_in_flight", None) or int(args.concurrency) * int(args.actors)
    return SchedulerConfig(
        max_in_flight=max(1, int(in_flight)),
        batch_size=max(1, min(4, int(args.concurrency))),
        token_budget=getattr(args, "token_budget", None),
        cost_budget=getattr(args, "cost_budget", None),
        price_prompt_per_1k=float(getattr(args, "price_prompt", 0.0) or 0.0),
        price_completion_per_1k=float(getattr(args, "price_completion", 0.0) or 0.0),
        secrets=(secret,) if secret else (),
    )


# ---------------------------------------------------------------- running


def _store(judge: Judge, cache: Any) -> Any:
    return ChoiceCache(cache_root(cache)) if judge.kind == "choice" else cache


def cache_root(cache: Any) -> Path:
    """The directory of a score cache (the choice cache lives inside it)."""
    root = getattr(cache, "root", None)
    if root is None:
        raise TypeError("the score cache has no .root directory")
    return Path(root)


def target_keys(targets: TargetSet | None, scorer_name: str) -> list[str] | None:
    """Canonical target JSON per target (prompt-aligned needs them; others ignore them)."""
    if scorer_name == "prompt-aligned":
        if targets is None or len(targets) == 0:
            raise InputError("prompt-aligned scoring needs targets", field="targets",
                             hint="it makes one call per (scenario, target)")
        return sorted(set(targets.json_all()))
    return None


def run_llm_scoring(
    bench: Benchmark,
    train: Benchmark | None,
    scorer_name: str,
    args: argparse.Namespace,
    cache: Any,
    *,
    targets: TargetSet | None = None,
    backend: Dispatcher | None = None,
    log: TextIO | None = sys.stderr,
) -> ScoringReport:
    """Score ``bench`` with an LLM judge, sending only what ``cache`` lacks.

    ``backend`` overrides the pool built from ``args`` (tests). Prompt-aligned needs
    ``targets``. Afterwards read scores with ``cache.predictions(report.bench, report.identity,
    report.samples)`` or choices with :func:`llm_choices`.
    """
    bench = _limited(bench, args)
    judge = build_judge(bench, train, scorer_name, args)
    samples = samples_of(args)
    items = judge.items(range(bench.n_scenarios), samples, target_keys(targets, scorer_name))
    report = asyncio.run(_schedule(judge, bench, items, args, _store(judge, cache), backend,
                                   log))
    spread = score_spread(cache, bench, judge.identity, samples) if judge.kind == "scores" else None
    return ScoringReport(scorer_name, judge.identity, judge.kind, bench, samples, report, spread)


async def _schedule(judge: Judge, bench: Benchmark, items: Sequence[Any],
                    args: argparse.Namespace, store: Any, backend: Dispatcher | None,
                    log: TextIO | None) -> ScheduleReport:
    if backend is None and not _anything_to_send(judge, bench, items, store):
        backend = _Idle()  # a finished sweep starts no actors (and no Ray)
    owned = backend is None
    pool: Any = make_pool(args) if backend is None else backend
    status = _status(args, judge.name)
    try:
        if owned:
            await pool.start()
        return await run_schedule(judge, items, pool, store, scheduler_config(args),
                                  benchmark=bench.identity, status=status, log=log)
    finally:
        if owned:
            await pool.close()
        if status is not None:
            await status.close()


def _anything_to_send(judge: Judge, bench: Benchmark, items: Sequence[Any], store: Any) -> bool:
    from pluralign.jobs.scheduler import plan

    return bool(plan(items, store.completed_keys(bench.identity, judge.identity)).pending)


class _Idle:
    """Stands in for the pool when every item is cached: never asked to generate."""

    async def generate(self, requests: Sequence[Any]) -> list[Any]:
        raise RuntimeError("nothing should be sent: every item is cached")


# ---------------------------------------------------------------- reading back


def score_spread(cache: Any, bench: Benchmark, identity: str, samples: int) -> float | None:
    """Mean over (response, attribute) of the standard deviation of scores across samples."""
    if samples < 2:
        return None
    from pluralign.engine.judges.consistency import mean_and_spread

    per_sample = np.stack([
        np.asarray(cache.predictions(bench, identity, [i]), dtype=np.float64)
        for i in range(samples)
    ])
    _, spread = mean_and_spread(per_sample)
    finite = spread[np.isfinite(spread)]
    return float(finite.mean()) if finite.size else None


def llm_choices(
    bench: Benchmark,
    scorer_name: str,
    identity: str,
    targets: TargetSet,
    samples: int,
    cache: Any,
) -> np.ndarray:
    """int64 (S, T): chosen response per scenario and target (majority over samples); -1 where
    no answer is cached. The unaligned judge's one choice per scenario serves every target."""
    store = ChoiceCache(cache_root(cache))
    if scorer_name == "unaligned":
        one = store.choices(bench, identity, [NO_TARGET], samples)
        return np.repeat(one, len(targets), axis=1)
    return store.choices(bench, identity, targets.json_all(), samples)
