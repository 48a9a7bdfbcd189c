"""Backend over vLLM's async engine in this process (one replica: one GPU, or tensor parallel).

vLLM is imported only in ``start``; the engine class, the structured-output parameter class and
the tokenizer call are found by feature detection, so vLLM 0.6 (AsyncLLMEngine, guided decoding)
through current releases (v1 AsyncLLM, StructuredOutputsParams) work unchanged.
"""

from __future__ import annotations

import asyncio
import inspect
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

log = logging.getLogger(__name__)


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


def engine_args(vllm: ModuleType, config: VLLMConfig) -> Any:
    """AsyncEngineArgs for ``config``."""
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
    return vllm.AsyncEngineArgs(**kwargs)


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
        import vllm  # optional extra: only GPU nodes have it

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
