"""Fuzzing the query service's request schema over real HTTP (uvicorn on loopback): queries
built from the schema's fields with right and wrong types and edge values, arbitrary JSON,
arbitrary bytes, and other methods and paths. Every answer must be a JSON object with a 2xx
or 4xx status (an error names one line), never a 5xx, and the service keeps serving."""

from __future__ import annotations

import http.client
import json
import math
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("uvicorn")
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pluralign.engine.data.sources import load_benchmark
from pluralign.engine.data.target_sets import TARGET_SET_NAMES
from pluralign.engine.scorers import get_scorer, score_through_cache
from pluralign.engine.store.cache import ScoreCache
from pluralign.jobs.serve.http import make_app
from pluralign.jobs.serve.query import QUERY_FIELDS, Limits, QueryService
from tests.jobs.http_json import serving

BENCH = "synthetic:S=12,R=2-3,A=2,L=3,seed=4"
TOKEN = "fuzz-token-51c0"
CASES = {"valid": 250, "queries": 300, "json": 150, "bytes": 100, "routes": 100}
"""Examples per strategy (fixed, derandomized: the same cases every run)."""
FUZZ = settings(deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


class Client:
    """One keep-alive connection to the service, reopened when the server closes it."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.conn = http.client.HTTPConnection(host, port, timeout=30)
        self.statuses: Counter[int] = Counter()

    def call(self, method: str, path: str, body: bytes | None,
             token: str | None = TOKEN) -> tuple[int, bytes]:
        headers = {"Content-Type": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        for attempt in range(2):
            try:
                self.conn.request(method, path, body=body, headers=headers)
                resp = self.conn.getresponse()
                data = resp.read()
                if resp.getheader("connection", "").lower() == "close":
                    self.conn.close()
                self.statuses[resp.status] += 1
                return resp.status, data
            except (http.client.HTTPException, ConnectionError):
                self.conn.close()
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
                if attempt:
                    raise
        raise AssertionError("unreachable")


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    root = tmp_path_factory.mktemp("fuzz-cache")
    score_through_cache(get_scorer("random", seed=0), load_benchmark(BENCH, "eval"),
                        ScoreCache(root))
    service = QueryService(root, None, limits=Limits(body_seconds=2.0, max_targets=2_000,
                                                     max_synthetic_scenarios=50))
    with serving(make_app(service, TOKEN), log_level="critical") as port:
        c = Client("127.0.0.1", port)
        yield c
        print(f"\nfuzz: {c.statuses.total()} requests answered, by status: "
              f"{dict(sorted(c.statuses.items()))}")


def check(status: int, data: bytes) -> dict[str, Any]:
    """A 2xx or 4xx JSON object; an error is one line."""
    assert 200 <= status < 300 or 400 <= status < 500, (status, data[:300])
    obj = json.loads(data)
    assert isinstance(obj, dict), data[:300]
    if status >= 400:
        assert isinstance(obj.get("error"), str) and "\n" not in obj["error"], obj
    return obj


def _json_text(obj: object) -> bytes:
    return json.dumps(obj).encode()  # NaN and Infinity go out as Python writes them


edge_numbers = st.one_of(
    st.integers(), st.integers(min_value=-3, max_value=3),
    st.sampled_from([0, -1, 1, 2**31, 2**63, 2**64, 10**30, -(2**63)]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, 1e308, -1e308, 5e-324, math.inf, -math.inf, math.nan]))
anything = st.recursive(
    st.one_of(st.none(), st.booleans(), edge_numbers, st.text(max_size=20)),
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12)
names = st.one_of(
    st.sampled_from([BENCH, "helpsteer2", "mic", "synthetic", "synthetic:S=10000",
                     "synthetic:S=20,A=2,L=3", "synthetic:S=-1", "synthetic:bogus",
                     "../../etc/passwd", "synthetic/../../x", "", "random", "ridge",
                     "oracle", "eval", "train", "test", "random#bd0488843468"]),
    st.text(max_size=30))
target = st.one_of(
    st.dictionaries(st.sampled_from(["a0", "a1", "a2", "helpfulness", ""]),
                    st.one_of(edge_numbers, st.text(max_size=5), st.none()), max_size=3),
    st.sampled_from(list(TARGET_SET_NAMES)), anything)
FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "benchmark": st.one_of(names, anything), "split": st.one_of(names, anything),
    "limit": st.one_of(edge_numbers, anything), "scorer": st.one_of(names, anything),
    "scorer_id": st.one_of(names, anything), "seed": st.one_of(edge_numbers, anything),
    "value": st.one_of(edge_numbers, anything), "samples": st.one_of(edge_numbers, anything),
    "targets": st.one_of(st.lists(target, max_size=5), target),
    "per_scenario": st.one_of(st.booleans(), anything),
    "weighted": st.one_of(st.booleans(), anything),
}
query = st.fixed_dictionaries(
    {"benchmark": st.one_of(st.just(BENCH), FIELDS["benchmark"]),
     "targets": st.one_of(st.lists(target, min_size=1, max_size=4), FIELDS["targets"])},
    optional={**{k: v for k, v in FIELDS.items() if k not in ("benchmark", "targets")},
              "unknown": anything})

well_typed = st.fixed_dictionaries(
    {"benchmark": st.just(BENCH), "scorer": st.just("random"),
     "targets": st.lists(st.one_of(
         st.dictionaries(st.sampled_from(["a0", "a1"]),
                         st.one_of(st.floats(min_value=-1, max_value=2), edge_numbers),
                         min_size=1, max_size=2),
         st.sampled_from(list(TARGET_SET_NAMES))), min_size=1, max_size=3)},
    optional={"seed": st.sampled_from([0, 0, 0, 1]), "split": st.sampled_from(["eval", "train"]),
              "limit": st.integers(min_value=-1, max_value=30),
              "samples": st.integers(min_value=-1, max_value=3),
              "value": edge_numbers, "per_scenario": st.booleans(),
              "weighted": st.booleans()})
"""Right types, edge values: most of these reach the re-alignment itself."""


@settings(FUZZ, max_examples=CASES["valid"])
@given(body=well_typed)
def test_well_typed_queries_with_edge_values_answer_2xx_or_4xx_json(
        client: Client, body: dict[str, Any]) -> None:
    check(*client.call("POST", "/v1/align", _json_text(body)))


@settings(FUZZ, max_examples=CASES["queries"])
@given(body=query)
def test_schema_shaped_queries_answer_2xx_or_4xx_json(client: Client,
                                                      body: dict[str, Any]) -> None:
    check(*client.call("POST", "/v1/align", _json_text(body)))


@settings(FUZZ, max_examples=CASES["json"])
@given(body=anything)
def test_any_json_body_answers_2xx_or_4xx_json(client: Client, body: object) -> None:
    check(*client.call("POST", "/v1/align", _json_text(body)))


@settings(FUZZ, max_examples=CASES["bytes"])
@given(body=st.binary(max_size=300))
def test_any_bytes_answer_4xx_json(client: Client, body: bytes) -> None:
    status, data = client.call("POST", "/v1/align", body)
    check(status, data)


@settings(FUZZ, max_examples=CASES["routes"])
@given(method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]),
       path=st.one_of(st.sampled_from(["/v1/align", "/v1/align/", "/v1/scorers", "/healthz",
                                       "/v1", "/v1/align/x", "//v1/align", "/healthz/"]),
                      st.text(alphabet="/abcdefghijklmnopqrstuvwxyz0123456789._-%",
                              max_size=30).map(lambda p: "/" + p)),
       token=st.sampled_from([TOKEN, None, "wrong", ""]))
def test_any_route_method_and_token_answer_json(client: Client, method: str, path: str,
                                                token: str | None) -> None:
    body = _json_text({"benchmark": BENCH, "targets": ["all"]}) if method != "GET" else None
    status, data = client.call(method, path, body, token)
    if status == 200 and data[:1] != b"{":  # the viewer's page (GET /)
        return
    check(status, data)


def test_the_openapi_description_is_public_and_names_every_field(client: Client) -> None:
    status, data = client.call("GET", "/openapi.json", None, token=None)
    doc = check(status, data)
    schema = doc["components"]["schemas"]["AlignRequest"]
    assert status == 200 and doc["openapi"].startswith("3.")
    assert set(schema["properties"]) == QUERY_FIELDS
    assert set(doc["paths"]) >= {"/v1/align", "/v1/scorers", "/healthz"}


def test_the_service_still_answers_after_the_fuzzing(client: Client) -> None:
    status, data = client.call("POST", "/v1/align", _json_text(
        {"benchmark": BENCH, "scorer": "random", "seed": 0, "targets": [{"a0": 1.0}]}))
    assert status == 200, data[:300]
    assert check(status, data)["targets"][0]["accuracy"] is not None
