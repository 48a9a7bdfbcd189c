"""A planted API key never shows in logs, results, errors, reprs or pickles."""

from __future__ import annotations

import asyncio
import logging
import pickle
from collections.abc import Mapping
from typing import Any

import pytest

from pluralign.actors.backends.api_client import APIClientConfig, OpenAIBackend
from pluralign.actors.ratelimit import RedisLimiter, key_id
from pluralign.engine.run.backend import GenerationRequest, GenerationResult, Message
from tests.actors.test_fake_server import JUDGE_SCHEMA
from tests.fake_openai import FAKE_KEY, FAKE_KEY_ENV, free_port


def leaky_answerer(body: Mapping[str, Any]) -> str:
    # A server that echoes the key back in its error text (some do, partly).
    raise ValueError(f"invalid key {FAKE_KEY}")


def _requests(k: int) -> list[GenerationRequest]:
    return [GenerationRequest(id=f"r{i}", messages=(Message("user", f"q{i}"),),
                              json_schema=JUDGE_SCHEMA) for i in range(k)]


def _everything(backend: OpenAIBackend, results: list[GenerationResult]) -> list[str]:
    texts = [repr(backend), repr(vars(backend)), repr(backend.config)]
    for r in results:
        texts += [repr(r), str(r.failure), r.failure.message if r.failure else ""]
    return texts


@pytest.mark.parametrize("server_kw", [
    {},
    {"force_status": 401},
    {"force_status": 400},
    {"answerer": leaky_answerer},
    {"fault_bad_content": 1.0},
    {"fault_malformed": 1.0},
    {"fault_timeout": 1.0, "timeout_sleep": 2.0},
    {"fault_429": 1.0, "retry_after": 0.01},
])
def test_planted_key_never_leaks(make_fake_server: Any, fake_key: str,
                                 caplog: pytest.LogCaptureFixture,
                                 server_kw: dict[str, Any]) -> None:
    caplog.set_level(logging.DEBUG)
    server = make_fake_server(**server_kw)
    cfg = APIClientConfig(base_url=server.url, api_key_env=FAKE_KEY_ENV, timeout=0.3,
                          max_retries=1, backoff_base=0.01)
    backend = OpenAIBackend(cfg)

    async def go() -> list[GenerationResult]:
        try:
            return await backend.generate(_requests(3))
        finally:
            await backend.close()

    results = asyncio.run(go())
    assert len(results) == 3
    haystack = "\n".join([*_everything(backend, results), caplog.text,
                          repr(server.stats())])
    assert FAKE_KEY not in haystack
    assert FAKE_KEY.encode() not in pickle.dumps(cfg)
    assert FAKE_KEY.encode() not in pickle.dumps(backend)
    assert FAKE_KEY.encode() not in pickle.dumps(results)


def test_secret_refuses_pickling_and_connection_errors_stay_clean(
        fake_key: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    cfg = APIClientConfig(base_url=f"http://127.0.0.1:{free_port()}/v1",
                          api_key_env=FAKE_KEY_ENV, max_retries=0)
    backend = OpenAIBackend(cfg)

    async def go() -> list[GenerationResult]:
        try:
            return await backend.generate(_requests(1))
        finally:
            await backend.close()

    results = asyncio.run(go())
    with pytest.raises(TypeError, match="never pickled"):
        pickle.dumps(backend._secret)
    assert FAKE_KEY not in "\n".join([*_everything(backend, results), caplog.text])


def test_shared_budget_is_named_by_a_hash_of_the_key() -> None:
    limiter = RedisLimiter("redis://127.0.0.1:1/0", key_id(FAKE_KEY), rpm=10)
    assert FAKE_KEY not in repr(limiter)
    assert key_id(FAKE_KEY) in repr(limiter)
    assert FAKE_KEY not in key_id(FAKE_KEY)
