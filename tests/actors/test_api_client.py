"""OpenAIBackend against the fake server: one result per request, retries, Retry-After, budgets."""

from __future__ import annotations

import asyncio
import itertools
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pluralign.actors.backends.api_client import (
    APIClientConfig,
    OpenAIBackend,
    chat_url,
    classify_status,
    parse_retry_after,
    quick_check,
    schema_errors,
)
from pluralign.actors.ratelimit import LocalLimiter
from pluralign.actors.testing.fake_server import FakeOpenAIServer
from pluralign.engine.errors import InputError
from pluralign.engine.judges.comparative import comparative_schema
from pluralign.engine.judges.prompt_aligned import choice_schema
from pluralign.engine.judges.regression import regression_schema
from pluralign.engine.run.backend import (
    Backend,
    FailureKind,
    GenerationRequest,
    GenerationResult,
    Message,
)
from tests.actors.test_fake_server import JUDGE_SCHEMA, OTHER_SCHEMAS
from tests.fake_openai import FAKE_KEY_ENV


def requests(k: int, *, n: int = 1, schema: Any = JUDGE_SCHEMA, tag: str = "q") -> list[
        GenerationRequest]:
    return [GenerationRequest(id=f"{tag}{i}", messages=(Message("system", "judge"),
                                                        Message("user", f"{tag} {i}")),
                              json_schema=schema, n=n, max_tokens=64) for i in range(k)]


def config(server: FakeOpenAIServer, **kw: Any) -> APIClientConfig:
    base = {"base_url": server.url, "model": "fake", "api_key_env": FAKE_KEY_ENV,
            "backoff_base": 0.02, "backoff_max": 5.0, "timeout": 5.0}
    return APIClientConfig(**{**base, **kw})


def run(cfg: APIClientConfig, reqs: Sequence[GenerationRequest], **kw: Any) -> list[
        GenerationResult]:
    async def go() -> list[GenerationResult]:
        backend = OpenAIBackend(cfg, **kw)
        try:
            return await backend.generate(reqs)
        finally:
            await backend.close()

    return asyncio.run(go())


def test_is_a_backend() -> None:
    assert isinstance(OpenAIBackend(APIClientConfig()), Backend)


def test_every_request_gets_exactly_one_result_under_faults(
        make_fake_server: Any, fake_key: str) -> None:
    server = make_fake_server(fault_429=0.1, retry_after=0.05, fault_5xx=0.05,
                              fault_malformed=0.05, fault_bad_content=0.05, fault_timeout=0.03,
                              timeout_sleep=3.0, seed=11)
    reqs = requests(60)
    results = run(config(server, timeout=0.5, max_retries=8, max_bad_answers=4), reqs)
    assert [r.id for r in results] == [q.id for q in reqs]
    stats = server.stats()
    assert stats["total"] > len(reqs)  # retries happened
    assert sum(r.attempts for r in results) == stats["total"]
    for r in results:
        if r.ok:
            assert len(r.samples) == 1 and schema_errors(r.samples[0].parsed, JUDGE_SCHEMA) == []
        else:  # only where a retry budget ran out
            assert r.failure is not None and r.failure.kind in (
                FailureKind.TRANSIENT, FailureKind.RATE_LIMITED, FailureKind.BAD_ANSWER)
    assert sum(r.ok for r in results) >= len(reqs) - 2


def test_retry_after_is_honoured(make_fake_server: Any, fake_key: str) -> None:
    server = make_fake_server(rpm=3, rpm_window=1.5)
    results = run(config(server, max_retries=10), requests(8))
    assert all(r.ok for r in results)
    by_fp: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for ev in server.stats()["events"]:
        by_fp[ev["fingerprint"]].append(ev)
    checked = 0
    for events in by_fp.values():
        for first, second in itertools.pairwise(events):
            if first["status"] == 429:
                # Server clock on both sides; 50 ms margin for the header's rounding.
                assert second["t"] >= first["t"] + first["retry_after"] - 0.05
                checked += 1
    assert checked > 0


def test_long_retry_after_is_handed_to_the_caller(make_fake_server: Any, fake_key: str) -> None:
    server = make_fake_server(fault_429=1.0, retry_after=120.0)
    [result] = run(config(server, backoff_max=5.0), requests(1))
    assert result.failure is not None
    assert result.failure.kind is FailureKind.RATE_LIMITED
    assert result.failure.retry_after == pytest.approx(120.0)
    assert server.stats()["total"] == 1


def test_bad_answers_are_retried_then_recorded(make_fake_server: Any, fake_key: str) -> None:
    server = make_fake_server(fault_bad_content=1.0)
    results = run(config(server, max_bad_answers=2), requests(3))
    for r in results:
        assert r.failure is not None and r.failure.kind is FailureKind.BAD_ANSWER
        assert r.attempts == 3
        assert r.usage.completion_tokens > 0  # tokens spent on bad answers still count
    assert server.stats()["total"] == 9


def test_unparsable_body_is_transient_and_retried(make_fake_server: Any, fake_key: str) -> None:
    server = make_fake_server(fault_malformed=1.0)
    [r] = run(config(server, max_retries=2), requests(1))
    assert r.failure is not None and r.failure.kind is FailureKind.TRANSIENT
    assert server.stats()["total"] == 3


@pytest.mark.parametrize(("status", "kind"), [
    (401, FailureKind.FATAL_REPLICA), (403, FailureKind.FATAL_REPLICA),
    (400, FailureKind.FATAL_ITEM), (413, FailureKind.FATAL_ITEM),
])
def test_fatal_statuses_are_not_retried(make_fake_server: Any, fake_key: str, status: int,
                                        kind: FailureKind) -> None:
    server = make_fake_server(force_status=status)
    results = run(config(server), requests(2))
    assert [r.failure.kind if r.failure else None for r in results] == [kind, kind]
    assert [r.failure.status if r.failure else None for r in results] == [status, status]
    assert server.stats()["total"] == 2


def test_5xx_retried_until_budget_then_transient(make_fake_server: Any, fake_key: str) -> None:
    server = make_fake_server(fault_5xx=1.0)
    [r] = run(config(server, max_retries=3), requests(1))
    assert r.failure is not None and r.failure.kind is FailureKind.TRANSIENT
    assert r.attempts == 4 == server.stats()["total"]


def test_n_samples_topped_up_when_server_returns_fewer(make_fake_server: Any,
                                                       fake_key: str) -> None:
    server = make_fake_server(max_choices=2)
    [r] = run(config(server), requests(1, n=5))
    assert r.ok and len(r.samples) == 5
    assert r.attempts == 3  # 2 + 2 + 1
    assert r.usage.prompt_tokens > 0 and r.usage.completion_tokens > 0


def test_no_schema_gives_raw_text(fake_server: FakeOpenAIServer, fake_key: str) -> None:
    [r] = run(config(fake_server), requests(1, schema=None))
    assert r.ok and r.samples[0].text and r.samples[0].parsed is None


@pytest.mark.parametrize("mode", ["vllm", "vllm_guided", "none"])
def test_structured_output_modes(fake_server: FakeOpenAIServer, fake_key: str, mode: str) -> None:
    backend = OpenAIBackend(config(fake_server, structured_output=mode))
    body = backend.request_body(requests(1)[0])
    key = {"vllm": "structured_outputs", "vllm_guided": "guided_json", "none": None}[mode]
    assert "response_format" not in body
    if key:
        assert key in body
    [r] = run(config(fake_server, structured_output=mode), requests(1))
    if mode == "none":  # the fake then answers free text: validated, rejected
        assert r.failure is not None and r.failure.kind is FailureKind.BAD_ANSWER
    else:
        assert r.ok


def test_missing_key_env_fails_every_item_as_fatal_replica(
        fake_server: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(FAKE_KEY_ENV, raising=False)
    results = run(config(fake_server), requests(2))
    for r in results:
        assert r.failure is not None and r.failure.kind is FailureKind.FATAL_REPLICA
        assert FAKE_KEY_ENV in r.failure.message
    assert fake_server.stats()["total"] == 0


def test_connection_refused_is_fatal_at_once_with_the_reason(fake_key: str) -> None:
    from tests.fake_openai import free_port

    url = f"http://127.0.0.1:{free_port()}/v1"
    cfg = APIClientConfig(base_url=url, api_key_env=FAKE_KEY_ENV, max_retries=5,
                          backoff_base=0.01)
    [r] = run(cfg, requests(1))
    assert r.failure is not None and r.failure.kind is FailureKind.FATAL_REPLICA
    assert r.attempts == 1  # never delivered: no retry loop against a dead endpoint
    assert f"cannot connect to {url} (connection refused)" in r.failure.message


def test_an_unresolvable_host_names_the_reason(fake_key: str) -> None:
    cfg = APIClientConfig(base_url="http://no-such-host.invalid/v1", api_key_env=FAKE_KEY_ENV)
    [r] = run(cfg, requests(1))
    assert r.failure is not None and r.failure.kind is FailureKind.FATAL_REPLICA
    assert "host name not resolved" in r.failure.message


@pytest.mark.parametrize("fault", ["fault_control_chars", "fault_fenced"])
def test_answers_real_engines_send_are_accepted(make_fake_server: Any, fake_key: str,
                                                fault: str) -> None:
    server = make_fake_server(**{fault: 1.0})
    results = run(config(server), requests(4))
    assert all(r.ok for r in results), [r.failure for r in results]
    assert all(r.attempts == 1 for r in results)
    if fault == "fault_control_chars":
        assert all("\t\x15" in r.samples[0].text for r in results)
        assert all("\t\x15" in r.samples[0].parsed["A"]["reasoning"] for r in results)
    assert server.stats()["total"] == 4


def test_a_truncated_answer_is_its_own_kind_with_a_hint_and_not_retried(
        make_fake_server: Any, fake_key: str) -> None:
    server = make_fake_server(fault_truncated=1.0)
    [r] = run(config(server, max_bad_answers=3), requests(1))
    assert r.failure is not None and r.failure.kind is FailureKind.TRUNCATED
    assert "raise `max_tokens`" in r.failure.message and "= 64" in r.failure.message
    assert server.stats()["total"] == 1


def test_a_reset_connection_is_retried(make_fake_server: Any, fake_key: str) -> None:
    server = make_fake_server(fault_reset=1.0)
    [r] = run(config(server, max_retries=2), requests(1))
    assert r.failure is not None and r.failure.kind is FailureKind.TRANSIENT
    assert r.attempts == 3 == server.stats()["total"]
    server.configure(fault_reset=0.0)
    [ok] = run(config(server), requests(1))
    assert ok.ok


def test_a_request_send_budget_caps_every_kind_of_retry(make_fake_server: Any,
                                                        fake_key: str) -> None:
    import dataclasses

    server = make_fake_server(fault_5xx=0.5, fault_bad_content=0.5, seed=7)
    reqs = [dataclasses.replace(q, max_sends=2) for q in requests(12)]
    results = run(config(server, max_retries=10, max_bad_answers=10), reqs)
    assert all(r.attempts <= 2 for r in results)
    assert server.stats()["total"] == sum(r.attempts for r in results) <= 24
    spent = [r for r in results if not r.ok]
    assert spent and all("send budget of 2 spent" in r.failure.message for r in spent)


def test_stop_sending_drains_every_client_of_the_process(make_fake_server: Any,
                                                         fake_key: str) -> None:
    from pluralign.actors.backends.api_client import stop_sending

    server = make_fake_server(latency=0.3)

    async def go() -> list[GenerationResult]:
        backend = OpenAIBackend(config(server, max_concurrency=2))
        try:
            task = asyncio.ensure_future(backend.generate(requests(6)))
            await asyncio.sleep(0.15)  # two requests are on the wire
            assert stop_sending() >= 1
            return await task
        finally:
            await backend.close()

    results = asyncio.run(go())
    assert sum(r.ok for r in results) == 2  # the two in flight still arrive
    assert server.stats()["total"] == 2  # nothing else went out
    assert all("interrupted" in r.failure.message for r in results if not r.ok)


def test_client_budget_keeps_under_the_server_limit(make_fake_server: Any, fake_key: str) -> None:
    server = make_fake_server(rpm=6, rpm_window=2.0)
    # Generous slack absorbs scheduling jitter on a loaded machine; the bucket math is exact.
    limiter = LocalLimiter(rpm=6, period=2.0, slack=1.0)
    results = run(config(server), requests(10), limiter=limiter)
    assert all(r.ok for r in results)
    assert "429" not in server.stats()["by_status"]


def test_concurrency_is_bounded(make_fake_server: Any, fake_key: str) -> None:
    server = make_fake_server(latency=0.5)
    results = run(config(server, max_concurrency=3), requests(9))
    assert all(r.ok for r in results)
    assert 2 <= server.stats()["max_in_flight"] <= 3


@pytest.mark.parametrize(("status", "kind"), [
    (429, FailureKind.RATE_LIMITED), (500, FailureKind.TRANSIENT), (503, FailureKind.TRANSIENT),
    (408, FailureKind.TRANSIENT), (401, FailureKind.FATAL_REPLICA),
    (404, FailureKind.FATAL_REPLICA), (400, FailureKind.FATAL_ITEM),
    (422, FailureKind.FATAL_ITEM)])
def test_classify_status(status: int, kind: FailureKind) -> None:
    assert classify_status(status) is kind


def test_parse_retry_after_forms() -> None:
    assert parse_retry_after({"Retry-After": "2.5"}) == 2.5
    assert parse_retry_after({"retry-after-ms": "1500", "Retry-After": "9"}) == 1.5
    assert parse_retry_after({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0.0
    assert parse_retry_after({"Retry-After": "soon"}) is None
    assert parse_retry_after({}) is None


@settings(max_examples=200, deadline=None)
@given(value=st.recursive(
    st.none() | st.booleans() | st.integers(-200, 200) | st.floats(-2, 200, allow_nan=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(
        st.sampled_from(["A", "B", "reasoning", "score", "choice", "why", "x", "n", "ok"]),
        inner, max_size=4), max_leaves=12),
    which=st.integers(0, len(OTHER_SCHEMAS)))
def test_validator_agrees_with_jsonschema(value: Any, which: int) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    schema = ([JUDGE_SCHEMA, *OTHER_SCHEMAS])[which]
    ours = schema_errors(value, schema) == []
    theirs = jsonschema.Draft202012Validator(schema).is_valid(value)
    assert ours == theirs


def test_validator_refuses_schemas_it_cannot_check() -> None:
    errors = schema_errors({"a": 1}, {"type": "object", "$ref": "#/defs/x"})
    assert errors and errors[0].startswith("$: schema cannot be checked") and "/defs/x" in errors[0]
    errors = schema_errors({"a": 1}, {"type": "objekt"})
    assert errors and errors[0].startswith("$: schema cannot be checked")


def test_validator_says_where_and_what_most_telling_first() -> None:
    value = {"A": {"score": 101}, "B": {"reasoning": "ok", "score": 50}}
    errors = schema_errors(value, JUDGE_SCHEMA)
    assert errors and all(e.startswith("$.A") for e in errors)
    assert any("'reasoning' is a required property" in e for e in errors)
    assert any(e == "$.A.score: 101 is greater than the maximum of 100" for e in errors)
    assert schema_errors({"A": {"reasoning": "r", "score": 5.0}, "B": {"reasoning": "r",
                                                                       "score": 1}},
                         JUDGE_SCHEMA) == []  # 5.0 is an integer, as JSON Schema says


@pytest.mark.parametrize("shared_by", ["process", pytest.param("redis", marks=pytest.mark.redis)])
def test_clients_of_one_key_share_one_budget(
        make_fake_server: Any, fake_key: str, request: pytest.FixtureRequest,
        shared_by: str) -> None:
    url = request.getfixturevalue("redis_url") if shared_by == "redis" else None
    server = make_fake_server(rpm=6, rpm_window=2.0)
    cfg = config(server, rpm=6, rate_period=2.0, redis_url=url, max_retries=0)

    async def go() -> list[GenerationResult]:
        backends = [OpenAIBackend(cfg), OpenAIBackend(cfg)]
        try:
            halves = await asyncio.gather(*(b.generate(requests(6, tag=f"c{i}-"))
                                            for i, b in enumerate(backends)))
        finally:
            for b in backends:
                await b.close()
        return [r for half in halves for r in half]

    results = asyncio.run(go())
    # Each client alone may send 6 per window; together they still get only 6, so no 429s
    # (max_retries=0 would turn any 429 into a failure here).
    assert all(r.ok for r in results), [r.failure for r in results if r.failure]
    assert server.stats()["by_status"] == {"200": 12}


@pytest.mark.parametrize("status, says", [(401, "was refused"), (403, "was refused"),
                                          (404, "check `base_url`")])
def test_auth_and_url_failures_say_what_to_check(make_fake_server: Any, fake_key: str,
                                                 status: int, says: str) -> None:
    server = make_fake_server(force_status=status)
    [r] = run(config(server), requests(1))
    assert r.failure is not None and r.failure.kind is FailureKind.FATAL_REPLICA
    assert says in r.failure.message and r.attempts == 1
    if status != 404:
        assert f"${FAKE_KEY_ENV}" in r.failure.message


# ---------------------------------------------------------------- endpoint and body checks

@pytest.mark.parametrize(("url", "key_env", "words"), [
    ("notaurl", None, "not an http(s) URL with a host"),
    ("file:///etc/passwd", None, "not an http(s) URL with a host"),
    ("http://:80/v1", None, "not an http(s) URL with a host"),
    ("http://h:99999/v1", None, "not a URL"),
    ("http://h/v1#frag", None, "#fragment"),
    ("http://u:pw-planted@h/v1", "OPENAI_API_KEY", "`api_key_env` to none"),
    ("http://u:pw-planted@h/v1?api-version=1", None, "a password and a query string"),
])
def test_bad_base_urls_are_refused_in_one_line_without_credentials(
        url: str, key_env: str | None, words: str) -> None:
    with pytest.raises(InputError) as e:
        APIClientConfig(base_url=url, api_key_env=key_env)
    message = str(e.value)
    assert words in message and e.value.field == "base_url" and "\n" not in message
    assert "pw-planted" not in message


def test_the_chat_route_goes_before_the_query(make_fake_server: Any, fake_key: str) -> None:
    assert chat_url("https://h/v1/?api-version=2&key=k") == (
        "https://h/v1/chat/completions?api-version=2&key=k")
    server = make_fake_server()
    [r] = run(config(server, base_url=f"{server.url}?api_key=qk-planted"), requests(1))
    assert r.failure is None and server.stats()["by_status"] == {"200": 1}


def test_every_client_puts_its_route_before_the_query() -> None:
    from pluralign.actors.backends.batch_openai import OpenAIBatchClient
    from pluralign.actors.backends.reward_client import HTTPRewardClient

    base = "https://h/v1?api-version=2"
    batch = OpenAIBatchClient(APIClientConfig(base_url=base, model="m", api_key_env=None))
    assert batch._url("/files") == "https://h/v1/files?api-version=2"
    assert batch._url("batches/b1/cancel") == "https://h/v1/batches/b1/cancel?api-version=2"
    reward = HTTPRewardClient(base, "m", api_key_env=None)
    assert reward.url == "https://h/pooling?api-version=2"
    assert HTTPRewardClient(base, "m", route="rewards", api_key_env=None).url == (
        "https://h/v1/rewards?api-version=2")


@pytest.mark.parametrize("key", ["model", "messages", "n", "temperature", "max_tokens", "seed",
                                 "response_format", "logprobs", "top_logprobs", "stream"])
def test_extra_body_may_not_override_the_work(key: str) -> None:
    with pytest.raises(InputError, match=f"'{key}' is part of what identifies the work"):
        APIClientConfig(extra_body={key: 1})
    APIClientConfig(extra_body={"top_p": 0.9, "metadata": {"n": 3}})  # nested: not the body's


def test_a_url_password_and_body_credentials_never_show(fake_key: str) -> None:
    from tests.fake_openai import free_port

    port = free_port()
    planted = ("pw-planted-1", "sig-planted-2", "bk-planted-3")
    for url in (f"http://user:{planted[0]}@127.0.0.1:{port}/v1",
                f"http://127.0.0.1:{port}/v1?sig={planted[1]}"):
        cfg = APIClientConfig(base_url=url, api_key_env=None,
                              extra_body={"metadata": {"api_key": planted[2]}})
        [r] = run(cfg, requests(1))
        assert r.failure is not None and "connection refused" in r.failure.message
        shown = "\n".join([r.failure.message, repr(cfg), repr(OpenAIBackend(cfg))])
        assert not any(s in shown for s in planted)
        assert len(cfg.credentials()) == 2 and planted[2] in cfg.credentials()


def _answer_schemas() -> list[Any]:
    return [comparative_schema("AB"), comparative_schema("ABCDE"), regression_schema(),
            choice_schema("ABC"), JUDGE_SCHEMA, *OTHER_SCHEMAS]


_LEAF = (st.none() | st.booleans() | st.integers(-3, 104) | st.floats(-3, 104)
         | st.sampled_from([0.0, 7.0, 100.0, 100.5, float("nan"), float("inf")])
         | st.text(max_size=3) | st.sampled_from(["", "é" * 512, "x" * 513]) | st.sampled_from("ABC"))
_ANSWERS = st.recursive(
    _LEAF, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(["A", "B", "C", "D", "E", "reasoning", "score", "choice", "why", "x"]),
        inner, max_size=6), max_leaves=14)
"""Answers near the judges' schemas: right and wrong keys, types, lengths and bounds."""


@settings(max_examples=400, deadline=None)
@given(value=_ANSWERS, which=st.integers(0, len(OTHER_SCHEMAS) + 4))
def test_quick_check_passes_only_what_jsonschema_passes(value: Any, which: int) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    schema = _answer_schemas()[which]
    quick = quick_check(schema)
    theirs = jsonschema.Draft202012Validator(schema).is_valid(value)
    if quick is not None and quick(value):
        assert theirs
    assert (schema_errors(value, schema) == []) == theirs


_FAULTS: list[tuple[str, Any]] = [
    ("reasoning", "x" * 512), ("reasoning", "x" * 513), ("reasoning", ""), ("reasoning", 3),
    ("score", 0), ("score", 100), ("score", -1), ("score", 101), ("score", True),
    ("score", 5.0), ("score", 5.5), ("score", "5"), ("score", None), ("why", "x"),
    ("-score", None), ("-reasoning", None), ("-letter", None), ("+letter", None),
    ("letter", []), ("letter", "A"), ("answer", [])]
"""One change to a valid answer: a field set to a value, removed (``-``), a letter added or
removed, or the letter's (or the whole answer's) value replaced."""


@settings(max_examples=300, deadline=None)
@given(scores=st.lists(st.integers(0, 100), min_size=5, max_size=5),
       reasons=st.lists(st.text(min_size=1, max_size=6), min_size=5, max_size=5),
       at=st.integers(0, 4), faults=st.lists(st.sampled_from(_FAULTS), max_size=2))
def test_quick_check_agrees_with_jsonschema_on_judge_answers(
        scores: list[int], reasons: list[str], at: int, faults: list[tuple[str, Any]]) -> None:
    """Answers as a model writes them, valid or with one or two faults: the quick check and
    jsonschema agree, except on integral floats (5.0), which only jsonschema passes."""
    jsonschema = pytest.importorskip("jsonschema")
    schema = _answer_schemas()[1]
    value: Any = {letter: {"reasoning": r, "score": n}
                  for letter, r, n in zip("ABCDE", reasons, scores, strict=True)}
    letter = "ABCDE"[at]
    for field, bad in faults:
        if not isinstance(value, dict) or not isinstance(value.get(letter), dict):
            break
        if field == "answer":
            value = bad
        elif field == "letter":
            value[letter] = bad
        elif field == "-letter":
            value.pop(letter)
        elif field == "+letter":
            value["F"] = {"reasoning": "r", "score": 1}
        elif field.startswith("-"):
            value[letter].pop(field[1:], None)
        else:
            value[letter][field] = bad
    quick = quick_check(schema)
    assert quick is not None
    theirs = jsonschema.Draft202012Validator(schema).is_valid(value)
    if ("score", 5.0) in faults and theirs:
        assert not quick(value)  # left to jsonschema, which passes it
    else:
        assert quick(value) == theirs


def test_quick_check_leaves_other_schemas_to_jsonschema() -> None:
    assert quick_check({"type": "object", "$ref": "#/defs/x"}) is None
    assert quick_check({"type": ["string", "null"]}) is None
    assert quick_check({"enum": [1, 2]}) is None
    assert quick_check({"type": "object", "properties": {"a": {"pattern": "x"}}}) is None
    quick = quick_check({"type": "integer", "minimum": 0})
    assert quick is not None and quick(3) and not quick(-1) and not quick(True)
    assert not quick(3.0)  # an integral float is left to jsonschema, which passes it
    assert schema_errors(3.0, {"type": "integer", "minimum": 0}) == []
