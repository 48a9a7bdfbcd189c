"""Prefix-aware ordering on vLLM: the same judge items sent in prefix order and shuffled, through
our scheduler and HTTP client to vLLM's own server (tiny random-weight model, CPU build).

Reports vLLM's own prefix-cache counters (``vllm:prefix_cache_hits`` over
``vllm:prefix_cache_queries``, read from ``/metrics``; the cache is reset between runs through
the server's dev route) and tokens/s (prompt + completion tokens the server counted, over the
run's wall time), ordered vs shuffled, alternating ``--repeats`` times. ``--blocks`` caps the
KV cache (``--num-gpu-blocks-override``) so that, as on a busy server, not every prefix stays
cached; 0 keeps vLLM's default. Last line: one JSON object.

    python benchmarks/prefix_ordering.py --scenarios 12 --blocks 96 --repeats 2

Needs the vLLM build. The answers are noise (dummy weights): only the order's effect counts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pluralign.actors.backends.api_client import APIClientConfig, OpenAIBackend  # noqa: E402
from pluralign.engine.data.synthetic import synthetic_benchmark  # noqa: E402
from pluralign.engine.run.scheduler import SchedulerConfig, run_schedule  # noqa: E402
from pluralign.engine.store.cache import ScoreCache  # noqa: E402
from pluralign.jobs.configs import LLMConfig  # noqa: E402
from pluralign.jobs.llm_scoring import build_judge  # noqa: E402
from pluralign.jobs.prefix_order import prefix_order, shared_prefix_share  # noqa: E402
from tests.real_engine.tiny_model import build  # noqa: E402
from tests.real_engine.vllm_server import free_port, stop, wait_healthy  # noqa: E402


def start(model: Path, port: int, log: Path, blocks: int) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model),
           "--host", "127.0.0.1", "--port", str(port), "--served-model-name", "tiny",
           "--load-format", "dummy", "--max-model-len", "2048", "--seed", "0",
           "--enable-prefix-caching", "--max-num-seqs", "8"]
    if blocks:
        cmd += ["--num-gpu-blocks-override", str(blocks)]
    env = {**os.environ, "VLLM_SERVER_DEV_MODE": "1", "VLLM_CPU_KVCACHE_SPACE": "1"}
    proc = subprocess.Popen(cmd, stdout=log.open("wb"), stderr=subprocess.STDOUT, env=env)
    return wait_healthy(proc, port, log)


def counters(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    out: dict[str, float] = {}
    for name in ("prefix_cache_queries", "prefix_cache_hits", "prompt_tokens",
                 "generation_tokens"):
        total = 0.0
        for m in re.finditer(rf"^vllm:{name}_total(?:{{[^}}]*}})? ([0-9.e+]+)$", text, re.M):
            total += float(m.group(1))
        out[name] = total
    return out


def reset(port: int) -> None:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/reset_prefix_cache", method="POST")
    with urllib.request.urlopen(req, timeout=30):
        pass


def run(port: int, judge: Any, items: list[Any], cache_dir: Path, in_flight: int
        ) -> dict[str, float]:
    reset(port)
    before = counters(port)
    backend = OpenAIBackend(APIClientConfig(base_url=f"http://127.0.0.1:{port}/v1",
                                            model="tiny", api_key_env=None, timeout=600,
                                            structured_output="none",
                                            max_concurrency=in_flight))
    cfg = SchedulerConfig(max_in_flight=in_flight, batch_size=1, max_attempts=1, max_sends=1)

    async def go() -> None:
        try:
            await run_schedule(judge, items, backend, ScoreCache(cache_dir), cfg, log=None)
        finally:
            await backend.close()

    t0 = time.perf_counter()
    asyncio.run(go())
    elapsed = time.perf_counter() - t0
    after = counters(port)
    d = {k: after[k] - before[k] for k in after}
    return {"hit_rate": d["prefix_cache_hits"] / d["prefix_cache_queries"]
            if d["prefix_cache_queries"] else 0.0,
            "tokens_per_s": (d["prompt_tokens"] + d["generation_tokens"]) / elapsed,
            "prompt_tokens": d["prompt_tokens"], "seconds": elapsed}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scenarios", type=int, default=12)
    p.add_argument("--samples", type=int, default=2)
    p.add_argument("--max-tokens", type=int, default=8)
    p.add_argument("--in-flight", type=int, default=8)
    p.add_argument("--blocks", type=int, default=96, help="KV cache blocks (0: vLLM default)")
    p.add_argument("--repeats", type=int, default=2)
    args = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="prefix-bench-"))
    model = build(tmp / "model")
    bench = synthetic_benchmark(n_scenarios=args.scenarios, responses=(2, 4), n_attributes=3,
                                n_levels=5, seed=7, attributes=("helpfulness", "correctness",
                                                                "verbosity"), name="prefix")
    judge = build_judge(bench, None, "regression", LLMConfig(
        model="tiny", few_shot=False, samples=args.samples, temperature=0.7,
        max_tokens=args.max_tokens, structured_output="none"))
    items = judge.items(range(bench.n_scenarios), args.samples)
    ordered = prefix_order(judge, items)
    shuffled = list(items)
    random.Random(0).shuffle(shuffled)
    port = free_port()
    server = start(model, port, tmp / "server.log", args.blocks)
    rows: dict[str, list[dict[str, float]]] = {"ordered": [], "shuffled": []}
    try:
        run(port, judge, ordered[:8], tmp / "warm", args.in_flight)  # warm-up, not counted
        for r in range(args.repeats):
            for name, order in (("ordered", ordered), ("shuffled", shuffled)):
                rows[name].append(run(port, judge, order, tmp / f"{name}-{r}", args.in_flight))
    finally:
        stop(server)

    def mean(name: str, key: str) -> float:
        return sum(x[key] for x in rows[name]) / len(rows[name])

    result: dict[str, Any] = {
        "items": len(items), "blocks": args.blocks, "in_flight": args.in_flight,
        "repeats": args.repeats,
        "adjacent_same_first_message": {"ordered": round(shared_prefix_share(judge, ordered), 3),
                                        "shuffled": round(shared_prefix_share(judge, shuffled),
                                                          3)},
    }
    for name in rows:
        result[name] = {"hit_rate": round(mean(name, "hit_rate"), 4),
                        "tokens_per_s": round(mean(name, "tokens_per_s"), 1),
                        "prompt_tokens": mean(name, "prompt_tokens")}
        print(f"{name:>9}: prefix-cache hit rate {result[name]['hit_rate']:.1%}, "
              f"{result[name]['tokens_per_s']:.0f} tokens/s")
    result["tokens_per_s_ratio"] = round(
        result["ordered"]["tokens_per_s"] / result["shuffled"]["tokens_per_s"], 3)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
