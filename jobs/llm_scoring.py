"""LLM scoring for ``pluralign sweep`` and the Python API: build the judge, the backend pool
and the scheduler from an :class:`LLMConfig`, send what the cache lacks, and say how to read the
answers back. The command line turns its LLM flags into an LLMConfig (``jobs/cli/args.py``) and
calls the same functions.

Regression judges fill the score cache (then every target is re-aligned from it); choice judges
(prompt-aligned, unaligned) fill the choice cache beside it.
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from pluralign.actors.backends.api_client import (
    APIClientConfig,
    check_base_url,
    check_extra_body,
)
from pluralign.actors.backends.batch_journal import JournalClaims
from pluralign.actors.backends.vllm_replica import (
    VLLMConfig,
    default_structured_outputs,
    parse_engine_arg,
    structured_outputs_mode,
)
from pluralign.actors.pool import (
    BackendPool,
    api_client_actors,
    describe_hosts,
    vllm_local,
    vllm_replica_actors,
)
from pluralign.actors.ratelimit import RedisStatus, adaptive_status
from pluralign.engine.align.consistency import mean_and_spread
from pluralign.engine.data.benchmark import Benchmark
from pluralign.engine.data.targets import TargetSet
from pluralign.engine.errors import IncompleteScoring, InputError, ScoringInterrupted
from pluralign.engine.judges import (
    CHOICE_JUDGES,
    JUDGE_NAMES,
    Judge,
    JudgeSettings,
    WorkItem,
    make_judge,
)
from pluralign.engine.judges.prompts import load_prompts
from pluralign.engine.judges.unaligned import NO_TARGET
from pluralign.engine.run.backend import backend_class, registered_backends
from pluralign.engine.run.scheduler import (
    STDERR,
    Dispatcher,
    Idle,
    SchedulerConfig,
    ScheduleReport,
    plan,
    run_schedule,
)
from pluralign.engine.scorers import scorer_info
from pluralign.engine.store.cache import ScoreCache, register_secret
from pluralign.engine.store.choices import ChoiceCache
from pluralign.engine.store.redaction import redact_json
from pluralign.jobs.batch_lane import run_lanes
from pluralign.jobs.configs import LLMConfig
from pluralign.jobs.interrupts import Interrupts
from pluralign.jobs.plan import DryRunDone, plan_items
from pluralign.jobs.ray_runtime import ensure_ray, placement
from pluralign.jobs.runtime import note_manifest, write_json_atomic

DEFAULT_BASE_URL = "https://api.openai.com/v1"
"""The endpoint of ``backend=openai`` when ``base_url`` is not given."""
DEFAULT_SAMPLING_TEMPERATURE = 0.7
"""Temperature used with --samples > 1 when --temperature is not given (steerable-pluralism
paper §4.2)."""


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
    settings: dict[str, Any] = field(default_factory=dict)
    """The judge's decoded settings (identity, templates, definitions) for the run manifest."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "scorer": self.scorer, "identity": self.identity, "kind": self.kind,
            "benchmark": self.bench.identity, "samples": self.samples,
            "spread": self.spread, **self.schedule.as_dict(), **self.extra,
        }


def samples_of(config: LLMConfig) -> int:
    n = 1 if config.samples is None else int(config.samples)
    if n < 1:
        raise InputError("`samples` must be at least 1", field="samples")
    return n




def few_shot_for(scorer_name: str, asked: bool | None) -> bool:
    """Whether ``scorer_name`` gets in-context examples: ``asked``
    (:attr:`LLMConfig.few_shot`) when given, else the judge's default as registered (the
    steerable-pluralism paper: the proposed comparative regression is few-shot, Table 1's
    per-response regression ablation and the prompt-aligned baseline zero-shot; Table 2's
    few-shot prompt-aligned ablation is ``few_shot=True``). An explicit few-shot for a judge
    without examples is refused rather than ignored."""
    if asked is None:
        return scorer_info(scorer_name).needs_train
    if asked and scorer_name in CHOICE_JUDGES and scorer_name != "prompt-aligned":
        raise InputError(f"{scorer_name} has no in-context examples",
                         field="few_shot", hint="drop `few_shot=True` (it runs zero-shot)")
    return bool(asked)


def judge_settings(config: LLMConfig) -> JudgeSettings:
    """Judge settings (the part of the cache identity the config decides); the temperature
    defaults to greedy for one sample."""
    if not config.model:
        raise InputError("LLM scorers need `model`", field="model",
                         hint="e.g. `model=meta-llama/Llama-3.2-3B-Instruct`")
    temperature = config.temperature
    if temperature is None:
        temperature = 0.0 if samples_of(config) == 1 else DEFAULT_SAMPLING_TEMPERATURE
    if temperature < 0:
        raise InputError("`temperature` must be >= 0", field="temperature")
    check_endpoint(config)
    return JudgeSettings(
        model=str(config.model),
        temperature=float(temperature),
        max_tokens=int(config.max_tokens),
        seed=config.sampling_seed,
        few_shot=bool(config.few_shot),
        similarity=str(config.similarity),
        decoding=_decoding(config),
        revision=config.revision,
        backend=str(config.backend or "openai"),
        structured_output=str(config.structured_output or "response_format"),
        extra_body=canonical_extra_body(config.extra_body, redacted=True),
    )


def check_endpoint(config: LLMConfig) -> None:
    """Refuse, before any work, an HTTP endpoint that is not an http(s) URL with a host, a URL
    password beside a key, and ``extra_body`` fields that would override the work's identity
    (each in one line that shows no credential)."""
    if config.backend == "openai":
        check_base_url(config.base_url or DEFAULT_BASE_URL, api_key_env(config))
    canonical_extra_body(config.extra_body)




def canonical_extra_body(text: str | Mapping[str, Any] | None, *, redacted: bool = False) -> str:
    """``extra_body`` as canonical JSON (an object), or a clear error; fields that would
    override the work's identity are refused. ``redacted``: credential-named fields (at any
    depth) hold :data:`~pluralign.engine.store.redaction.REDACTED`, as the judge's identity and
    every record keep them (a credential changes no answer; rotating one rescores nothing)."""
    if not text:
        return "{}"
    if isinstance(text, Mapping):
        value: object = dict(text)
    else:
        try:
            value = json.loads(text)
        except json.JSONDecodeError as e:
            raise InputError(f"`extra_body` is not JSON ({e.msg})", field="extra_body") from None
        except RecursionError:
            raise InputError("`extra_body` is nested too deeply", field="extra_body") from None
    if not isinstance(value, dict):
        raise InputError("`extra_body` must be a JSON object", field="extra_body")
    check_extra_body(value)
    try:
        return json.dumps(redact_json(value) if redacted else value, sort_keys=True,
                          separators=(",", ":"))
    except (TypeError, ValueError, RecursionError) as e:
        raise InputError(f"`extra_body` is not JSON-able ({type(e).__name__})",
                         field="extra_body") from None


def _decoding(config: LLMConfig) -> str | None:
    """The structured-output mode a vLLM replica decodes with (part of the judge identity)."""
    if config.backend != "vllm":
        return None

    return f"vllm:{structured_outputs_mode(vllm_config(config))}"


def _limited(bench: Benchmark, config: LLMConfig) -> Benchmark:
    limit = config.limit
    if limit is None or limit >= bench.n_scenarios:
        return bench
    if limit < 1:
        raise InputError("`limit` must be at least 1", field="limit")
    return bench.subset(limit)


def build_judge(bench: Benchmark, train: Benchmark | None, scorer_name: str,
                config: LLMConfig) -> Judge:
    if scorer_name not in JUDGE_NAMES:
        raise InputError(f"{scorer_name!r} is not an LLM scorer", field="scorer",
                         hint=f"LLM scorers: {', '.join(JUDGE_NAMES)}")
    prompts = None
    if config.prompts:

        prompts = load_prompts(config.prompts)
        prompts.check_definitions(bench.attributes)  # a typo'd attribute is not ignored
    settings = judge_settings(config)
    settings = JudgeSettings(**{**settings.as_dict(),
                                "few_shot": few_shot_for(scorer_name, config.few_shot),
                                "prompts": None if prompts is None else prompts.sha256,
                                "shots": config.shots})
    return make_judge(scorer_name, bench, settings, train=train, prompts=prompts)


def llm_scorer_identity(bench: Benchmark, train: Benchmark | None, scorer_name: str,
                        config: LLMConfig) -> str:
    """The identity ``run_llm_scoring`` writes under, without sending anything."""
    return build_judge(_limited(bench, config), train, scorer_name, config).identity


# ---------------------------------------------------------------- backends


def api_key_env(config: LLMConfig) -> str | None:
    env = config.api_key_env
    return None if env in (None, "", "none") else str(env)


def _api_config(config: LLMConfig) -> APIClientConfig:

    settings = judge_settings(config)
    kwargs: dict[str, Any] = {
        "model": settings.model,
        "api_key_env": api_key_env(config),
        "max_concurrency": int(config.concurrency),
        "rpm": config.rpm, "tpm": config.tpm, "redis_url": config.redis_url,
        "timeout": float(config.request_timeout),
        "max_retries": int(config.max_retries),
        "adaptive": adaptive_of(config),
        "structured_output": settings.structured_output,
        "extra_body": json.loads(canonical_extra_body(config.extra_body)),  # not redacted
    }
    if config.base_url:
        kwargs["base_url"] = config.base_url
    return APIClientConfig(**kwargs)


def adaptive_of(config: LLMConfig) -> bool:
    """Whether API clients adapt their concurrency (``adaptive``: auto = no rpm/tpm given)."""
    return config.adaptive == "on" or (config.adaptive == "auto"
                                       and not config.rpm and not config.tpm)


def _openai_pool(config: LLMConfig, n: int) -> BackendPool:
    """API clients of an OpenAI-compatible endpoint: in this process, or as Ray actors."""
    client = _api_config(config)
    if not config.use_ray:
        backend = backend_class("openai")
        return BackendPool.of_backends([backend(client) for _ in range(n)])
    ensure_ray(config.ray_dashboard)
    return api_client_actors(client, n, placement=config.placement, **placement("api_client"))


def _vllm_pool(config: LLMConfig, n: int) -> BackendPool:
    """vLLM replicas: one in this process, or ``n`` as Ray actors on GPU nodes."""
    replica = vllm_config(config)
    if not config.use_ray:
        if n != 1:
            raise InputError("without Ray there is one in-process vLLM replica",
                             field="actors", hint="drop `actors`, or set `use_ray=True`")
        return vllm_local(replica)
    fixed = ensure_ray(config.ray_dashboard)
    return vllm_replica_actors(replica, n, fixed=fixed, placement=config.placement,
                               **placement("vllm_replica"))


POOLS: dict[str, Callable[[LLMConfig, int], BackendPool]] = {
    "openai": _openai_pool, "vllm": _vllm_pool}
"""How to build a pool of each registered backend (:mod:`pluralign.engine.run.backend`)."""


def make_pool(config: LLMConfig) -> BackendPool:
    """A BackendPool of the registered backend ``config.backend``: in-process clients or one
    replica (``use_ray`` off), or API-client actors or vLLM replicas on Ray."""
    n = int(config.actors)
    if n < 1:
        raise InputError("`actors` must be at least 1", field="actors")
    if config.backend not in registered_backends() or config.backend not in POOLS:
        raise InputError(f"unknown backend {config.backend!r}", field="backend",
                         hint=f"one of {', '.join(registered_backends())}")
    return POOLS[config.backend](config, n)


def engine_arg_pairs(config: LLMConfig) -> tuple[tuple[str, str], ...]:
    """``--engine-arg KEY=VALUE`` pairs (keys with underscores); bad ones are input errors."""

    pairs = []
    for text in config.engine_args or ():
        try:
            pairs.append(parse_engine_arg(text))
        except ValueError as e:
            raise InputError(str(e), field="engine_args") from None
    return tuple(pairs)


def vllm_config(config: LLMConfig) -> VLLMConfig:
    """The VLLMConfig of ``--backend vllm``: model, tensor parallel size, ``--engine-arg``s and
    the structured-output settings (the default of the installed vLLM, or the one given as
    ``--engine-arg structured_outputs_config=JSON``)."""
    import json


    pairs = engine_arg_pairs(config)
    structured = dict(default_structured_outputs())
    rest = []
    for key, value in pairs:
        if key == "structured_outputs_config":
            try:
                given = json.loads(value)
            except json.JSONDecodeError as e:
                raise InputError(f"structured_outputs_config is not JSON ({e.msg})",
                                 field="engine_args") from None
            if not isinstance(given, dict):
                raise InputError("structured_outputs_config must be a JSON object",
                                 field="engine_args")
            structured.update(given)
        else:
            rest.append((key, value))
    if not config.model:
        raise InputError("`backend=vllm` needs `model`", field="model",
                         hint="a Hugging Face model id or a local model directory")
    return VLLMConfig(model=str(config.model), tensor_parallel_size=int(config.tensor_parallel),
                      engine_cli=tuple(rest), structured_outputs=structured)


def _status(config: LLMConfig, scorer: str) -> RedisStatus | None:
    if not config.redis_url:
        return None

    job = config.job_id or f"{scorer}-{uuid.uuid4().hex[:8]}"
    return RedisStatus(config.redis_url, job)


def endpoint_credentials(config: LLMConfig) -> tuple[str, ...]:
    """The API key (from the environment) and the credentials the base URL and
    ``extra_body`` carry: never printed, never stored."""
    env = api_key_env(config)
    secret = os.environ.get(env) if env else None
    found = [secret] if secret else []
    if config.backend == "openai":
        found += _api_config(config).credentials()
    return tuple(found)


def scheduler_config(config: LLMConfig) -> SchedulerConfig:
    secrets = endpoint_credentials(config)
    for secret in secrets:
        register_secret(secret)  # the cache redacts them from every row it stores
    in_flight = config.max_in_flight or int(config.concurrency) * int(config.actors)
    return SchedulerConfig(
        max_in_flight=max(1, int(in_flight)),
        max_sends=config.max_sends,
        grace_seconds=max(0.0, float(config.grace_seconds or 0.0)),
        batch_size=max(1, min(4, int(config.concurrency))),
        token_budget=config.token_budget,
        cost_budget=config.cost_budget,
        price_prompt_per_1k=float(config.price_prompt or 0.0),
        price_completion_per_1k=float(config.price_completion or 0.0),
        secrets=secrets,
        progress_note=adaptive_status,
    )


# ---------------------------------------------------------------- running


def _store(judge: Judge, cache: ScoreCache) -> ScoreCache | ChoiceCache:
    return ChoiceCache(cache_root(cache)) if judge.kind == "choice" else cache


def cache_root(cache: ScoreCache | ChoiceCache) -> Path:
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
    config: LLMConfig,
    cache: ScoreCache,
    *,
    targets: TargetSet | None = None,
    backend: Dispatcher | None = None,
    log: TextIO | None = STDERR,
) -> ScoringReport:
    """Score ``bench`` with an LLM judge, sending only what ``cache`` lacks.

    ``backend`` overrides the pool built from ``config`` (tests). Prompt-aligned needs
    ``targets``. Afterwards read scores with ``cache.predictions(report.bench, report.identity,
    report.samples)`` or choices with :func:`llm_choices`.
    """
    bench = _limited(bench, config)
    judge = build_judge(bench, train, scorer_name, config)
    samples = samples_of(config)
    items = judge.items(range(bench.n_scenarios), samples, target_keys(targets, scorer_name))
    store = _store(judge, cache)
    planned = plan_items(judge, items, config, store, benchmark=bench.identity, samples=samples)
    note_manifest(counts={"plan": planned.as_dict()})  # beside the actuals, for its error
    if config.dry_run:
        raise DryRunDone(planned)
    report = asyncio.run(run_lanes(
        judge, items, config, store, benchmark=bench.identity, log=log,
        client_config=_api_config(config) if config.backend == "openai" else None,
        online=lambda todo: _schedule(judge, bench, todo, config, store, backend, log)))
    spread = score_spread(cache, bench, judge.identity, samples) if judge.kind == "scores" else None
    return ScoringReport(scorer_name, judge.identity, judge.kind, bench, samples, report, spread,
                         settings=judge.describe())


async def _schedule(judge: Judge, bench: Benchmark, items: Sequence[WorkItem],
                    config: LLMConfig, store: ScoreCache | ChoiceCache,
                    backend: Dispatcher | None,
                    log: TextIO | None) -> ScheduleReport:
    if backend is None and not _anything_to_send(judge, bench, items, store):
        backend = Idle()  # a finished sweep starts no actors (and no Ray)
    owned: BackendPool | None = None
    pool: Dispatcher
    if backend is None:
        pool = owned = make_pool(config)
    else:
        pool = backend
    status = _status(config, judge.name)
    root = getattr(store, "root", None)
    claims = JournalClaims(Path(root), scorer=judge.identity) if root is not None else None
    interrupts = Interrupts(log, pool)
    try:
        interrupts.install()
        if owned is not None:
            await owned.start()
        return await run_schedule(judge, items, pool, store, scheduler_config(config),
                                  benchmark=bench.identity, status=status, log=log,
                                  claims=claims, on_start=interrupts.attach)
    finally:
        interrupts.uninstall()
        if owned is not None:
            await owned.close()
            hosts = owned.host_report()
            if hosts is not None:  # actors and items per host into the run's counts
                note_manifest(counts={"placement": dict(hosts)})
                if log is not None:
                    print(describe_hosts(hosts), file=log, flush=True)
        if status is not None:
            await status.close()


def require_complete(report: ScoringReport, out: str | os.PathLike[str] | None = None,
                     log: TextIO | None = STDERR) -> None:
    """Re-align only on complete scores. Otherwise write a partial summary to ``out`` (a folder,
    when given: marked ``interrupted`` or ``incomplete``, counts and failures by reason, no
    accuracies), print the failures by reason (count and one example each) and raise:
    :class:`ScoringInterrupted` (exit 130) after an interrupt, else :class:`IncompleteScoring`
    (exit 2) with the reason."""
    s = report.schedule
    if s.complete:
        return
    state = "interrupted" if s.stop_kind == "interrupted" else "incomplete"
    missing = s.items - s.cached - s.completed - s.elsewhere
    if out:

        write_json_atomic(Path(out) / "summary.json", {
            "state": state, "complete": False, "benchmark": report.bench.identity,
            "scenarios": report.bench.n_scenarios, "scorer": report.identity,
            "stopped": s.stopped, "missing_items": missing, "scoring": s.as_dict(),
        })
    if log is not None:
        for kind, n in sorted(s.failures.items(), key=lambda kv: -kv[1]):
            print(f"  failed {n} x {kind}: e.g. {s.failure_examples.get(kind, '')}", file=log)
        if s.not_started:
            print(f"  not answered: {s.not_started} (a rerun sends only these and the failed)",
                  file=log)
        if out:
            print(f"wrote a partial summary ({state}) to {Path(out) / 'summary.json'}",
                  file=log, flush=True)
    if state == "interrupted":
        raise ScoringInterrupted()
    why = s.stopped or (f"{s.failed} items failed" if s.failed else "items unanswered")
    raise IncompleteScoring(f"{missing} of {s.items} items have no score: {why}. Nothing was "
                            "re-aligned; a rerun sends only the missing items")


def _anything_to_send(judge: Judge, bench: Benchmark, items: Sequence[WorkItem],
                      store: ScoreCache | ChoiceCache) -> bool:

    return bool(plan(items, store.completed_keys(bench.identity, judge.identity)).pending)



# ---------------------------------------------------------------- reading back


def sample_spread(cache: ScoreCache, bench: Benchmark, identity: str,
                  samples: int) -> np.ndarray | None:
    """float64 (responses, attributes): the standard deviation of each cached score across
    its samples (self-consistency; NaN where a sample is missing); None with one sample."""
    if samples < 2:
        return None

    per_sample = np.stack([
        np.asarray(cache.predictions(bench, identity, [i]), dtype=np.float64)
        for i in range(samples)
    ])
    _, spread = mean_and_spread(per_sample)
    return np.asarray(spread, dtype=np.float64)


def score_spread(cache: ScoreCache, bench: Benchmark, identity: str, samples: int) -> float | None:
    """Mean over (response, attribute) of the standard deviation of scores across samples."""
    spread = sample_spread(cache, bench, identity, samples)
    if spread is None:
        return None
    finite = spread[np.isfinite(spread)]
    return float(finite.mean()) if finite.size else None


def llm_choices(
    bench: Benchmark,
    scorer_name: str,
    identity: str,
    targets: TargetSet,
    samples: int,
    cache: ScoreCache,
) -> np.ndarray:
    """int64 (S, T): chosen response per scenario and target (majority over samples); -1 where
    no answer is cached. The unaligned judge's one choice per scenario serves every target."""
    store = ChoiceCache(cache_root(cache))
    if scorer_name == "unaligned":
        one = store.choices(bench, identity, [NO_TARGET], samples)
        return np.repeat(one, len(targets), axis=1)
    return store.choices(bench, identity, targets.json_all(), samples)
