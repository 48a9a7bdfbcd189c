"""Typed settings of an LLM judge (:class:`LLMConfig`) and of a reward-model scorer
(:class:`RewardConfig`): what the Python API takes. Each field's default and docstring are the
one source of the command line's flags too (``jobs/cli/flags.py`` generates them), so a default
or a help text is written once."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal


@dataclass(frozen=True)
class SplitConfig:
    """Which benchmark split a job evaluates, which one scorers learn from, and where the data
    and the score cache live."""

    benchmark: str = "helpsteer2"
    """helpsteer2, mic, synthetic[:S=..,R=..,A=..,L=..,seed=..] or a JSON file."""
    data: str | None = None
    """Data folder (None: $PLURALIGN_DATA, then the user data dir)."""
    split: str = "eval"
    """Split to evaluate."""
    train_split: str = "train"
    """Split scorers learn or draw examples from (evaluation splits are never for tuning)."""
    limit: int | None = None
    """Only the first N scenarios (a limited run shares its cache entries with a full one)."""
    cache: str | None = None
    """Score cache folder (None: $PLURALIGN_CACHE or the user cache dir)."""


@dataclass(frozen=True)
class LLMConfig:
    """How to reach and sample an LLM judge, and how hard to push the endpoint. Every field not
    set keeps the command line's default (``pluralign sweep --help``), except ``use_ray``: the
    API runs clients in this process unless asked. The fields marked *identity* change the
    judge's cache identity (another value scores again); the others only change how answers
    are fetched."""

    model: str
    """Model name the endpoint serves (identity)."""
    backend: Literal["openai", "vllm"] = "openai"
    """An OpenAI-compatible HTTP endpoint, or vLLM replicas on GPUs (identity)."""
    base_url: str | None = None
    """Endpoint root ending in /v1 (None: https://api.openai.com/v1)."""
    api_key_env: str | None = "OPENAI_API_KEY"
    """Environment variable holding the API key ('none' or None: no key). Keys are never
    passed in."""
    revision: str | None = None
    """Model revision (commit or tag of the weights; identity)."""
    structured_output: str = "response_format"
    """How an HTTP request asks for the answer schema: response_format, vllm, vllm_guided or
    none (identity)."""
    extra_body: str | Mapping[str, Any] | None = None
    """Extra request-body fields sent with every request, a JSON object or its text
    (identity)."""
    samples: int = 1
    """Samples per item (self-consistency; 1 = greedy; identity through the temperature)."""
    temperature: float | None = None
    """Sampling temperature (None: 0 with one sample, 0.7 with more; identity)."""
    max_tokens: int = 1024
    """Most tokens per answer (identity)."""
    sampling_seed: int | None = None
    """Base seed sent with requests (None: none; identity)."""
    few_shot: bool | None = None
    """In-context examples from the training split (None: the judge's default; identity)."""
    shots: int | None = None
    """In-context examples per query of a few-shot judge (None: the judge's default, five for
    prompt-aligned, one per label level for the regression judges' rubric; identity only when
    it differs from that default). Refused for a zero-shot run."""
    similarity: Literal["tfidf", "embedding"] = "tfidf"
    """How in-context examples are ranked (identity)."""
    prompts: str | None = None
    """Judges' templates and attribute definitions (a TOML or JSON file; identity)."""
    rpm: float | None = None
    """Requests per minute for this key."""
    tpm: float | None = None
    """Tokens per minute for this key."""
    concurrency: int = 16
    """Requests in flight per API client."""
    actors: int = 1
    """API-client actors or vLLM replicas."""
    placement: Literal["spread", "pack"] = "spread"
    """Where Ray puts the actors: spread over the hosts that have room (a placement group,
    one bundle per actor), or pack them onto as few as possible."""
    tensor_parallel: int = 1
    """GPUs per vLLM replica."""
    engine_args: tuple[str, ...] = ()
    """vLLM engine settings as KEY=VALUE texts (``structured_outputs_config=JSON`` is part of
    the identity)."""
    max_in_flight: int | None = None
    """Requests in flight over the pool (None: concurrency x actors)."""
    max_retries: int = 6
    """Most times one item is sent in total, every retry included."""
    request_timeout: float = 60.0
    """Seconds before one HTTP attempt counts as timed out."""
    grace_seconds: float = 3.0
    """On an interrupt, seconds to wait for answers in flight."""
    token_budget: int | None = None
    """Stop sending once this many tokens were used."""
    cost_budget: float | None = None
    """Stop sending once the estimated cost reaches this."""
    price_prompt: float = 0.0
    """Cost per 1,000 prompt tokens (for ``cost_budget``)."""
    price_completion: float = 0.0
    """Cost per 1,000 completion tokens (for ``cost_budget``)."""
    use_ray: bool = False
    """Run API clients (or vLLM replicas) as Ray actors; False: in this process, one replica
    for vLLM (the command line's ``--no-ray``)."""
    ray_dashboard: bool = False
    """Start Ray's dashboard (on 127.0.0.1) with a local runtime."""
    redis_url: str | None = None
    """Share rate limits across a cluster and publish job progress through this Redis."""
    job_id: str | None = None
    """Job name for progress in Redis (None: the judge's name and a random suffix)."""
    limit: int | None = None
    """Only the first N scenarios (a limited run shares its cache entries with a full one)."""
    lane: Literal["online", "batch", "auto"] = "online"
    """How requests go: online (one HTTP call each), batch (the provider's Batch API, about
    half the price, answers within its window) or auto (batch, then online for what a batch
    could not answer)."""
    cancel_batches: bool = False
    """Cancel this cache's batches still running at the provider (instead of reattaching)."""
    batch_poll_seconds: float = 30.0
    """Seconds between looks at a running batch (grows with backoff up to 10x)."""
    adaptive: Literal["auto", "on", "off"] = "auto"
    """Adaptive concurrency (AIMD on 429s): auto = where neither rpm nor tpm is given; on =
    also below a given budget; off = fixed ``concurrency``."""
    dry_run: bool = False
    """Print the plan (uncached items, tokens, cost per lane, time) and send nothing."""
    prices: str | None = None
    """Price table for plans and budgets: a JSON file of model -> prices per 1M tokens (None:
    the shipped table)."""


@dataclass(frozen=True)
class RewardConfig:
    """How to reach a reward (pooling) model and map its output heads to attributes
    (``--scorer reward``; engine/judges/reward.py). Unset fields keep the command line's
    defaults. The fields marked *identity* change the scorer's cache identity; the others only
    change how scores are fetched."""

    model: str
    """Model name the endpoint serves, or the weights vLLM loads (identity)."""
    attributes: str | Mapping[str, int] | None = None
    """Output head per attribute, ``{"helpfulness": 0, ...}`` or its ``helpfulness=0,...``
    text; required, and every attribute of the benchmark must be mapped (identity)."""
    backend: Literal["openai", "vllm"] = "openai"
    """An HTTP endpoint answering vLLM's pooling shape, or vLLM's pooling runner in this
    process (identity, with the route for HTTP)."""
    base_url: str | None = None
    """Endpoint root ending in /v1 (None: https://api.openai.com/v1)."""
    api_key_env: str | None = "OPENAI_API_KEY"
    """Environment variable holding the API key ('none' or None: no key). Keys are never
    passed in."""
    route: str = "/pooling"
    """HTTP route: ``/pooling`` or ``/classify`` from the server root (as vLLM serves them),
    or a path relative to ``base_url`` (identity)."""
    squash: bool = False
    """Map head values through the logistic function onto (0, 1) (identity)."""
    batch: int = 32
    """Inputs per request."""
    revision: str | None = None
    """Model revision (commit or tag of the weights; identity)."""
    engine_args: tuple[str, ...] = ()
    """vLLM engine settings as KEY=VALUE texts, typed by vLLM's own parser (``--backend vllm``
    only)."""
    tensor_parallel: int = 1
    """GPUs the in-process vLLM model is split over (``--backend vllm`` only)."""
