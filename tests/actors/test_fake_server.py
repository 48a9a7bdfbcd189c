"""The fake server: schema-valid answers, auth, RPM 429 + Retry-After, injected faults, counters."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import urllib.error
import urllib.request
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pluralign.actors.backends.api_client import schema_errors
from pluralign.actors.testing.fake_server import (
    FakeOpenAIServer,
    FakeServerConfig,
    label_oracle_answerer,
    request_schema,
    value_for_schema,
)
from tests.fake_openai import FAKE_KEY, free_port

JUDGE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        letter: {
            "type": "object",
            "properties": {
                "reasoning": {"type": "string", "minLength": 1, "maxLength": 512},
                "score": {"type": "integer", "minimum": 0, "maximum": 100},
            },
            "required": ["reasoning", "score"],
            "additionalProperties": False,
        }
        for letter in "AB"
    },
    "required": ["A", "B"],
    "additionalProperties": False,
}
OTHER_SCHEMAS: list[dict[str, Any]] = [
    {"type": "object", "properties": {"choice": {"enum": ["A", "B"]},
                                      "why": {"type": "string", "maxLength": 5}},
     "required": ["choice", "why"]},
    {"type": "array", "items": {"type": "number", "minimum": -1, "maximum": 1},
     "minItems": 2, "maxItems": 4},
    {"type": "object", "properties": {"x": {"const": 3}, "ok": {"type": "boolean"},
                                      "n": {"anyOf": [{"type": "null"}, {"type": "integer"}]}}},
]


def post(url: str, body: Any, key: str | None = FAKE_KEY) -> tuple[int, dict[str, str], bytes]:
    data = json.dumps(body).encode()
    req = urllib.request.Request(f"{url}/chat/completions", data=data, method="POST",
                                 headers={"Content-Type": "application/json"})
    if key:
        req.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def chat(schema: Any = None, n: int = 1, text: str = "hello") -> dict[str, Any]:
    body: dict[str, Any] = {"model": "m", "messages": [{"role": "user", "content": text}], "n": n}
    if schema is not None:
        body["response_format"] = {"type": "json_schema", "json_schema": {"name": "a",
                                                                          "schema": schema}}
    return body


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), which=st.integers(0, len(OTHER_SCHEMAS)))
def test_schema_walk_is_valid(seed: int, which: int) -> None:
    schema = ([JUDGE_SCHEMA, *OTHER_SCHEMAS])[which]
    value = value_for_schema(schema, random.Random(seed))
    assert schema_errors(value, schema) == []
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.validate(value, schema)  # the independent validator agrees


def test_request_schema_reads_every_dialect() -> None:
    s = {"type": "integer"}
    assert request_schema(chat(s)) == s
    assert request_schema({"guided_json": s}) == s
    assert request_schema({"guided_json": json.dumps(s)}) == s
    assert request_schema({"structured_outputs": {"json": s}}) == s
    assert request_schema({"messages": []}) is None


def test_answers_are_schema_valid_with_n_choices_and_usage(fake_server: FakeOpenAIServer) -> None:
    status, _, raw = post(fake_server.url, chat(JUDGE_SCHEMA, n=3, text="one two three four"))
    assert status == 200
    data = json.loads(raw)
    assert len(data["choices"]) == 3
    for choice in data["choices"]:
        assert schema_errors(json.loads(choice["message"]["content"]), JUDGE_SCHEMA) == []
    assert data["usage"]["prompt_tokens"] == round(4 * 1.3)
    assert data["usage"]["completion_tokens"] > 0


def test_vllm_structured_field_is_honoured(fake_server: FakeOpenAIServer) -> None:
    schema = OTHER_SCHEMAS[1]
    body = {**chat(), "structured_outputs": {"json": schema}}
    status, _, raw = post(fake_server.url, body)
    assert status == 200
    assert schema_errors(json.loads(json.loads(raw)["choices"][0]["message"]["content"]),
                         schema) == []


def test_requires_a_bearer_key_and_stores_only_its_hash(fake_server: FakeOpenAIServer) -> None:
    assert post(fake_server.url, chat(), key=None)[0] == 401
    assert post(fake_server.url, chat(), key=FAKE_KEY)[0] == 200
    stats = fake_server.stats()
    assert stats["by_status"] == {"200": 1, "401": 1}
    assert len(stats["key_hashes"]) == 1
    assert FAKE_KEY not in json.dumps(stats)


def test_rpm_limit_answers_429_with_retry_after(make_fake_server: Any) -> None:
    server = make_fake_server(rpm=3, rpm_window=60.0)
    statuses = [post(server.url, chat(text=f"q{i}")) for i in range(5)]
    assert [s for s, _, _ in statuses] == [200, 200, 200, 429, 429]
    retry_after = float(statuses[3][1]["Retry-After"])
    assert 0 < retry_after <= 60.0
    # Another key has its own window.
    assert post(server.url, chat(), key="sk-other")[0] == 200


@pytest.mark.parametrize(("fault", "expected"), [
    ("fault_429", {429}), ("fault_5xx", {500, 502, 503}), ("fault_malformed", {200}),
    ("fault_bad_content", {200}),
])
def test_injected_faults_are_served_and_counted(make_fake_server: Any, fault: str,
                                                expected: set[int]) -> None:
    server = make_fake_server(**{fault: 1.0})
    replies = [post(server.url, chat(JUDGE_SCHEMA, text=f"q{i}")) for i in range(4)]
    assert {s for s, _, _ in replies} <= expected
    stats = server.stats()
    assert stats["total"] == 4
    assert all(ev["fault"] == fault.removeprefix("fault_") for ev in stats["events"])
    if fault == "fault_malformed":
        with pytest.raises(json.JSONDecodeError):
            json.loads(replies[0][2])
    if fault == "fault_bad_content":
        content = json.loads(replies[0][2])["choices"][0]["message"]["content"]
        with pytest.raises(json.JSONDecodeError):
            json.loads(content)
    if fault == "fault_429":
        assert "Retry-After" in replies[0][1]


def test_real_engine_faults_garble_answers_as_engines_do(make_fake_server: Any) -> None:
    from pluralign.engine.judges.base import loads_answer

    server = make_fake_server(fault_control_chars=1.0)
    _, _, raw = post(server.url, chat(JUDGE_SCHEMA))
    content = json.loads(raw)["choices"][0]["message"]["content"]
    assert "\t\x15" in content  # raw, not escaped
    with pytest.raises(json.JSONDecodeError):
        json.loads(content)  # a strict parser refuses it
    assert schema_errors(loads_answer(content), JUDGE_SCHEMA) == []

    server.configure(fault_control_chars=0.0, fault_fenced=1.0)
    _, _, raw = post(server.url, chat(JUDGE_SCHEMA))
    content = json.loads(raw)["choices"][0]["message"]["content"]
    assert content.lstrip().startswith("```json") and content != content.strip()
    assert schema_errors(loads_answer(content), JUDGE_SCHEMA) == []

    server.configure(fault_fenced=0.0, fault_truncated=1.0)
    _, _, raw = post(server.url, chat(JUDGE_SCHEMA))
    choice = json.loads(raw)["choices"][0]
    assert choice["finish_reason"] == "length"
    with pytest.raises(json.JSONDecodeError):
        loads_answer(choice["message"]["content"])
    assert server.stats()["ok_by_fingerprint"]  # a cut answer is still a paid one


def test_reset_fault_drops_the_connection_after_counting(make_fake_server: Any) -> None:
    server = make_fake_server(fault_reset=1.0)
    with pytest.raises((urllib.error.URLError, ConnectionError, OSError)):
        post(server.url, chat())
    stats = server.stats()
    assert stats["total"] == 1 and stats["events"][0]["fault"] == "reset"
    assert stats["ok_by_fingerprint"] == {}


def test_stalled_request_outlives_a_short_client_timeout(make_fake_server: Any) -> None:
    server = make_fake_server(fault_timeout=1.0, timeout_sleep=5.0)
    req = urllib.request.Request(f"{server.url}/chat/completions", method="POST",
                                 data=json.dumps(chat()).encode(),
                                 headers={"Authorization": f"Bearer {FAKE_KEY}"})
    with pytest.raises(TimeoutError):
        urllib.request.urlopen(req, timeout=0.3)


def test_counts_by_fingerprint_and_resets_over_http(fake_server: FakeOpenAIServer) -> None:
    for text in ("a", "a", "b"):
        post(fake_server.url, chat(text=text))
    with urllib.request.urlopen(f"{fake_server.url.removesuffix('/v1')}/fake/stats") as r:
        stats = json.loads(r.read())
    assert sorted(stats["ok_by_fingerprint"].values()) == [1, 2]
    urllib.request.urlopen(urllib.request.Request(
        f"{fake_server.url.removesuffix('/v1')}/fake/reset", method="POST", data=b""))
    assert fake_server.stats()["total"] == 0


def test_max_choices_caps_n(make_fake_server: Any) -> None:
    server = make_fake_server(max_choices=1)
    data = json.loads(post(server.url, chat(n=4))[2])
    assert len(data["choices"]) == 1


def test_label_oracle_returns_scaled_true_scores_without_noise(make_fake_server: Any) -> None:
    truth = {"[item-7]": {"A.score": 0.25, "B.score": 1.0}}
    server = make_fake_server(answerer=label_oracle_answerer(truth, noise=0.0))
    data = json.loads(post(server.url, chat(JUDGE_SCHEMA, text="rate [item-7] please"))[2])
    answer = json.loads(data["choices"][0]["message"]["content"])
    assert (answer["A"]["score"], answer["B"]["score"]) == (25, 100)
    assert schema_errors(answer, JUDGE_SCHEMA) == []


def test_label_oracle_noise_is_seeded_and_clipped() -> None:
    truth = {"m": {"A.score": 0.9}}
    body = chat(JUDGE_SCHEMA, text="m")
    a = [label_oracle_answerer(truth, noise=0.5, seed=3)(body) for _ in range(2)]
    assert a[0] == a[1]
    scores = [json.loads(label_oracle_answerer(truth, noise=0.5, seed=s)(body))["A"]["score"]
              for s in range(30)]
    assert all(0 <= x <= 100 for x in scores) and len(set(scores)) > 1


@pytest.mark.parametrize("host", ["0.0.0.0", "8.8.8.8", "example.invalid"])
def test_refuses_non_loopback_addresses(host: str) -> None:
    with pytest.raises(ValueError, match="loopback"):
        FakeServerConfig(host=host)


def test_forced_status(make_fake_server: Any) -> None:
    server = make_fake_server(force_status=413)
    assert post(server.url, chat())[0] == 413


def test_cli_runs_the_server_and_prints_its_url() -> None:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "pluralign", "fake-server", "--port", str(port),
                             "--no-auth"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True)
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert url == f"http://127.0.0.1:{port}/v1"
        with urllib.request.urlopen(f"{url}/models", timeout=10) as r:
            assert json.loads(r.read())["data"][0]["id"] == "fake-model"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_cli_rejects_a_bad_share() -> None:
    out = subprocess.run([sys.executable, "-m", "pluralign", "fake-server", "--fault-5xx", "2"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "--fault-5xx" in out.stderr
