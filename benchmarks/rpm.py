"""Does the API client stay under a server's RPM limit while using nearly all of it?

Runs the fake server with an RPM limit R over a sliding window W (60 s is the real thing; a
shorter W scales the run down) and drives it flat out through OpenAIBackend with a client-side
limiter. Prints the most requests that reached the server in any W-second window (must be <= R), the
sustained rate as a share of R (goal >= 95 %), and the 429s it had to send. Last line: JSON.

``--limiter adaptive`` is not told R at all (a hidden limit): the AIMD limiter learns it from
429s; its goals are >= 90 % of R used and <= 5 % of requests answered 429.

    python benchmarks/rpm.py --rpm 120 --window 60 --duration 150
    python benchmarks/rpm.py --rpm 60 --window 5 --duration 20 --limiter all
    python benchmarks/rpm.py --rpm 120 --window 10 --duration 120 --limiter adaptive
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from bisect import bisect_left
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pluralign.actors.backends.api_client import APIClientConfig, OpenAIBackend
from pluralign.actors.ratelimit import AdaptiveLimiter, Limiter, LocalLimiter
from pluralign.actors.testing.fake_server import FakeOpenAIServer
from pluralign.engine.run.backend import GenerationRequest, Message

KEY_ENV = "PLURALIGN_BENCH_KEY"


class AiolimiterAdapter:
    """aiolimiter's leaky bucket behind our Limiter protocol."""

    def __init__(self, rate: float, period: float) -> None:
        from aiolimiter import AsyncLimiter

        self._lim = AsyncLimiter(rate, period)

    async def acquire(self, requests: int = 1, tokens: int = 0) -> None:
        await self._lim.acquire(requests)

    def settle(self, status: int | None, retry_after: float | None = None) -> None:
        return None

    async def close(self) -> None:
        return None


class ThrottleAdapter:
    """asyncio-throttle's sliding log (if installed) behind our Limiter protocol."""

    def __init__(self, rate: int, period: float) -> None:
        from asyncio_throttle import Throttler

        self._lim = Throttler(rate_limit=rate, period=period)

    async def acquire(self, requests: int = 1, tokens: int = 0) -> None:
        for _ in range(requests):
            await self._lim.acquire()

    def settle(self, status: int | None, retry_after: float | None = None) -> None:
        return None

    async def close(self) -> None:
        return None


def make(name: str, rpm: int, window: float, concurrency: int = 16) -> Limiter:
    if name == "adaptive":  # told nothing about R: learns it from 429s
        return AdaptiveLimiter(concurrency, period=window)
    if name == "ours":
        return LocalLimiter(rpm=rpm, period=window)
    if name == "aiolimiter":  # the obvious configuration: R per W
        return AiolimiterAdapter(rpm, window)
    if name == "aiolimiter-smooth":  # the same leaky bucket sized like ours: 1 at a time
        return AiolimiterAdapter(1, window / rpm)
    if name == "asyncio-throttle":
        return ThrottleAdapter(rpm, window)
    raise SystemExit(f"unknown limiter {name!r}")


def max_in_window(times: list[float], window: float) -> int:
    times = sorted(times)
    return max((bisect_left(times, t + window) - i for i, t in enumerate(times)), default=0)


async def drive(url: str, limiter: Limiter, duration: float, concurrency: int) -> int:
    cfg = APIClientConfig(base_url=url, api_key_env=KEY_ENV, max_concurrency=concurrency,
                          max_retries=50, backoff_base=0.05, backoff_max=120.0)
    backend = OpenAIBackend(cfg, limiter=limiter)
    deadline = time.monotonic() + duration
    sent = 0

    async def worker(w: int) -> None:
        nonlocal sent
        i = 0
        while time.monotonic() < deadline:
            req = GenerationRequest(id=f"{w}-{i}", messages=(Message("user", f"{w} {i}"),))
            i += 1
            await asyncio.wait_for(backend.generate([req]), max(0.01, deadline - time.monotonic()))
            sent += 1

    tasks = [asyncio.ensure_future(worker(w)) for w in range(concurrency)]
    await asyncio.wait(tasks, timeout=duration + 1)
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await backend.close()
    return sent


def run_one(name: str, args: argparse.Namespace) -> dict[str, Any]:
    with FakeOpenAIServer(rpm=args.rpm, rpm_window=args.window) as server:
        limiter = make(name, args.rpm, args.window, args.concurrency)
        asyncio.run(drive(server.url, limiter, args.duration, args.concurrency))
        events = server.stats()["events"]
    accepted = sorted(e["t"] for e in events if e["status"] == 200)
    t0 = accepted[0] if accepted else 0.0
    in_run = [t for t in accepted if t < t0 + args.duration]
    expected = args.rpm * args.duration / args.window
    return {
        "limiter": name,
        "accepted": len(in_run),
        "server_429": sum(e["status"] == 429 for e in events),
        "share_429_pct": round(100 * sum(e["status"] == 429 for e in events)
                               / max(1, len(events)), 2),
        # Everything that reached the server, refused or not: what the client tried to send.
        "max_in_window": max_in_window([e["t"] for e in events], args.window),
        "sustained_pct": round(100 * len(in_run) / expected, 1),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rpm", type=int, default=120, help="server limit R per window")
    p.add_argument("--window", type=float, default=60.0, help="window W in seconds")
    p.add_argument("--duration", type=float, default=150.0, help="seconds of load per limiter")
    p.add_argument("--concurrency", type=int, default=16, help="client requests in flight")
    p.add_argument("--limiter", default="ours",
                   help="ours | adaptive | aiolimiter | aiolimiter-smooth | asyncio-throttle "
                        "| all")
    args = p.parse_args()
    os.environ.setdefault(KEY_ENV, "sk-bench-not-a-real-key")
    names = ["ours", "adaptive", "aiolimiter", "aiolimiter-smooth", "asyncio-throttle"] \
        if args.limiter == "all" else [args.limiter]
    results = []
    for name in names:
        try:
            row = run_one(name, args)
        except ImportError as e:
            print(f"{name}: skipped ({e})")
            continue
        row["within_limit"] = row["max_in_window"] <= args.rpm
        results.append(row)
        print(f"{name:>18}: max {row['max_in_window']} sent in any {args.window:g}s window "
              f"(limit {args.rpm}), sustained {row['sustained_pct']}% of R, "
              f"{row['server_429']} x 429 ({row['share_429_pct']}% of requests)")
    print(json.dumps({"rpm": args.rpm, "window_s": args.window, "duration_s": args.duration,
                      "results": results}))
    return 0 if all(r["within_limit"] for r in results if r["limiter"] in ("ours",)) else 1


if __name__ == "__main__":
    sys.exit(main())
