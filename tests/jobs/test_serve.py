"""``pluralign serve``: real HTTP on loopback (uvicorn), a real score cache on disk; answers
equal the engine's, bad requests get 400/401/413 and the service keeps answering."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

from pluralign.engine.align.realign import chosen_responses, realign
from pluralign.engine.data.sources import load_benchmark
from pluralign.engine.data.targets import all_targets, from_dicts
from pluralign.engine.scorers import get_scorer, score_through_cache
from pluralign.engine.store.cache import ScoreCache
from pluralign.jobs.serve.http import check_bind, make_app
from pluralign.jobs.serve.query import Limits, QueryService
from tests.jobs.http_json import call_json

BENCH = "synthetic:S=40,R=2-4,A=3,L=5,seed=3"
TOKEN = "test-token-4f1c"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("serve-cache")
    bench = load_benchmark(BENCH, "eval")
    score_through_cache(get_scorer("random", seed=1), bench, ScoreCache(root))
    return root


@pytest.fixture(scope="module")
def server(cache_dir: Path) -> Iterator[str]:
    import uvicorn

    service = QueryService(cache_dir, None, lru=4, limits=Limits(max_body=4096, max_targets=100))
    port = _free_port()
    config = uvicorn.Config(make_app(service, TOKEN), host="127.0.0.1", port=port,
                            log_level="warning", access_log=False)
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.time() + 20
    while not srv.started and time.time() < deadline:
        time.sleep(0.05)
    assert srv.started, "server did not start"
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(timeout=10)


def _call(url: str, path: str, body: Any = None, *, token: str | None = TOKEN,
          raw: bytes | None = None) -> tuple[int, dict[str, Any]]:
    return call_json(url + path, body, token=token, raw=raw)


def _ok(url: str) -> None:
    """The service still answers a good query after a bad one."""
    status, out = _call(url, "/v1/align", {"benchmark": BENCH, "scorer": "random", "seed": 1,
                                           "targets": [{"a0": 1}]})
    assert status == 200 and out["targets"][0]["counted"] > 0


def test_answers_equal_the_engine(server: str, cache_dir: Path) -> None:
    bench = load_benchmark(BENCH, "eval")
    preds = ScoreCache(cache_dir).predictions(
        bench, get_scorer("random", seed=1).identity(bench, None))
    target = {"a0": 0.75, "a2": 0.25}
    status, out = _call(server, "/v1/align", {"benchmark": BENCH, "scorer": "random", "seed": 1,
                                              "targets": [target], "per_scenario": True})
    assert status == 200, out
    ts = from_dicts("q", bench.attributes, [target])
    res = realign(bench, preds, ts, weighted=True)
    row = out["targets"][0]
    assert (row["counted"], row["correct"]) == (int(res.counted[0]), int(res.correct[0]))
    assert row["weighted_score"] == pytest.approx(float(res.weighted[0]), abs=0)
    assert row["chosen"] == chosen_responses(bench, preds, ts)[:, 0].tolist()
    assert out["scenario_ids"] == [s.id for s in bench.scenarios]
    # A set name counts its targets: all 5**3 = 125 of the grid exceed this server's 100.
    status, out = _call(server, "/v1/align", {"benchmark": BENCH, "scorer": "random", "seed": 1,
                                              "targets": ["all"]})
    assert status == 413 and "125 targets" in out["error"]
    _ok(server)


def test_health_and_scorers(server: str) -> None:
    status, out = _call(server, "/healthz", token=None)
    assert status == 200 and out["status"] == "ok"
    status, out = _call(server, "/v1/scorers")
    assert status == 200
    names = {(r["benchmark"].split("/")[0], r["name"]) for r in out["scorers"]}
    assert any(name == "random" for _, name in names), out


@pytest.mark.parametrize("body, field", [
    ({"scorer": "random", "targets": [{"a0": 1}]}, "benchmark"),
    ({"benchmark": BENCH, "targets": []}, "targets"),
    ({"benchmark": BENCH, "targets": [{"zz": 1}]}, "zz"),
    ({"benchmark": BENCH, "targets": ["/etc/passwd"]}, "targets[0]"),
    ({"benchmark": BENCH, "targets": [{"a0": 1}], "limit": "3"}, "limit"),
    ({"benchmark": BENCH, "targets": [{"a0": 1}], "colour": 1}, "colour"),
    ({"benchmark": "../x.json", "targets": [{"a0": 1}]}, "benchmark"),
])
def test_bad_requests_get_400_naming_the_field(server: str, body: dict[str, Any],
                                               field: str) -> None:
    status, out = _call(server, "/v1/align", body)
    assert status == 400, out
    assert field in out["error"] and "\n" not in out["error"]
    _ok(server)


def test_not_json_is_400(server: str) -> None:
    status, out = _call(server, "/v1/align", raw=b"{not json")
    assert status == 400 and "body" in out["error"]
    status, out = _call(server, "/v1/align", raw=b"[" * 3000 + b"]" * 3000)
    assert status in (400, 413)
    _ok(server)


def test_unauthenticated_is_401(server: str) -> None:
    body = {"benchmark": BENCH, "scorer": "random", "seed": 1, "targets": [{"a0": 1}]}
    assert _call(server, "/v1/align", body, token=None)[0] == 401
    assert _call(server, "/v1/align", body, token="wrong")[0] == 401
    assert _call(server, "/v1/scorers", token=None)[0] == 401
    _ok(server)


def test_oversized_is_413(server: str) -> None:
    big = {"benchmark": BENCH, "targets": [{"a0": 1}], "pad": "x" * 5000}
    status, out = _call(server, "/v1/align", big)
    assert status == 413 and "body" in out["error"]
    many = {"benchmark": BENCH, "scorer": "random", "seed": 1,
            "targets": [{"a0": 0.25 * (i % 5)} for i in range(201)]}
    status, out = _call(server, "/v1/align", many)
    assert status == 413 and "limit" in out["error"]
    _ok(server)


def test_new_cache_parts_are_picked_up_without_restart(server: str, cache_dir: Path) -> None:
    body = {"benchmark": BENCH, "scorer": "constant", "value": 0.25, "targets": [{"a1": 0}]}
    status, out = _call(server, "/v1/align", body)
    assert status == 404 and "sweep" in out["error"]
    bench = load_benchmark(BENCH, "eval")
    score_through_cache(get_scorer("constant", value=0.25), bench, ScoreCache(cache_dir))
    status, out = _call(server, "/v1/align", body)
    assert status == 200 and out["targets"][0]["counted"] > 0


def test_all_targets_through_a_roomier_service(cache_dir: Path) -> None:
    service = QueryService(cache_dir, None)
    bench = load_benchmark(BENCH, "eval")
    out = service.align({"benchmark": BENCH, "scorer": "random", "seed": 1, "targets": ["all"]})
    grid = all_targets(bench.attributes, bench.levels)
    preds = ScoreCache(cache_dir).predictions(bench, get_scorer("random", seed=1)
                                              .identity(bench, None))
    res = realign(bench, preds, grid, weighted=True)
    assert [r["correct"] for r in out["targets"]] == res.correct.tolist()
    assert np.allclose([r["weighted_score"] if r["weighted_score"] is not None else np.nan
                        for r in out["targets"]], res.weighted, equal_nan=True, rtol=0, atol=0)


def test_beyond_loopback_needs_a_token(tmp_path: Path) -> None:
    from pluralign.engine.errors import PluralignError

    check_bind("127.0.0.1", None)
    check_bind("::1", None)
    with pytest.raises(PluralignError, match="without a bearer token"):
        check_bind("0.0.0.0", None)
    check_bind("0.0.0.0", "tok")
    env = {"PATH": "/usr/bin:/bin", "PLURALIGN_OFFLINE": "1", "HOME": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-m", "pluralign", "serve", "--host",
                           "0.0.0.0", "--cache", str(tmp_path)], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    lines = [x for x in proc.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and "without a bearer token" in lines[0], proc.stderr


def test_align_cli_memory_budget_gives_the_same_answer(cache_dir: Path, tmp_path: Path) -> None:
    outs = []
    for extra in ([], ["--memory-budget", "1M"]):
        out = tmp_path / f"a{len(extra)}.json"
        proc = subprocess.run([sys.executable, "-m", "pluralign", "align", "--benchmark",
                               BENCH, "--scorer", "random", "--seed", "1", "--cache",
                               str(cache_dir), "--targets", "all", "--out", str(out), *extra],
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        outs.append(json.loads(out.read_text())["targets"])
    assert outs[0] == outs[1] and len(outs[0]) == 125
    bad = subprocess.run([sys.executable, "-m", "pluralign", "align", "--benchmark",
                          BENCH, "--cache", str(cache_dir), "--targets", "all",
                          "--memory-budget", "lots"], capture_output=True, text=True,
                         timeout=300)
    assert bad.returncode != 0 and ("memory-budget" in bad.stderr or "memory_budget" in bad.stderr)


def test_lru_bounds_entries_and_bytes() -> None:
    from pluralign.jobs.serve.query import LRU

    lru = LRU(3, weigh=len, max_weight=10)
    for k in "abc":
        lru.get(k, lambda k=k: k * 2)
    assert len(lru) == 3
    lru.get("d", lambda: "dd")  # a fourth entry: the oldest goes
    assert len(lru) == 3 and lru.get("a", lambda: "new") == "new"
    lru.get("big", lambda: "x" * 9)  # 9 + the rest > 10: older entries go, the newest stays
    assert len(lru) == 1 and lru.get("big", lambda: "other") == "x" * 9
    assert lru.hits == 1
