"""The query service reads only what it serves: benchmark, split and scorer are names from a
fixed list, never paths; synthetic benchmarks only within the operator's cap; data it lacks is a
404 that names no folder; the token is checked before a byte of the body is read, and a body
that trickles in is cut off at the deadline. Real HTTP on loopback (uvicorn)."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

from pluralign.engine.data.sources import load_benchmark
from pluralign.engine.scorers import get_scorer, score_through_cache
from pluralign.engine.store.cache import ScoreCache
from pluralign.jobs.serve.http import handle, make_app
from pluralign.jobs.serve.query import Limits, QueryService
from tests.jobs.http_json import call_json, serving

BENCH = "synthetic:S=20,R=2-3,A=3,L=5,seed=5"
TOKEN = "hardening-token-9e2d"


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("hard-cache")
    score_through_cache(get_scorer("random", seed=2), load_benchmark(BENCH, "eval"),
                        ScoreCache(root))
    return root


@pytest.fixture(scope="module")
def secret_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder outside the service's data and cache, holding a JSON file a request must
    never reach."""
    root = tmp_path_factory.mktemp("elsewhere")
    (root / "secret.json").write_text('[{"id": "x", "prompt": "p", "responses": []}]')
    return root


def _service(cache_dir: Path, data: Path | None = None, **limits: Any) -> QueryService:
    return QueryService(cache_dir, None if data is None else str(data),
                        limits=Limits(body_seconds=1.0, **limits))


def _ask(service: QueryService, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    import json

    status, answer = handle(service, None, "POST", "/v1/align", None,
                            json.dumps(body).encode())
    return status, dict(answer)


def test_a_split_is_a_name_never_a_path(cache_dir: Path, secret_dir: Path,
                                        tmp_path: Path) -> None:
    service = _service(cache_dir, tmp_path)
    up = "../" * 12 + str(secret_dir / "secret").lstrip("/")
    status, out = _ask(service, {"benchmark": "helpsteer2", "split": up, "targets": ["high"]})
    assert status == 400 and "split" in out["error"]
    assert str(secret_dir) not in out["error"] and "secret" not in out["error"]


@pytest.mark.parametrize("name", ["synthetic/../../../../{}", "{}", "helpsteer2-raw:{}",
                                  "mic.json", "./helpsteer2"])
def test_a_benchmark_is_a_name_never_a_path(cache_dir: Path, secret_dir: Path,
                                            name: str) -> None:
    """Refused by name: the answer for a file that exists is the answer for one that does
    not (no existence or content oracle)."""
    service = _service(cache_dir)
    there = name.format(secret_dir / "secret.json")
    nowhere = name.format(secret_dir / "nothing.json")
    status, out = _ask(service, {"benchmark": there, "targets": ["high"]})
    assert status == 400 and "benchmark" in out["error"]
    other = _ask(service, {"benchmark": nowhere, "targets": ["high"]})
    assert other == (status, {"error": out["error"].replace(there[:40], nowhere[:40])})


def test_synthetic_benchmarks_only_within_the_operators_cap(cache_dir: Path) -> None:
    body = {"benchmark": BENCH, "scorer": "random", "seed": 2, "targets": [{"a0": 1}]}
    status, out = _ask(_service(cache_dir), body)
    assert status == 400 and "not served" in out["error"]
    assert _ask(_service(cache_dir, max_synthetic_scenarios=20), body)[0] == 200
    big = {**body, "benchmark": "synthetic:S=1000000,seed=7"}
    status, out = _ask(_service(cache_dir, max_synthetic_scenarios=20), big)
    assert status == 413 and "1,000,000" in out["error"]


def test_missing_data_is_404_and_names_no_folder(cache_dir: Path, tmp_path: Path) -> None:
    empty = tmp_path / "no-data-here"
    empty.mkdir()
    status, out = _ask(_service(cache_dir, empty),
                       {"benchmark": "helpsteer2", "split": "eval", "targets": ["high"]})
    assert status == 404, out
    assert str(tmp_path) not in out["error"] and "no-data-here" not in out["error"]


@pytest.mark.parametrize("field, value", [
    ("samples", 10**30), ("samples", 0), ("seed", -1), ("seed", 2**70),
    ("scorer", "predictions:/etc/passwd"), ("scorer", "comparative-regression"),
    ("scorer_id", "../../etc/passwd"), ("value", float("inf")), ("limit", 0),
])
def test_every_numeric_and_name_field_is_checked(cache_dir: Path, field: str,
                                                 value: object) -> None:
    body = {"benchmark": BENCH, "scorer": "random", "seed": 2, "targets": [{"a0": 1}],
            field: value}
    status, out = _ask(_service(cache_dir, max_synthetic_scenarios=20), body)
    assert status == 400 and field in out["error"], out


def test_a_target_value_off_any_fine_grid_is_a_400(cache_dir: Path) -> None:
    """Found by the fuzz test: 0.5470993563022928 fits no grid of 1/1,000,000 and used to
    fail the label index with a ValueError, a 500."""
    body = {"benchmark": BENCH, "scorer": "random", "seed": 2,
            "targets": [{"a0": 0.5470993563022928}]}
    status, out = _ask(_service(cache_dir, max_synthetic_scenarios=20), body)
    assert status == 400 and "targets" in out["error"] and "grid" in out["error"], out


@pytest.fixture(scope="module")
def server(cache_dir: Path) -> Iterator[str]:
    service = QueryService(cache_dir, None, limits=Limits(body_seconds=1.0,
                                                          max_synthetic_scenarios=20))
    with serving(make_app(service, TOKEN)) as port:
        yield f"127.0.0.1:{port}"


def _raw(server: str, head: str, trickle: bytes = b"", gap: float = 0.0,
         timeout: float = 10.0) -> tuple[str, float]:
    """Send a request head, then ``trickle`` one byte every ``gap`` seconds; (the status line
    of the answer, seconds until it came)."""
    host, port = server.split(":")
    t0 = time.monotonic()
    with socket.create_connection((host, int(port)), timeout=timeout) as s:
        s.sendall(head.encode())
        s.settimeout(gap or timeout)
        for byte in trickle:
            try:
                s.sendall(bytes([byte]))
                first = s.recv(200)  # the server answered before the body ended
                if first:
                    return first.decode(errors="replace").splitlines()[0], time.monotonic() - t0
            except (TimeoutError, OSError) as e:
                if isinstance(e, TimeoutError):
                    continue
                break
        s.settimeout(timeout)
        data = s.recv(200)
    return data.decode(errors="replace").splitlines()[0], time.monotonic() - t0


def test_the_token_is_checked_before_the_body_is_read(server: str) -> None:
    """A request without the token is refused at once, though it promised 100 kB of body."""
    head = ("POST /v1/align HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            "Content-Length: 100000\r\n\r\n")
    line, seconds = _raw(server, head)
    assert " 401 " in line and seconds < 5


def test_a_body_that_trickles_in_is_cut_off(server: str) -> None:
    head = ("POST /v1/align HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Authorization: Bearer {TOKEN}\r\nContent-Length: 1000\r\n\r\n")
    line, _ = _raw(server, head, trickle=b"{" * 60, gap=0.1)
    assert " 408 " in line
    status, out = call_json(f"http://{server}/v1/align",
                            {"benchmark": BENCH, "scorer": "random", "seed": 2,
                             "targets": [{"a0": 1}]}, token=TOKEN)
    assert status == 200, out  # and the service goes on answering
