"""The in-process replica against vLLM's own OpenAI-compatible server, both on the tiny model
(the same dummy weights): the same first-token log-probabilities for the survey judge's
letter request, and the same verdict on a schema answer cut at max_tokens, so the scheduler
sees one answer whichever backend a run uses."""

from __future__ import annotations

import asyncio
import dataclasses
import math
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from pluralign.engine.run.backend import FailureKind, GenerationRequest, GenerationResult
from tests.real_engine.test_replica import letter_request, request
from tests.real_engine.vllm_server import free_port, start_server, stop


@pytest.fixture(scope="module")
def server(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """vLLM's server on loopback; yields its /v1 URL."""
    port = free_port()
    proc: subprocess.Popen[bytes] = start_server(
        tiny_model, port, tmp_path_factory.mktemp("server") / "server.log")
    yield f"http://127.0.0.1:{port}/v1"
    stop(proc)


def through_server(url: str, reqs: Sequence[GenerationRequest]) -> list[GenerationResult]:
    from pluralign.actors.backends.api_client import APIClientConfig, OpenAIBackend

    async def go() -> list[GenerationResult]:
        client = OpenAIBackend(APIClientConfig(base_url=url, model="tiny", api_key_env=None,
                                               timeout=300))
        try:
            return await client.generate(reqs)
        finally:
            await client.close()

    return asyncio.run(go())


def test_first_token_logprobs_match_vllms_server(server: str, backend: Any) -> None:
    b, loop = backend
    reqs = [letter_request(i, 3) for i in range(3)]  # greedy: vLLM's server lists the top k
    ours = loop.run_until_complete(b.generate(reqs))
    theirs = through_server(server, reqs)
    for mine, served in zip(ours, theirs, strict=True):
        assert mine.ok and served.ok, (mine.failure, served.failure)
        [a], [c] = mine.samples, served.samples
        assert a.text == c.text
        assert a.top_logprobs is not None and c.top_logprobs is not None
        assert set(a.top_logprobs) == set(c.top_logprobs) and len(a.top_logprobs) == 3
        for token, value in a.top_logprobs.items():
            assert math.isclose(value, c.top_logprobs[token], abs_tol=1e-3), (token, value)


def test_a_cut_schema_answer_gets_the_servers_verdict(server: str, backend: Any) -> None:
    b, loop = backend
    cut = [dataclasses.replace(request(i, seed=20 + i), n=1, max_tokens=3) for i in range(2)]
    ours = loop.run_until_complete(b.generate(cut))
    theirs = through_server(server, cut)
    for mine, served in zip(ours, theirs, strict=True):
        assert mine.failure is not None and served.failure is not None
        assert mine.failure.kind is served.failure.kind is FailureKind.TRUNCATED
        assert mine.attempts == served.attempts == 1  # not resent by either backend
