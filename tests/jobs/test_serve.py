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
from tests.jobs.http_json import call_json, serving

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
    service = QueryService(cache_dir, None, lru=4, limits=Limits(max_body=4096, max_targets=100,
                                                                 max_synthetic_scenarios=100))
    with serving(make_app(service, TOKEN)) as port:
        yield f"http://127.0.0.1:{port}"


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
    service = QueryService(cache_dir, None, limits=Limits(max_synthetic_scenarios=100))
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


# -- the jobs behind the commands: typed configs, a stop event, no signal handlers -------------
ALIGN_BODY = {"benchmark": BENCH, "scorer": "random", "seed": 1, "targets": [{"a0": 1}]}


def _wait_healthy(url: str, proc: subprocess.Popen[str], seconds: float) -> None:
    deadline = time.time() + seconds
    while time.time() < deadline and proc.poll() is None:
        try:
            if call_json(url + "/healthz", timeout=5)[0] == 200:
                return
        except (OSError, ValueError):  # not listening yet, or Ray's proxy not yet routing
            pass
        time.sleep(0.2)
    err = proc.stderr.read() if proc.poll() is not None and proc.stderr else ""
    raise AssertionError(f"no answer from {url}: {proc.poll()=} {err[-2000:]}")


def test_serve_job_stops_on_its_event_and_leaves_signal_handlers_alone(cache_dir: Path) -> None:
    import signal

    from pluralign.jobs.serve.job import ServeConfig, serve

    watched = (signal.SIGINT, signal.SIGTERM)
    before = {s: signal.getsignal(s) for s in watched}
    stop = threading.Event()
    seen: dict[str, Any] = {}
    guard = threading.Timer(60, stop.set)  # never hang the suite

    def ask(url: str) -> None:
        try:
            seen["answer"] = call_json(url + "/v1/align", ALIGN_BODY)
        finally:
            stop.set()

    def ready(url: str) -> None:
        seen["url"] = url
        seen["during"] = {s: signal.getsignal(s) for s in watched}
        threading.Thread(target=ask, args=(url,), daemon=True).start()

    guard.start()
    try:
        serve(ServeConfig(cache=str(cache_dir), port=_free_port(), lru=2,
                          max_synthetic_scenarios=100), stop=stop,
              on_ready=ready)
    finally:
        guard.cancel()
    assert seen["during"] == before == {s: signal.getsignal(s) for s in watched}
    status, out = seen["answer"]
    assert status == 200 and out["targets"][0]["counted"] > 0


def test_serve_command_stops_cleanly_on_sigterm(cache_dir: Path) -> None:
    import signal

    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "pluralign", "serve", "--cache",
                             str(cache_dir), "--port", str(port),
                             "--max-synthetic-scenarios", "100"], stderr=subprocess.PIPE,
                            text=True)
    try:
        _wait_healthy(f"http://127.0.0.1:{port}", proc, 60)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.stderr is not None and "Traceback" not in proc.stderr.read()


@pytest.mark.ray
@pytest.mark.slow
def test_serve_ray_command_stops_cleanly_on_sigterm(cache_dir: Path, tmp_path: Path) -> None:
    """Ray's init replaces the SIGTERM handler; the job puts the command line's back, so a
    SIGTERM still shuts Ray Serve and Ray down and exits 0."""
    import os
    import shutil
    import signal
    import tempfile

    pytest.importorskip("ray.serve")
    port = _free_port()
    short = tempfile.mkdtemp(prefix="plsv")  # Ray's socket paths must stay short
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "OMP_NUM_THREADS": "1",
           "RAY_TMPDIR": short}
    log = tmp_path / "serve.log"
    with log.open("w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "pluralign", "serve", "--ray", "--cache",
                                 str(cache_dir), "--port", str(port), "--autoscale", "1,1",
                                 "--max-synthetic-scenarios", "100"],
                                stderr=err, text=True, env=env)
    try:
        _wait_healthy(f"http://127.0.0.1:{port}", proc, 240)
        status, out = call_json(f"http://127.0.0.1:{port}/v1/align", ALIGN_BODY, timeout=60)
        assert status == 200, out
        deadline = time.monotonic() + 120  # the deployment reports RUNNING after it answers
        while "Ctrl-C stops" not in log.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=120) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        shutil.rmtree(short, ignore_errors=True)
    assert "autoscaling 1,1" in log.read_text()


def test_serve_flags_are_the_config_fields() -> None:
    from pluralign.jobs.cli import parse
    from pluralign.jobs.cli.flags import config_from_args
    from pluralign.jobs.serve.job import ServeConfig

    assert config_from_args(ServeConfig, parse(["serve"])) == ServeConfig()
    args = parse(["serve", "--host", "0.0.0.0", "--port", "1", "--token-file", "t", "--lru", "2",
                  "--max-body", "3", "--max-targets", "4", "--memory-budget", "2G", "--ray",
                  "--address", "auto", "--replicas", "5", "--autoscale", "1,3", "--cache", "c",
                  "--data", "d"])
    assert config_from_args(ServeConfig, args) == ServeConfig(
        cache="c", data="d", host="0.0.0.0", port=1, token_file="t", lru=2, max_body=3,
        max_targets=4, memory_budget=2 << 30, ray=True, address="auto", replicas=5,
        autoscale="1,3")
    with pytest.raises(SystemExit):
        parse(["serve", "--memory-budget", "lots"])


def test_serve_job_refuses_bad_settings_before_starting(tmp_path: Path) -> None:
    from pluralign.engine.errors import InputError, PluralignError
    from pluralign.jobs.serve.job import ServeConfig, autoscale_range, serve

    assert autoscale_range((1, 3)) == autoscale_range("1,3") == (1, 3)
    with pytest.raises(InputError, match="MIN <= MAX"):
        serve(ServeConfig(cache=str(tmp_path), ray=True, autoscale=(3, 1)))
    with pytest.raises(PluralignError, match="MY_TOKEN or pass `token_file`"):
        serve(ServeConfig(cache=str(tmp_path), host="0.0.0.0", token_env="MY_TOKEN"))


def test_align_job_equals_the_engine_and_the_command(cache_dir: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    from pluralign.jobs.align import AlignConfig, Alignment, SetAlignment, run_align
    from pluralign.jobs.cli import main
    from pluralign.jobs.configs import SplitConfig

    bench = load_benchmark(BENCH, "eval")
    preds = ScoreCache(cache_dir).predictions(bench, get_scorer("random", seed=1)
                                              .identity(bench, None))
    seen: list[str] = []

    def on_set(so_far: Alignment, s: SetAlignment) -> None:
        seen.append(s.targets.name)
        assert so_far.sets[-1] is s

    config = AlignConfig(splits=SplitConfig(benchmark=BENCH, cache=str(cache_dir)),
                         scorer="random", seed=1, targets=("all",), target=('{"a0": 1}',),
                         out=str(tmp_path / "api.json"))
    got = run_align(config, on_set=on_set)
    assert seen == ["all", "inline"]
    res = realign(bench, preds, all_targets(bench.attributes, bench.levels), weighted=True)
    assert [r["correct"] for r in got.sets[0].rows()] == res.correct.tolist()
    assert got.sets[0].chosen is not None and got.sets[0].chosen.shape == (40, 125)
    capsys.readouterr()
    assert main(["align", "--benchmark", BENCH, "--scorer", "random", "--seed", "1", "--cache",
                 str(cache_dir), "--targets", "all", "--target", '{"a0": 1}', "--out",
                 str(tmp_path / "cli.json")]) == 0
    api_out, cli_out = (json.loads((tmp_path / f).read_text()) for f in ("api.json", "cli.json"))
    for d in (api_out, cli_out):
        d.pop("manifest", None)
    assert api_out == cli_out and api_out["targets"] == got.rows()
    assert capsys.readouterr().out.count("accuracy") == 126


def test_align_flags_are_the_config_fields() -> None:
    from pluralign.jobs.align import AlignConfig
    from pluralign.jobs.cli import parse
    from pluralign.jobs.cli.align import config_of
    from pluralign.jobs.configs import SplitConfig

    assert config_of(parse(["align"])) == AlignConfig()
    got = config_of(parse(["align", "--targets", "all", "high", "--target", "a0=1", "--target",
                           "a1=0", "--memory-budget", "1M", "--shards", "2", "--out", "x.json",
                           "--scorer", "constant", "--value", "0.25", "--limit", "3",
                           "--cache", "c"]))
    assert got == AlignConfig(targets=("all", "high"), target=("a0=1", "a1=0"),
                              memory_budget=1 << 20, shards=2, out="x.json", scorer="constant",
                              value=0.25, splits=SplitConfig(limit=3, cache="c"))
    model = config_of(parse(["align", "--scorer", "regression", "--model", "m"]))
    assert model.llm is not None and model.llm.model == "m" and model.reward is None
    assert model.model_config() is model.llm
