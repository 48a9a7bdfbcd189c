"""The vLLM replica on the real engine (the tiny random-weight model): schema-valid answers,
n samples per request, seeded sampling reproducible, the first token's log-probabilities,
answers cut at max_tokens reported as TRUNCATED, and a sweep through a Ray actor."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pluralign.engine.run.backend import FailureKind, GenerationRequest, Message
from tests.real_engine.conftest import ENGINE

SCHEMA = {"type": "object", "properties": {"score": {"type": "integer", "minimum": 0,
                                                     "maximum": 100}},
          "required": ["score"], "additionalProperties": False}


def request(i: int, seed: int | None) -> GenerationRequest:
    return GenerationRequest(id=f"r{i}", messages=(Message("system", "Rate from 0 to 100."),
                                                   Message("user", f"Item {i}: is this good?")),
                             json_schema=SCHEMA, n=2, temperature=0.8, seed=seed,
                             max_tokens=24)


def test_answers_are_schema_valid_with_n_samples(backend: Any) -> None:
    b, loop = backend
    results = loop.run_until_complete(b.generate([request(i, seed=None) for i in range(6)]))
    assert [r.id for r in results] == [f"r{i}" for i in range(6)]
    for r in results:
        assert r.ok, r.failure
        assert len(r.samples) == 2  # both completions, not only the last to finish
        for s in r.samples:
            assert 0 <= json.loads(s.text)["score"] <= 100 and s.parsed == json.loads(s.text)
        assert r.usage.prompt_tokens > 0 and r.usage.completion_tokens > 0


def test_seeded_sampling_is_reproducible(backend: Any) -> None:
    b, loop = backend
    first = loop.run_until_complete(b.generate([request(1, seed=11), request(2, seed=12)]))
    again = loop.run_until_complete(b.generate([request(1, seed=11), request(2, seed=12)]))
    other = loop.run_until_complete(b.generate([request(1, seed=99)]))
    texts = [[s.text for s in r.samples] for r in first]
    assert texts == [[s.text for s in r.samples] for r in again]
    assert all(r.ok for r in [*first, *again, *other])


def letter_request(i: int, k: int, *, temperature: float = 0.0, n: int = 1) -> GenerationRequest:
    """The survey judge's log-probability request: one unconstrained token, k alternatives."""
    return GenerationRequest(id=f"l{i}", messages=(
        Message("system", "Answer with the letter of one option only."),
        Message("user", f"Question {i}: which is better?\nA. tea\nB. coffee")),
        n=n, temperature=temperature, seed=5 + i, max_tokens=1, top_logprobs=k)


def test_top_logprobs_come_from_the_real_engine(backend: Any) -> None:
    b, loop = backend
    reqs = [letter_request(0, 3), letter_request(1, 3), letter_request(2, 3, temperature=1.0, n=2)]
    results = loop.run_until_complete(b.generate(reqs))
    for r in results:
        assert r.ok, r.failure
        for s in r.samples:
            top = s.top_logprobs
            assert top is not None and len(top) == 3, top
            assert all(math.isfinite(v) and v <= 0 for v in top.values()), top
            assert sum(math.exp(v) for v in top.values()) <= 1 + 1e-6
    greedy = results[0].samples[0]
    assert greedy.text == max(greedy.top_logprobs, key=greedy.top_logprobs.get)


def test_an_answer_cut_at_max_tokens_is_truncated_on_the_real_engine(backend: Any) -> None:
    b, loop = backend
    cut = dataclasses.replace(request(3, seed=3), n=1, max_tokens=2)
    [r] = loop.run_until_complete(b.generate([cut]))
    assert r.failure is not None and r.failure.kind is FailureKind.TRUNCATED, r.failure
    assert "raise `max_tokens`" in r.failure.message and r.attempts == 1
    assert r.usage.completion_tokens == 2


def sweep(out: Path, cache: Path, *extra: str, env: dict[str, str] | None = None,
          timeout: float = 900) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "pluralign", "sweep",
           "--benchmark", "synthetic:S=4,R=2,A=2,seed=3", "--scorer", "comparative-regression",
           "--zero-shot", "--max-tokens", "1200", "--targets", "all", "--cache", str(cache), "--out", str(out),
           *extra]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def requests_sent(out: Path) -> int:
    """The scheduler's request count from the sweep's summary."""
    found: list[int] = []

    def walk(v: Any) -> None:
        if isinstance(v, dict):
            if "requests" in v and "completed" in v and isinstance(v["requests"], int):
                found.append(v["requests"])
            for x in v.values():
                walk(x)
        elif isinstance(v, list):
            for x in v:
                walk(x)

    walk(json.loads((out / "summary.json").read_text()))
    assert found, "summary.json has no scheduling counts"
    return found[0]


def completed_and_failed(out: Path) -> tuple[int, int]:
    text = json.loads((out / "summary.json").read_text())

    def find(v: Any) -> dict[str, Any] | None:
        if isinstance(v, dict):
            if "completed" in v and "failed" in v and "cached" in v:
                return v
            for x in v.values():
                got = find(x)
                if got is not None:
                    return got
        return None

    got = find(text)
    assert got is not None
    return int(got["completed"]) + int(got["cached"]), int(got["failed"])


@pytest.mark.ray
@pytest.mark.slow
def test_sweep_through_a_ray_replica_scores_every_item_then_sends_nothing(
        tiny_model: Path, tmp_path: Path, ray_tmp: Path) -> None:
    args = ["--backend", "vllm", "--model", str(tiny_model),
            *[f"--engine-arg={k}={v}" for k, v in ENGINE.items()]]
    # ray_tmp (tests/conftest.py): short enough for Ray's sockets, removed even on a failure.
    env = {"RAY_TMPDIR": str(ray_tmp), "OMP_NUM_THREADS": "1"}
    first = sweep(tmp_path / "run1", tmp_path / "cache", *args, env=env)
    assert first.returncode == 0, first.stderr[-3000:]
    scored, failed = completed_and_failed(tmp_path / "run1")
    assert failed == 0 and scored == 4 * 2  # every (scenario, attribute) item
    again = sweep(tmp_path / "run2", tmp_path / "cache", *args, env=env)
    assert again.returncode == 0, again.stderr[-3000:]
    assert requests_sent(tmp_path / "run2") == 0
