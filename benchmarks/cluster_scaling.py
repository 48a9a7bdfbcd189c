"""Does the driver keep up? Two measurements, each timed at the endpoint (first request to
last, so start-up is left out):

1. **Hosts** (needs root and network namespaces: the rig of tests/cluster): the same LLM sweep
   submitted with ``ray job submit`` with 2 API-client actors on 1 worker host (``pack``), then
   4 actors on 2 worker hosts (``spread``), against a latency-bound endpoint (the fake server on
   its own host, a fixed latency per request, no rate limit). Efficiency = items/s with 2 hosts
   over twice items/s with 1 (goal >= 0.85).
2. **Driver ceiling** (one machine, no Ray): our sweep (in-process client, one driver) against
   a bare aiohttp loop that sends the very same request bodies at the same concurrency to the
   same endpoint (the fake server in its own process). Ratio = our requests/s over the bare
   loop's (goal >= 0.9 at ~1,000 requests/s). Our client runs at the fixed concurrency of the
   bare loop (``adaptive="off"``); ``--adaptive auto`` measures the default instead, whose
   AIMD concurrency starts at 4 and, in slow start, doubles per round of answers: it reaches
   64 after four rounds (without slow start, +1 per round, a third of a 5,000-request run went
   by first).

    python benchmarks/cluster_scaling.py                   # both
    python benchmarks/cluster_scaling.py --only ceiling    # no root needed
    git worktree add ../before <commit>                    # before/after, side by side:
    python benchmarks/cluster_scaling.py --only ceiling --before ../before

Prints the figures; the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

KEY_ENV = "PLURALIGN_BENCH_KEY"
KEY = "sk-bench-" + "0" * 24


# ---------------------------------------------------------------- 1. hosts


def endpoint_rate(stats: dict[str, Any]) -> tuple[int, float]:
    """(answered requests, requests/s from the first to the last one) as the endpoint saw them."""
    times = sorted(float(e["t"]) for e in stats["events"] if int(e["status"]) == 200)
    span = times[-1] - times[0] if len(times) > 1 else 0.0
    return len(times), (len(times) - 1) / span if span > 0 else 0.0


def hosts(latency: float, scenarios: int) -> dict[str, Any]:
    from tests.cluster.conftest import reset_provider, submit, wait_job
    from tests.cluster.rig import cluster, sweep_command

    flags = ("--latency", str(latency), "--seed", "5")
    rates: dict[str, float] = {}
    with cluster(provider_flags=flags) as rig:
        for name, actors, placement in (("1 host", 2, "pack"), ("2 hosts", 4, "spread")):
            reset_provider(rig)
            folder = rig.shared / name.replace(" ", "-")
            command = sweep_command(rig.head.address, rig.provider_url, str(folder / "cache"),
                                    str(folder / "out"), actors=actors, rpm=10**6,
                                    limit=scenarios, placement=placement)
            command[command.index("--benchmark") + 1] = (
                f"synthetic:S={scenarios},R=2-2,A=5,L=5,seed=7")
            submit(rig, name.replace(" ", "-"), command)
            status = wait_job(rig, name.replace(" ", "-"), timeout=600)
            if status != "SUCCEEDED":
                raise RuntimeError(f"the {name} sweep ended {status}")
            summary = json.loads((folder / "out" / "summary.json").read_text())
            placed = summary["manifest"]["counts"]["placement"]["actors_by_host"]
            n, rate = endpoint_rate(rig.provider_stats())
            rates[name] = rate
            print(f"{name}: {actors} actors ({placed}), {n} requests, {rate:.2f} items/s",
                  flush=True)
    efficiency = rates["2 hosts"] / (2 * rates["1 host"])
    print(f"scaling efficiency 1 -> 2 worker hosts: {efficiency:.3f} (goal >= 0.85)")
    return {"latency_s": latency, "items_per_s": rates, "efficiency": efficiency}


# ---------------------------------------------------------------- 2. driver ceiling


def _stats(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url.removesuffix("/v1") + "/fake/stats", timeout=60) as r:
        stats: dict[str, Any] = json.loads(r.read())
    return stats


def _reset(url: str) -> None:
    req = urllib.request.Request(url.removesuffix("/v1") + "/fake/reset", method="POST")
    urllib.request.urlopen(req, timeout=30).close()


def _bodies(bench: Any, config: Any) -> list[dict[str, object]]:
    """The request bodies our sweep sends for ``bench`` (same judge, same client settings)."""
    from pluralign.actors.backends.api_client import OpenAIBackend
    from pluralign.jobs.llm_scoring import _api_config, build_judge

    judge = build_judge(bench, None, "comparative-regression", config)
    client = OpenAIBackend(_api_config(config))
    return [client.request_body(judge.request(item))
            for item in judge.items(range(bench.n_scenarios), 1, None)]


_SWEEP = """
import os, sys
sys.path.insert(0, sys.argv[1])
from pathlib import Path
from pluralign.engine.data.sources import load_benchmark
from pluralign.jobs import api
from pluralign.jobs.configs import LLMConfig
url, cache, n, concurrency = sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
bench = load_benchmark(f"synthetic:S={n},R=2-2,A=5,L=5,seed=7", "eval")
config = LLMConfig(model="fake-model", base_url=url, api_key_env=sys.argv[6], few_shot=False,
                   concurrency=concurrency, actors=1, use_ray=False, max_in_flight=concurrency,
                   adaptive=sys.argv[7])
api.score(bench, "comparative-regression", train=None, config=config, cache=Path(cache),
          quiet=True)
"""
"""Our sweep run from another checkout (its root first on the path), in a process of its own."""


def _sweep_from(tree: Path, url: str, cache: Path, scenarios: int, concurrency: int,
                adaptive: str) -> None:
    subprocess.run([sys.executable, "-c", _SWEEP, str(tree.resolve()), url, str(cache),
                    str(scenarios), str(concurrency), KEY_ENV, adaptive], check=True,
                   env={**os.environ, "PYTHONPATH": str(tree.resolve())})


async def _bare(url: str, bodies: list[dict[str, object]], concurrency: int) -> None:
    import aiohttp

    sem = asyncio.Semaphore(concurrency)
    headers = {"Authorization": f"Bearer {KEY}"}
    conn = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=conn, headers=headers) as session:
        async def one(body: dict[str, object]) -> None:
            async with sem, session.post(f"{url}/chat/completions", json=body) as r:
                await r.read()

        await asyncio.gather(*(one(b) for b in bodies))


def ceiling(latency: float, concurrency: int, scenarios: int,
            before: Path | None = None, adaptive: str = "off",
            repeats: int = 2) -> dict[str, Any]:
    from pluralign.engine.data.sources import load_benchmark
    from pluralign.jobs import api
    from pluralign.jobs.configs import LLMConfig

    os.environ[KEY_ENV] = KEY
    bench = load_benchmark(f"synthetic:S={scenarios},R=2-2,A=5,L=5,seed=7", "eval")
    with tempfile.TemporaryDirectory() as tmp:
        server = subprocess.Popen(
            [sys.executable, "-m", "pluralign", "fake-server", "--latency", str(latency),
             "--seed", "1"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        try:
            assert server.stdout is not None
            url = next(w for w in server.stdout.readline().split() if w.startswith("http"))
            config = LLMConfig(model="fake-model", base_url=url, api_key_env=KEY_ENV,
                               few_shot=False, concurrency=concurrency, actors=1,
                               use_ray=False, max_in_flight=concurrency, adaptive=adaptive)
            bodies = _bodies(bench, config)
            asyncio.run(_bare(url, bodies[:concurrency], concurrency))  # warm-up
            rates = {"bare aiohttp": 0.0, "our sweep": 0.0}
            if before is not None:
                rates["before"] = 0.0
            for rep in range(repeats):  # alternated, best of each (a busy machine's spikes)
                for name in rates:
                    _reset(url)
                    if name == "bare aiohttp":
                        asyncio.run(_bare(url, bodies, concurrency))
                    elif name == "before":
                        assert before is not None
                        _sweep_from(before, url, Path(tmp) / f"before{rep}", scenarios,
                                    concurrency, adaptive)
                    else:
                        api.score(bench, "comparative-regression", train=None, config=config,
                                  cache=Path(tmp) / f"cache{rep}", quiet=True)
                    n, rate = endpoint_rate(_stats(url))
                    rates[name] = max(rates[name], rate)
                    print(f"{name:13s} {n} requests, {rate:8.1f} requests/s ({concurrency} in "
                          f"flight, {latency * 1000:.0f} ms latency)", flush=True)
        finally:
            server.terminate()
            server.wait(10)
    ratio = rates["our sweep"] / rates["bare aiohttp"]
    print(f"driver ceiling: our sweep / bare loop = {ratio:.3f} at "
          f"{rates['bare aiohttp']:.0f} requests/s (goal >= 0.9; adaptive {adaptive})")
    out = {"latency_s": latency, "concurrency": concurrency, "adaptive": adaptive,
           "requests": len(bodies), "repeats": repeats,
           "requests_per_s": rates, "ratio": ratio}
    if before is not None:
        out["ratio_before"] = rates["before"] / rates["bare aiohttp"]
        print(f"before ({before.name}): {out['ratio_before']:.3f} of the bare loop, "
              f"side by side")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", choices=("hosts", "ceiling"), default=None)
    ap.add_argument("--host-latency", type=float, default=1.0,
                    help="seconds per request at the endpoint for the hosts run")
    ap.add_argument("--host-scenarios", type=int, default=32)
    ap.add_argument("--ceiling-latency", type=float, default=0.05)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--ceiling-scenarios", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=2,
                    help="runs of each, alternated; the best of each counts (ceiling only)")
    ap.add_argument("--before", type=Path, default=None,
                    help="a checkout of an earlier pluralign: its sweep runs too, alternated "
                         "with ours and the bare loop (ceiling only)")
    ap.add_argument("--adaptive", choices=("off", "auto"), default="off",
                    help="our client's adaptive concurrency (ceiling only): off = the bare "
                         "loop's fixed concurrency; auto = the default AIMD, in slow start from 4")
    args = ap.parse_args()
    out: dict[str, Any] = {}
    if args.only in (None, "ceiling"):
        out["ceiling"] = ceiling(args.ceiling_latency, args.concurrency, args.ceiling_scenarios,
                                 args.before, args.adaptive, args.repeats)
    if args.only in (None, "hosts"):
        out["hosts"] = hosts(args.host_latency, args.host_scenarios)
    print(json.dumps(out))


if __name__ == "__main__":
    t0 = time.perf_counter()
    main()
    print(f"({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
