"""Our HTTP client (``--backend openai``) against vLLM's own OpenAI-compatible server on
loopback (the tiny model, dummy weights): schema-valid answers, a sweep that scores every item
and sends nothing on rerun, and a server killed mid-sweep (the sweep must end, not hang)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pluralign.engine.run.backend import GenerationRequest, Message
from tests.real_engine.test_replica import SCHEMA, completed_and_failed, requests_sent, sweep
from tests.real_engine.vllm_server import free_port, start_server, stop


@pytest.fixture(scope="module")
def server(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[
        tuple[str, subprocess.Popen[bytes]]]:
    port = free_port()
    log = tmp_path_factory.mktemp("server") / "server.log"
    proc = start_server(tiny_model, port, log)
    yield f"http://127.0.0.1:{port}/v1", proc
    stop(proc)


@pytest.fixture()
def doomed_server(tiny_model: Path, tmp_path: Path) -> Iterator[
        tuple[str, subprocess.Popen[bytes]]]:
    """A server of its own for the test that kills it (tests run in random order, so the
    shared one must outlive every test)."""
    port = free_port()
    proc = start_server(tiny_model, port, tmp_path / "server.log")
    yield f"http://127.0.0.1:{port}/v1", proc
    stop(proc)


def test_client_gets_schema_valid_answers(server: tuple[str, subprocess.Popen[bytes]]) -> None:
    from pluralign.actors.backends.api_client import APIClientConfig, OpenAIBackend

    url, _ = server
    reqs = [GenerationRequest(id=f"r{i}", messages=(Message("user", f"Rate item {i}."),),
                              json_schema=SCHEMA, n=2, temperature=0.8, seed=i, max_tokens=24)
            for i in range(4)]

    async def go() -> list:
        backend = OpenAIBackend(APIClientConfig(base_url=url, model="tiny", api_key_env=None,
                                                timeout=300))
        try:
            return await backend.generate(reqs)
        finally:
            await backend.close()

    results = asyncio.run(go())
    assert [r.id for r in results] == [q.id for q in reqs]
    for r in results:
        assert r.ok, r.failure
        assert len(r.samples) == 2
        assert all(0 <= json.loads(s.text)["score"] <= 100 for s in r.samples)


def openai_args(url: str) -> list[str]:
    return ["--backend", "openai", "--base-url", url, "--model", "tiny", "--api-key-env",
            "none", "--no-ray", "--request-timeout", "300"]


def test_sweep_scores_every_item_then_sends_nothing(
        server: tuple[str, subprocess.Popen[bytes]], tmp_path: Path) -> None:
    url, _ = server
    first = sweep(tmp_path / "run1", tmp_path / "cache", *openai_args(url))
    assert first.returncode == 0, first.stderr[-3000:]
    scored, failed = completed_and_failed(tmp_path / "run1")
    assert failed == 0 and scored == 4 * 2
    again = sweep(tmp_path / "run2", tmp_path / "cache", *openai_args(url))
    assert again.returncode == 0, again.stderr[-3000:]
    assert requests_sent(tmp_path / "run2") == 0


def test_server_killed_mid_sweep_ends_the_sweep(
        doomed_server: tuple[str, subprocess.Popen[bytes]], tmp_path: Path) -> None:
    url, proc = doomed_server
    cmd = [sys.executable, "-m", "pluralign", "sweep", "--benchmark",
           "synthetic:S=200,R=2,A=2,seed=4", "--scorer", "comparative-regression",
           "--zero-shot", "--max-tokens", "200", "--targets", "all", "--cache",
           str(tmp_path / "cache"), "--out", str(tmp_path / "run"), "--max-retries", "1",
           "--concurrency", "2", *openai_args(url)]
    log = (tmp_path / "sweep.log").open("w")
    sweep_proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=os.environ)
    try:
        time.sleep(15)  # let it send (and get answers) first
        assert sweep_proc.poll() is None, (tmp_path / "sweep.log").read_text()[-2000:]
        proc.kill()
        killed = time.monotonic()
        rc = sweep_proc.wait(timeout=300)  # a hang fails here
        took = time.monotonic() - killed
    finally:
        if sweep_proc.poll() is None:
            sweep_proc.kill()
        log.close()
    text = (tmp_path / "sweep.log").read_text()
    print(f"sweep ended {took:.1f} s after the server was killed, rc={rc}: {text[-400:]}")
    assert rc != 0, text[-2000:]  # 200 scenarios cannot all have been scored
