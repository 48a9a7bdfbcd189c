"""Typed settings of an LLM judge (:class:`LLMConfig`) and of a reward-model scorer
(:class:`RewardConfig`): what the Python API takes. Each field's default and docstring are the
one source of the command line's flags too (``jobs/cli/flags.py`` generates them), so a default
or a help text is written once."""

from __future__ import annotations

import dataclasses
import functools
import math
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from numbers import Integral, Real
from typing import Annotated, Any, Literal

from pluralign.engine.errors import InputError

INT_MAX = 2**63 - 1
"""Largest integer any setting takes (it must fit the int64 of Arrow tables and seeds)."""


@dataclass(frozen=True)
class Range:
    """The values a numeric setting accepts, declared on its field as
    ``Annotated[int, Range(1)]``; the config checks it when built and the command line when
    parsing its flag (``jobs/cli/flags.py``), so the API and the flags refuse the same values.
    A numeric field without one takes any finite number (floats) or 0..2**63-1 (integers)."""

    low: float | None = None
    """Smallest value taken (None: no bound below)."""
    high: float | None = None
    """Largest value taken (None: no bound above)."""
    above: bool = False
    """``low`` itself is refused (the value must be above it)."""

    def problem(self, value: float) -> str | None:
        """Why ``value`` is refused, or None when it is taken."""
        low_bad = self.low is not None and (value <= self.low if self.above else value < self.low)
        if low_bad or (self.high is not None and value > self.high):
            return f"must be {self.text()}"
        return None

    def text(self) -> str:
        """``at least 1``, ``above 0``, ``between 1 and 1,048,576``..."""
        low, high = (None if v is None else f"{v:,}" if isinstance(v, int) else f"{v:,g}"
                     for v in (self.low, self.high))
        if low is not None and high is not None and not self.above:
            return f"between {low} and {high}"
        parts = [] if low is None else [f"above {low}" if self.above else f"at least {low}"]
        parts += [] if high is None else [f"at most {high}"]
        return " and ".join(parts) or "a finite number"


MAX_TOKENS = 1 << 20
"""Most tokens one answer may ask for (no served model writes more in one answer)."""
MAX_SHOTS = 1000
"""Most in-context examples per query."""
MAX_IN_FLIGHT = 100_000
"""Most requests in flight (per client, or over a pool) or inputs per request."""
MAX_ACTORS = 10_000
"""Most API-client actors, vLLM replicas or GPUs per replica."""
MAX_RETRIES = 100
"""Most retries of one item."""
MAX_SHARDS = 100_000
"""Most Ray tasks one re-alignment is split into."""
DAY_SECONDS = 86_400.0
"""Longest timeout, grace period or poll interval taken, in seconds."""

INT_RANGE = Range(0, INT_MAX)
"""What an integer setting without its own :class:`Range` takes."""
FLOAT_RANGE = Range()
"""What a float setting without its own :class:`Range` takes (any finite number)."""


def numeric_problem(value: object, kind: type, limits: Range) -> str | None:
    """Why ``value`` cannot be a setting of type ``kind`` (int or float) within ``limits``,
    or None: not a number, NaN or infinite, a float where an integer is wanted, out of range."""
    if isinstance(value, bool) or not isinstance(value, Real):
        return f"must be {'an integer' if kind is int else 'a number'}"
    if kind is int and not isinstance(value, Integral):
        return "must be an integer"
    if isinstance(value, Integral) and kind is int:
        return limits.problem(int(value))  # exact: an integer of 400 digits is no float
    try:
        number = float(value)
    except OverflowError:  # an integer beyond any float
        return "must be a finite number"
    return "must be a finite number" if not math.isfinite(number) else limits.problem(number)


@functools.cache
def numeric_fields(cls: type) -> dict[str, tuple[type, Range]]:
    """Field name -> (int or float, its Range) for every numeric field of the dataclass
    ``cls`` (optional ones included: None stays allowed)."""
    out: dict[str, tuple[type, Range]] = {}
    hints = typing.get_type_hints(cls, include_extras=True)
    for f in dataclasses.fields(cls):
        tp, limits = hints[f.name], None
        if typing.get_origin(tp) in (typing.Union, types.UnionType):
            rest = [a for a in typing.get_args(tp) if a is not type(None)]
            tp = rest[0] if len(rest) == 1 else None
        if typing.get_origin(tp) is Annotated:
            tp, *extra = typing.get_args(tp)
            limits = next((m for m in extra if isinstance(m, Range)), None)
        if tp in (int, float):
            out[f.name] = (tp, limits or (INT_RANGE if tp is int else FLOAT_RANGE))
    return out


def check_numbers(config: object) -> None:
    """Refuse, before any work, a numeric field of the dataclass ``config`` outside what it
    takes (:class:`Range`): one :class:`InputError` naming the argument and the value."""
    cls: type = type(config)
    for name, (kind, limits) in numeric_fields(cls).items():
        value = getattr(config, name)
        if value is None:
            continue
        why = numeric_problem(value, kind, limits)
        if why is not None:
            raise InputError(f"`{name}` {why}, got {value!r}", field=name)


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
    limit: Annotated[int, Range(1)] | None = None
    """Only the first N scenarios (a limited run shares its cache entries with a full one)."""
    cache: str | None = None
    """Score cache folder (None: $PLURALIGN_CACHE or the user cache dir)."""

    def __post_init__(self) -> None:
        check_numbers(self)


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
    samples: Annotated[int, Range(1)] = 1
    """Samples per item (self-consistency; 1 = greedy; identity through the temperature)."""
    temperature: Annotated[float, Range(0)] | None = None
    """Sampling temperature (None: 0 with one sample, 0.7 with more; identity)."""
    max_tokens: Annotated[int, Range(1, MAX_TOKENS)] = 1024
    """Most tokens per answer (identity)."""
    sampling_seed: int | None = None
    """Base seed sent with requests (None: none; identity)."""
    few_shot: bool | None = None
    """In-context examples from the training split (None: the judge's default; identity)."""
    shots: Annotated[int, Range(1, MAX_SHOTS)] | None = None
    """In-context examples per query of a few-shot judge (None: the judge's default, five for
    prompt-aligned, one per label level for the regression judges' rubric; identity only when
    it differs from that default). Refused for a zero-shot run."""
    similarity: Literal["tfidf", "embedding"] = "tfidf"
    """How in-context examples are ranked (identity)."""
    prompts: str | None = None
    """Judges' templates and attribute definitions (a TOML or JSON file; identity)."""
    rpm: Annotated[float, Range(0, above=True)] | None = None
    """Requests per minute for this key (None: no limit)."""
    tpm: Annotated[float, Range(0, above=True)] | None = None
    """Tokens per minute for this key (None: no limit)."""
    concurrency: Annotated[int, Range(1, MAX_IN_FLIGHT)] = 16
    """Requests in flight per API client."""
    actors: Annotated[int, Range(1, MAX_ACTORS)] = 1
    """API-client actors or vLLM replicas."""
    placement: Literal["spread", "pack"] = "spread"
    """Where Ray puts the actors: spread over the hosts that have room (a placement group,
    one bundle per actor), or pack them onto as few as possible."""
    tensor_parallel: Annotated[int, Range(1, MAX_ACTORS)] = 1
    """GPUs per vLLM replica."""
    engine_args: tuple[str, ...] = ()
    """vLLM engine settings as KEY=VALUE texts (``structured_outputs_config=JSON`` is part of
    the identity)."""
    max_in_flight: Annotated[int, Range(1, MAX_IN_FLIGHT)] | None = None
    """Requests in flight over the pool (None: concurrency x actors)."""
    max_retries: Annotated[int, Range(0, MAX_RETRIES)] = 5
    """Times one item may be sent again after its first send (0: each item is sent once,
    never retried); the HTTP client's retries and the scheduler's re-sends share them."""
    request_timeout: Annotated[float, Range(0, DAY_SECONDS, above=True)] = 60.0
    """Seconds before one HTTP attempt counts as timed out."""
    grace_seconds: Annotated[float, Range(0, DAY_SECONDS)] = 3.0
    """On an interrupt, seconds to wait for answers in flight."""
    token_budget: Annotated[int, Range(1)] | None = None
    """Stop sending once this many tokens were used."""
    cost_budget: Annotated[float, Range(0, above=True)] | None = None
    """Stop sending once the estimated cost reaches this."""
    price_prompt: Annotated[float, Range(0)] = 0.0
    """Cost per 1,000 prompt tokens (for ``cost_budget``)."""
    price_completion: Annotated[float, Range(0)] = 0.0
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
    limit: Annotated[int, Range(1)] | None = None
    """Only the first N scenarios (a limited run shares its cache entries with a full one)."""
    lane: Literal["online", "batch", "auto"] = "online"
    """How requests go: online (one HTTP call each), batch (the provider's Batch API, about
    half the price, answers within its window) or auto (batch, then online for what a batch
    could not answer)."""
    cancel_batches: bool = False
    """Cancel this cache's batches still running at the provider (instead of reattaching)."""
    batch_poll_seconds: Annotated[float, Range(0, DAY_SECONDS, above=True)] = 30.0
    """Seconds between looks at a running batch (grows with backoff up to 10x)."""
    adaptive: Literal["auto", "on", "off"] = "auto"
    """Adaptive concurrency (AIMD on 429s): auto = where neither rpm nor tpm is given; on =
    also below a given budget; off = fixed ``concurrency``."""
    dry_run: bool = False
    """Print the plan (uncached items, tokens, cost per lane, time) and send nothing."""
    prices: str | None = None
    """Price table for plans and budgets: a JSON file of model -> prices per 1M tokens (None:
    the shipped table)."""

    def __post_init__(self) -> None:
        check_numbers(self)

    @property
    def max_sends(self) -> int:
        """Most times one item is sent in total: the first send and every retry."""
        return 1 + int(self.max_retries)


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
    batch: Annotated[int, Range(1, MAX_IN_FLIGHT)] = 32
    """Inputs per request."""
    revision: str | None = None
    """Model revision (commit or tag of the weights; identity)."""
    engine_args: tuple[str, ...] = ()
    """vLLM engine settings as KEY=VALUE texts, typed by vLLM's own parser (``--backend vllm``
    only)."""
    tensor_parallel: Annotated[int, Range(1, MAX_ACTORS)] = 1
    """GPUs the in-process vLLM model is split over (``--backend vllm`` only)."""

    def __post_init__(self) -> None:
        check_numbers(self)
