"""Token buckets: exact window guarantee, virtual-time local limiter, Redis shared by processes."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from bisect import bisect_left
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pluralign.actors.ratelimit import (
    BucketSpec,
    Limiter,
    LocalLimiter,
    RedisLimiter,
    RedisStatus,
    TokenBucket,
    key_id,
    make_limiter,
    take_all,
)
from tests.fake_openai import start_redis


def max_in_window(times: list[float], period: float) -> int:
    """Most grants in any half-open window [t, t + period) (windows starting at a grant)."""
    return max((bisect_left(times, t + period) - i for i, t in enumerate(times)), default=0)


def greedy_grants(spec: BucketSpec, horizon: float) -> list[float]:
    """A client that takes one unit the moment it is allowed, until ``horizon``."""
    now, bucket, times = 0.0, TokenBucket(spec, 0.0), []
    while now < horizon:
        wait = take_all([(bucket, 1.0)], now)
        if wait == 0.0:
            times.append(now)
        else:
            now += wait
    return times


@settings(max_examples=80, deadline=None)
@given(limit=st.integers(2, 400), period=st.floats(0.5, 120), burst=st.floats(1, 20),
       slack=st.floats(0, 2))
def test_bucket_never_exceeds_the_limit_in_any_window(limit: int, period: float, burst: float,
                                                      slack: float) -> None:
    spec = BucketSpec(limit, period, burst, slack)
    times = greedy_grants(spec, horizon=4 * period)
    assert max_in_window(times, period) <= limit
    # ... and wastes no more than the burst and the slack: the long-run rate is the refill rate
    # (less one grant: the last may fall a rounding error past the horizon).
    assert len(times) >= spec.rate * 4 * period - 1


def test_large_amounts_go_when_full_and_leave_debt() -> None:
    spec = BucketSpec(100, 10.0, burst=10, slack=0.0)
    bucket = TokenBucket(spec, 0.0)
    assert take_all([(bucket, 50.0)], 0.0) == 0.0  # over capacity: allowed from a full bucket
    wait = take_all([(bucket, 1.0)], 0.0)
    assert wait == pytest.approx((1.0 + 40.0) / spec.rate)


def test_take_all_is_all_or_nothing() -> None:
    req = TokenBucket(BucketSpec(10, 1.0, burst=1, slack=0), 0.0)
    tok = TokenBucket(BucketSpec(100, 1.0, burst=5, slack=0), 0.0)
    assert take_all([(req, 1), (tok, 5)], 0.0) == 0.0
    assert take_all([(req, 1), (tok, 1)], 0.0) > 0
    assert tok.level == pytest.approx(0.0)  # the tokens were not taken by the refused call


@pytest.mark.parametrize("bad", [{"limit": 0}, {"limit": 5, "period": 0}, {"limit": 5,
                                                                           "slack": -1}])
def test_bucket_spec_rejects_nonsense(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="bucket"):
        BucketSpec(**bad)


def test_local_limiter_in_virtual_time_keeps_the_window() -> None:
    clock = [0.0]

    async def sleep(d: float) -> None:
        clock[0] += d
        await asyncio.sleep(0)

    limiter = LocalLimiter(rpm=30, tpm=3000, period=60.0, clock=lambda: clock[0], sleep=sleep)
    grants: list[float] = []

    async def worker() -> None:
        for _ in range(20):
            await limiter.acquire(1, tokens=50)
            grants.append(clock[0])

    async def main() -> None:
        await asyncio.gather(*(worker() for _ in range(5)))

    asyncio.run(main())
    assert len(grants) == 100
    assert max_in_window(sorted(grants), 60.0) <= 30
    # The token budget binds too: 50 tokens each, 3000 per minute -> at most 60 per window.
    assert max_in_window(sorted(grants), 60.0) * 50 <= 3000


def test_local_limiter_without_budgets_never_waits() -> None:
    async def sleep(d: float) -> None:
        raise AssertionError("should not sleep")

    limiter = LocalLimiter(sleep=sleep)
    assert isinstance(limiter, Limiter)
    asyncio.run(limiter.acquire(5, 10_000))


def test_key_id_is_stable_and_opaque() -> None:
    assert key_id("sk-abc") == key_id("sk-abc") != key_id("sk-abd")
    assert "abc" not in key_id("sk-abc")
    assert key_id(None) == key_id("") == "anonymous"


def test_make_limiter_picks_redis_only_with_a_url() -> None:
    assert isinstance(make_limiter(60, None, key="k"), LocalLimiter)
    assert isinstance(make_limiter(60, None, key="k", redis_url="redis://127.0.0.1:1/0"),
                      RedisLimiter)


_WORKER = """
import asyncio, json, sys, time
from pluralign.actors.ratelimit import RedisLimiter
url, start, stop = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
async def main():
    lim = RedisLimiter(url, "sharedkey", rpm=20, period=2.0, slack=0.5)
    while time.time() < start:
        await asyncio.sleep(0.005)
    grants = []
    while True:
        await lim.acquire()
        now = time.time()
        if now >= stop:
            break
        grants.append(now)
    await lim.close()
    print(json.dumps(grants))
asyncio.run(main())
"""


@pytest.mark.redis
def test_redis_limiter_shares_one_budget_across_processes(redis_url: str) -> None:
    start = time.time() + 1.5  # both processes are up and connected by then
    stop = start + 3.0
    procs = [subprocess.Popen([sys.executable, "-c", _WORKER, redis_url, str(start), str(stop)],
                              stdout=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [json.loads(p.communicate(timeout=60)[0]) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    spec = BucketSpec(20, 2.0, 1.0, 0.5)
    total = sum(len(o) for o in outs)
    # One budget: burst + refill over the run (+1 for the boundary). Two private budgets
    # would allow about twice this.
    assert total <= spec.capacity + spec.rate * (stop - start) + 1
    assert all(len(o) > 0 for o in outs)  # both processes drew from it
    assert max_in_window(sorted(outs[0] + outs[1]), 2.0) <= 20 + 1


@pytest.mark.redis
def test_redis_limiter_tokens_and_requests_together(redis_url: str) -> None:
    async def main() -> tuple[float, float, float]:
        lim = RedisLimiter(redis_url, "k2", rpm=1000, tpm=100, period=1.0, burst=5, slack=0.0)
        first = await lim.try_acquire(1, tokens=10)  # the token bucket holds 10 (a tenth)
        second = await lim.try_acquire(1, tokens=10)  # empty now: must wait for a refill
        requests_only = await lim.try_acquire(1, tokens=0)  # the request bucket still has room
        await lim.close()
        return first, second, requests_only

    first, second, requests_only = asyncio.run(main())
    token_rate = BucketSpec(100, 1.0, 10, 0.0).rate
    assert first == 0.0
    assert 0.0 < second <= 10 / token_rate
    assert requests_only == 0.0


@pytest.mark.redis
def test_redis_status_publishes_and_reads(redis_url: str) -> None:
    import redis.asyncio as aioredis

    async def main() -> tuple[dict[str, Any], dict[str, Any]]:
        status = RedisStatus(redis_url, "job-1")
        client = aioredis.Redis.from_url(redis_url)
        pubsub = client.pubsub()
        await pubsub.subscribe(status.channel)
        await pubsub.get_message(timeout=1.0)  # the subscribe confirmation
        await status.publish({"done": 3, "total": 10, "state": "running"})
        await status.publish({"done": 4})
        message = None
        for _ in range(50):
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.1)
            if message:
                break
        current = await status.read()
        await pubsub.aclose()
        await client.aclose()
        await status.close()
        assert message is not None
        return json.loads(message["data"]), current

    first_event, current = asyncio.run(main())
    assert first_event == {"done": 3, "total": 10, "state": "running"}
    assert current == {"done": 4, "total": 10, "state": "running"}


def _redis_on(port: int, workdir: Any) -> subprocess.Popen[bytes]:
    """redis-server on ``port`` (loopback, no persistence), answering PING."""
    return start_redis(workdir, port)[0]


@pytest.mark.redis
def test_redis_killed_mid_run_degrades_and_fails_nothing(
        tmp_path: Any, make_fake_server: Any, fake_key: str,
        caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]) -> None:
    """A real redis-server is killed while requests flow and restarted on the same port:
    every request still succeeds, the outage is told in one line and the recovery in one."""
    import logging

    from pluralign.actors.backends.api_client import OpenAIBackend
    from tests.actors.test_api_client import config, requests
    from tests.fake_openai import free_port

    port = free_port()
    proc = _redis_on(port, tmp_path)
    server = make_fake_server(latency=0.01)
    cfg = config(server, redis_url=f"redis://127.0.0.1:{port}/0", rpm=600, rate_period=6.0,
                 max_concurrency=4)
    # More than the outage's local budget (a quarter: 150 per 6 s) can send while Redis is down,
    # so the run outlasts the restart and must find Redis back.
    reqs = requests(400)
    events: dict[str, int] = {}

    async def outage() -> None:
        nonlocal proc
        await asyncio.sleep(0.6)
        proc.kill()
        proc.wait()
        events["killed"] = server.stats()["total"]
        await asyncio.sleep(1.5)
        proc = await asyncio.to_thread(_redis_on, port, tmp_path)
        events["restarted"] = server.stats()["total"]

    async def go() -> list[Any]:
        backend = OpenAIBackend(cfg)
        try:
            chaos = asyncio.create_task(outage())
            out = await backend.generate(reqs)
            await chaos
            return out
        finally:
            await backend.close()

    caplog.set_level(logging.WARNING, logger="pluralign.actors.ratelimit")
    try:
        results = asyncio.run(go())
    finally:
        proc.kill()
        proc.wait()
    failed = [r for r in results if r.failure is not None]
    lines = [r.getMessage() for r in caplog.records if r.name == "pluralign.actors.ratelimit"]
    with capsys.disabled():
        print(f"\nredis killed after {events.get('killed')} requests, restarted after "
              f"{events.get('restarted')}; items {len(results)}, failed {len(failed)}; "
              f"lines printed {len(lines)}:")
        for line in lines:
            print("  " + line)
    assert len(results) == len(reqs) and not failed
    assert events["killed"] < len(reqs)  # the outage really happened mid-run
    assert len(lines) == 2 and "unreachable" in lines[0] and "back" in lines[1]
    assert not any(r.exc_info for r in caplog.records)  # no traceback anywhere
