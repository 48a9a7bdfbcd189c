"""Query service latency and throughput against ``pluralign align`` processes, same cache.

Scores HelpSteer2 eval (when the data is found) and the MIC-shaped synthetic benchmark with the
``random`` scorer into a fresh cache (the scorer does not change the cost of a query), then
starts ``pluralign serve`` as a real process on loopback — locally (one process) and as a Ray
Serve deployment with 1 and 2 replicas — and measures, per benchmark:

* single-target queries (targets drawn from the grid): p50/p99 latency over sequential
  queries, and queries/s with 4 concurrent clients;
* 1,000-target queries (5 distinct sets of 1,000 grid targets, cycled): the same;
* the same single-target query through ``pluralign align`` processes (start-up included).

Every figure is wall-clock on whatever else the machine runs. The last line is one JSON object.
* a burst of 2,000 queries over 32 connections (``--burst``, ``--burst-clients``): repeated
  queries, distinct ones (none answered before) and, where ApacheBench (``ab``) is installed,
  one query repeated by a client that takes almost none of the CPU: p50/p99 and queries/s;
* the local service's resident memory after 20 large queries (1,000 targets with per-scenario
  choices each) and after 20 more (``--large``): bounded by its LRUs.

Run: ``python benchmarks/serve.py [--data DIR] [--queries 200] [--no-ray]``.

Side by side with an earlier version: ``git worktree add OLD <commit>``, then
``python benchmarks/serve.py --against OLD [--rounds 4]`` runs only the bursts, on local servers
alternated (OLD's, then this tree's, each a fresh process, ``--rounds`` times), so both meet
the same load of the machine; it prints every round and the medians, then removing the worktree
is ``git worktree remove OLD``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from pluralign.engine.data.sources import load_benchmark
from pluralign.engine.data.targets import all_targets
from pluralign.engine.scorers import get_scorer, score_through_cache
from pluralign.engine.store.cache import ScoreCache

TOKEN = "bench-token"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _post(url: str, body: bytes) -> float:
    req = urllib.request.Request(url, data=body, method="POST")
    req.add_header("Authorization", f"Bearer {TOKEN}")
    t0 = time.perf_counter()
    with urllib.request.urlopen(req, timeout=120) as r:
        r.read()
        assert r.status == 200
    return time.perf_counter() - t0


def _start(args: list[str], env: dict[str, str], port: int, tree: Path | None = None
           ) -> subprocess.Popen[bytes]:
    """``pluralign serve`` on loopback: this tree's, or the package of source tree ``tree``."""
    if tree is not None:
        env = {**env, "PYTHONPATH": str(tree)}
    proc = subprocess.Popen([sys.executable, "-m", "pluralign", "serve", "--port",
                             str(port), *args], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, cwd=tree)
    deadline = time.time() + 180
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                if r.status == 200:
                    return proc
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise RuntimeError("the service did not start")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _bodies(name: str, bench: Any, n_targets: int, count: int, seed: int) -> list[bytes]:
    grid = all_targets(bench.attributes, bench.levels)
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        pick = rng.choice(len(grid), size=n_targets, replace=False)
        targets = [json.loads(grid.json(int(t))) for t in pick]
        targets = [t for t in targets if t] or [{bench.attributes[0]: 1.0}]
        out.append(json.dumps({"benchmark": name, "scorer": "random", "seed": 0,
                               "targets": targets}).encode())
    return out


def _measure(url: str, bodies: list[bytes], n: int, clients: int) -> dict[str, float]:
    _post(url, bodies[0])  # first use: benchmark, predictions and label index loaded
    for b in bodies:
        _post(url, b)
    lat = np.array([_post(url, bodies[i % len(bodies)]) for i in range(n)])
    t0 = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(lambda i: _post(url, bodies[i % len(bodies)]), range(n)))
    qps = n / (time.perf_counter() - t0)
    return {"p50_ms": float(np.percentile(lat, 50) * 1e3),
            "p99_ms": float(np.percentile(lat, 99) * 1e3), "qps": qps}


def _burst(url: str, bodies: list[bytes], n: int, clients: int) -> dict[str, float]:
    """``n`` queries from ``clients`` concurrent connections (aiohttp, one event loop, so the
    client costs little of the CPU the service needs): per-query p50/p99 and queries/s."""
    import asyncio

    import aiohttp

    async def run() -> tuple[list[float], float]:
        lat: list[float] = []
        todo = iter(range(min(n, 4 * clients)))  # the warm-up round
        headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}

        async def client(session: aiohttp.ClientSession) -> None:
            for i in todo:
                t0 = time.perf_counter()
                async with session.post(url, data=bodies[i % len(bodies)],
                                        headers=headers) as r:
                    await r.read()
                    assert r.status == 200, r.status
                lat.append(time.perf_counter() - t0)

        connector = aiohttp.TCPConnector(limit=clients)
        async with aiohttp.ClientSession(connector=connector) as session:
            await asyncio.gather(*(client(session) for _ in range(clients)))  # warm
            todo = iter(range(4 * clients, 4 * clients + n))
            lat.clear()
            t0 = time.perf_counter()
            await asyncio.gather(*(client(session) for _ in range(clients)))
            return lat, time.perf_counter() - t0

    lat, seconds = asyncio.run(run())
    a = np.array(lat)
    return {"p50_ms": float(np.percentile(a, 50) * 1e3),
            "p99_ms": float(np.percentile(a, 99) * 1e3), "qps": n / seconds}


def _ab(url: str, body: bytes, n: int, clients: int) -> dict[str, float] | None:
    """The same burst from ApacheBench (C, one thread: almost none of the CPU the service
    needs), one body repeated; None where ``ab`` is not installed. Its percentiles are whole
    milliseconds."""
    if shutil.which("ab") is None:
        return None
    with tempfile.NamedTemporaryFile(suffix=".json") as f:
        f.write(body)
        f.flush()
        cmd = ["ab", "-q", "-k", "-c", str(clients), "-n", str(n), "-p", f.name, "-T",
               "application/json", "-H", f"Authorization: Bearer {TOKEN}", url]
        subprocess.run([*cmd[:6], str(min(n, 300)), *cmd[7:]], capture_output=True, check=True)
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    bad = re.search(r"Non-2xx responses:\s+(\d+)", out)
    if bad or int(re.search(r"Failed requests:\s+(\d+)", out).group(1)):  # type: ignore[union-attr]
        raise RuntimeError(f"ab: failed requests\n{out}")
    field = {k: float(re.search(rx, out).group(1))  # type: ignore[union-attr]
             for k, rx in (("p50_ms", r"\n\s+50%\s+(\d+)"), ("p99_ms", r"\n\s+99%\s+(\d+)"),
                           ("qps", r"Requests per second:\s+([\d.]+)"))}
    return field


def _distinct_bodies(name: str, bench: Any, count: int) -> list[bytes]:
    """Up to ``count`` single-target queries, no two alike (as many as the target grid has):
    a burst cycling through them answers none from an earlier answer while they last."""
    grid = all_targets(bench.attributes, bench.levels)
    order = np.random.default_rng(3).permutation(len(grid))[:count]
    return [json.dumps({"benchmark": name, "scorer": "random", "seed": 0, "targets": [
        json.loads(grid.json(int(t))) or {bench.attributes[0]: 1.0}]}).encode() for t in order]


def _rss_after_large(url: str, name: str, bench: Any, pid: int, count: int
                     ) -> dict[str, float]:
    """The service's resident memory (MB) before and after ``count`` large queries (1,000
    distinct targets each, with the chosen response per scenario), then after as many more:
    what it keeps across requests is bounded (its LRUs), so the second round adds little."""
    import psutil

    proc = psutil.Process(pid)
    grid = all_targets(bench.attributes, bench.levels)
    rng = np.random.default_rng(5)

    def big(i: int) -> bytes:
        pick = rng.choice(len(grid), size=min(1000, len(grid)), replace=False)
        targets = [json.loads(grid.json(int(t))) or {bench.attributes[0]: 1.0} for t in pick]
        return json.dumps({"benchmark": name, "scorer": "random", "seed": 0,
                           "targets": targets, "per_scenario": True}).encode()

    def rss() -> float:
        return float(proc.memory_info().rss) / 2**20

    _post(url, big(0))
    before = rss()
    for i in range(count):
        _post(url, big(i))
    after = rss()
    for i in range(count):
        _post(url, big(count + i))
    return {"rss_before_mb": before, "rss_after_mb": after, "rss_after_2x_mb": rss()}


def _cli(name: str, cache: Path, env: dict[str, str], target: dict[str, float], runs: int
         ) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "pluralign", "align", "--benchmark",
                        name, "--scorer", "random", "--cache", str(cache), "--target",
                        json.dumps(target), "--show", "0"], env=env, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def _bursts(results: dict[str, Any], key: str, url: str, name: str, bench: Any,
            args: argparse.Namespace) -> None:
    """A burst of ``args.burst`` queries over ``args.burst_clients`` connections: repeated
    queries (50 single-target bodies cycled), distinct ones (none answered before) and, where
    ApacheBench is installed, one body from ab (a client that takes almost no CPU)."""
    n, c = args.burst, args.burst_clients
    runs = {"burst_repeated": _burst(url, _bodies(name, bench, 1, 50, 1), n, c),
            "burst_distinct": _burst(url, _distinct_bodies(name, bench, n + 4 * c), n, c)}
    ab = _ab(url, _bodies(name, bench, 1, 1, 1)[0], n, c)
    if ab is not None:
        runs["burst_ab"] = ab
    results[key].update(runs)
    mode, label = key.split("/")
    for what, r in runs.items():
        print(f"{mode:<12} {label:<11} {what} ({n:,} queries, {c} at once): p50 "
              f"{r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms, {r['qps']:.0f} q/s", flush=True)


def _against(args: argparse.Namespace, cache: Path, env: dict[str, str],
             loaded: dict[str, tuple[str, Any]]) -> dict[str, Any]:
    """Bursts only, on local servers of ``args.against`` (old) and of this tree (new),
    alternated ``args.rounds`` times, a fresh process each: every round's figures and, per
    benchmark, version and burst, the medians and the old/new ratio of the p50s."""
    n, c = args.burst, args.burst_clients
    rounds: dict[str, list[dict[str, float]]] = {}
    for r in range(args.rounds):
        for version, tree in (("old", Path(args.against).resolve()), ("new", None)):
            port = _free_port()
            proc = _start(["--cache", str(cache), "--max-synthetic-scenarios", "1000"], env,
                          port, tree)
            url = f"http://127.0.0.1:{port}/v1/align"
            try:
                for label, (name, bench) in loaded.items():
                    _post(url, _bodies(name, bench, 1, 1, 9)[0])  # loads what the query needs
                    for what, bodies in (
                            ("repeated", _bodies(name, bench, 1, 50, 1)),
                            ("distinct", _distinct_bodies(name, bench, n + 4 * c))):
                        got = _burst(url, bodies, n, c)
                        rounds.setdefault(f"{label}/{what}/{version}", []).append(got)
                        print(f"round {r + 1} {version} {label:<11} {what:<8} ({n:,} queries, "
                              f"{c} at once): p50 {got['p50_ms']:.1f} ms, p99 "
                              f"{got['p99_ms']:.1f} ms, {got['qps']:.0f} q/s", flush=True)
            finally:
                _stop(proc)
    out: dict[str, Any] = {}
    for key, runs in rounds.items():
        out[key] = {f: float(np.median([x[f] for x in runs])) for f in runs[0]}
    for key in [k for k in out if k.endswith("/new")]:
        base = key.removesuffix("/new")
        out[base + "/old_over_new_p50"] = {
            "ratio": out[base + "/old"]["p50_ms"] / out[key]["p50_ms"]}
        print(f"median of {args.rounds}: {base}: p50 {out[base + '/old']['p50_ms']:.1f} -> "
              f"{out[key]['p50_ms']:.1f} ms, p99 {out[base + '/old']['p99_ms']:.1f} -> "
              f"{out[key]['p99_ms']:.1f} ms, {out[base + '/old']['qps']:.0f} -> "
              f"{out[key]['qps']:.0f} q/s (old/new)", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", default=os.environ.get("PLURALIGN_DATA"))
    parser.add_argument("--queries", type=int, default=200, help="single-target queries")
    parser.add_argument("--big-queries", type=int, default=20, help="1,000-target queries")
    parser.add_argument("--cli-runs", type=int, default=3)
    parser.add_argument("--no-ray", action="store_true", help="local server only")
    parser.add_argument("--burst", type=int, default=2000, help="queries of each burst")
    parser.add_argument("--burst-clients", type=int, default=32,
                        help="concurrent connections of a burst")
    parser.add_argument("--large", type=int, default=20,
                        help="large queries before the memory reading (local server)")
    parser.add_argument("--against", metavar="TREE",
                        help="only the bursts, local servers of this source tree (an earlier "
                             "version) and of this one alternated")
    parser.add_argument("--rounds", type=int, default=4, help="alternations with --against")
    args = parser.parse_args()
    if args.data is None and (Path(__file__).resolve().parents[2] / "shared/data").exists():
        args.data = str(Path(__file__).resolve().parents[2] / "shared/data")
    tmp = Path(tempfile.mkdtemp(prefix="plserve"))
    cache = tmp / "cache"
    benches: list[tuple[str, str]] = [("mic-shaped", "synthetic")]
    try:
        load_benchmark("helpsteer2", "eval", args.data, download=False)
        benches.insert(0, ("helpsteer2", "helpsteer2"))
    except Exception as e:  # no data here
        print(f"(HelpSteer2 not found: {e}; MIC-shaped only)")
    env = {**os.environ, "PLURALIGN_OFFLINE": "1", "PLURALIGN_SERVE_TOKEN": TOKEN,
           "OMP_NUM_THREADS": "1", "RAY_AUTH_MODE": "disabled"}
    if args.data:
        env["PLURALIGN_DATA"] = args.data
    loaded = {}
    for label, name in benches:
        bench = load_benchmark(name, "eval", args.data)
        score_through_cache(get_scorer("random", seed=0), bench, ScoreCache(cache))
        loaded[label] = (name, bench)
    if args.against:
        try:
            results = _against(args, cache, env, loaded)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        print(json.dumps({k: {kk: round(vv, 3) for kk, vv in v.items()}
                          for k, v in results.items()}))
        return
    modes: list[tuple[str, list[str]]] = [("local", [])]
    if not args.no_ray:
        modes += [("ray-serve-1", ["--ray", "--replicas", "1"]),
                  ("ray-serve-2", ["--ray", "--replicas", "2"])]
    results: dict[str, Any] = {}
    try:
        for mode, extra in modes:
            port = _free_port()
            proc = _start(["--cache", str(cache), "--max-synthetic-scenarios", "1000", *extra],
                          env, port)
            url = f"http://127.0.0.1:{port}/v1/align"
            try:
                for label, (name, bench) in loaded.items():
                    one = _measure(url, _bodies(name, bench, 1, 50, 1), args.queries, 4)
                    big = _measure(url, _bodies(name, bench, 1000, 5, 2), args.big_queries, 4)
                    results[f"{mode}/{label}"] = {"1_target": one, "1000_targets": big}
                    print(f"{mode:<12} {label:<11} 1 target: p50 {one['p50_ms']:.1f} ms, "
                          f"p99 {one['p99_ms']:.1f} ms, {one['qps']:.0f} q/s | 1,000 targets: "
                          f"p50 {big['p50_ms']:.1f} ms, p99 {big['p99_ms']:.1f} ms, "
                          f"{big['qps']:.1f} q/s", flush=True)
                    _bursts(results, f"{mode}/{label}", url, name, bench, args)
                    if mode == "local" and args.large:
                        mem = _rss_after_large(url, name, bench, proc.pid, args.large)
                        results[f"{mode}/{label}"]["memory"] = mem
                        print(f"{mode:<12} {label:<11} RSS {mem['rss_before_mb']:.0f} MB -> "
                              f"{mem['rss_after_mb']:.0f} MB after {args.large} queries of "
                              f"1,000 targets with per-scenario choices -> "
                              f"{mem['rss_after_2x_mb']:.0f} MB after {args.large} more",
                              flush=True)
            finally:
                _stop(proc)
        for label, (name, bench) in loaded.items():
            target = json.loads(all_targets(bench.attributes, bench.levels).json(7))
            cli = _cli(name, cache, env, target, args.cli_runs)
            p50 = results[f"local/{label}"]["1_target"]["p50_ms"] / 1e3
            results[f"cli/{label}"] = {"seconds": cli, "service_speedup_p50": cli / p50}
            print(f"pluralign align process ({label}, 1 target): {cli:.2f} s per query "
                  f"(median of {args.cli_runs}) -> the local service's p50 is "
                  f"{cli / p50:,.0f}x faster", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps({k: {kk: ({a: round(b, 3) for a, b in vv.items()}
                                if isinstance(vv, dict) else round(vv, 3))
                           for kk, vv in v.items()} for k, v in results.items()}))


if __name__ == "__main__":
    main()
