"""Adaptive concurrency (AIMD): grows while clean, cuts on 429, honours Retry-After, never
exceeds its cap; through the API client against the fake server's hidden RPM limit."""

from __future__ import annotations

import asyncio
import os

import pytest

from pluralign.actors.backends.api_client import APIClientConfig, OpenAIBackend
from pluralign.actors.ratelimit import (
    AdaptiveLimiter,
    LocalLimiter,
    adaptive_status,
    make_limiter,
)
from pluralign.actors.testing.fake_server import FakeOpenAIServer
from pluralign.engine.run.backend import GenerationRequest, Message
from tests.fake_openai import redis_url

__all__ = ["redis_url"]


class VirtualClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


def test_grows_while_clean_up_to_the_cap() -> None:
    async def main() -> AdaptiveLimiter:
        lim = AdaptiveLimiter(6, start=2)
        peak = 0
        for _ in range(60):
            await lim.acquire()
            peak = max(peak, lim.in_flight)
            lim.settle(200)
        assert peak <= 6
        return lim

    lim = asyncio.run(main())
    assert lim.limit == 6.0  # grew from 2 to the cap, never past it
    assert lim.rate is None  # no 429: no pacing


def test_never_more_in_flight_than_the_current_limit() -> None:
    async def main() -> tuple[int, AdaptiveLimiter]:
        lim = AdaptiveLimiter(8, start=3)
        peak = 0

        async def one() -> None:
            nonlocal peak
            await lim.acquire()
            peak = max(peak, lim.in_flight)
            await asyncio.sleep(0.001)
            lim.settle(200)

        await asyncio.gather(*(one() for _ in range(40)))
        return peak, lim

    peak, lim = asyncio.run(main())
    assert 3 <= peak <= 8
    assert lim.in_flight == 0 and lim.waiting == 0


def test_a_429_cuts_once_per_episode_pauses_and_paces() -> None:
    clock = VirtualClock()

    async def main() -> AdaptiveLimiter:
        lim = AdaptiveLimiter(16, start=8, beta=0.5, period=10.0, clock=clock, sleep=clock.sleep)
        for _ in range(20):  # 20 clean answers, one each half second
            await lim.acquire()
            lim.settle(200)
            clock.now += 0.5
        before = lim.limit
        await lim.acquire()
        await lim.acquire()
        lim.settle(429, retry_after=3.0)
        assert lim.limit == pytest.approx(before * 0.5)
        # 19 answers within the last period (the first is 10 s old) over those 10 s
        assert lim.rate == pytest.approx(0.9 * 19 / 10.0)
        lim.settle(429, retry_after=3.0)  # sent before the cut: same episode
        assert lim.limit == pytest.approx(before * 0.5) and lim.cuts == 1
        t = clock.now
        await lim.acquire()  # waits out the Retry-After
        assert clock.now >= t + 3.0
        lim.settle(200)
        t = clock.now
        await lim.acquire()  # then paced at the learnt rate
        assert lim.rate is not None
        assert clock.now - t == pytest.approx(1 / lim.rate, rel=0.05)
        lim.settle(200)
        return lim

    lim = asyncio.run(main())
    assert lim.rate_limited == 2
    assert "x 429" in lim.describe()


def test_overload_cuts_concurrency_without_pacing() -> None:
    async def main() -> AdaptiveLimiter:
        lim = AdaptiveLimiter(10, start=10)
        await lim.acquire()
        lim.settle(503)
        return lim

    lim = asyncio.run(main())
    assert lim.limit == pytest.approx(7.0) and lim.rate is None


def test_a_given_budget_still_binds_below_the_adaptive_limit() -> None:
    clock = VirtualClock()

    async def main() -> None:
        inner = LocalLimiter(rpm=60, period=60.0, clock=clock, sleep=clock.sleep)
        lim = AdaptiveLimiter(16, inner=inner, clock=clock, sleep=clock.sleep)
        for _ in range(5):
            await lim.acquire()
            lim.settle(200)

    asyncio.run(main())
    assert clock.now >= 3.0  # 1 per second after the first


def test_make_limiter_shares_one_adaptive_limiter_per_key() -> None:
    async def main() -> None:
        a = make_limiter(None, None, key="k", adaptive=4)
        b = make_limiter(None, None, key="k", adaptive=4)
        assert a is b and isinstance(a, AdaptiveLimiter)
        assert not isinstance(make_limiter(None, None, key="k"), AdaptiveLimiter)

    asyncio.run(main())


def test_api_client_adapts_to_a_hidden_rpm_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every request answered despite a limit the client was not told; the limiter saw the
    429s, cut and learnt a pace, and the progress note says so."""
    monkeypatch.setenv("PLURALIGN_TEST_KEY", "sk-test-adaptive")
    with FakeOpenAIServer(rpm=15, rpm_window=1.0) as server:
        cfg = APIClientConfig(base_url=server.url, api_key_env="PLURALIGN_TEST_KEY",
                              max_concurrency=8, adaptive=True, rate_period=1.0,
                              max_retries=20, backoff_base=0.01, backoff_max=5.0)

        async def main() -> tuple[list[bool], AdaptiveLimiter]:
            backend = OpenAIBackend(cfg)
            reqs = [GenerationRequest(f"r{i}", (Message("user", f"q {i}"),)) for i in range(40)]
            results = await backend.generate(reqs)
            lim = backend._limiter
            assert isinstance(lim, AdaptiveLimiter)
            note = adaptive_status()
            await backend.close()
            assert "concurrency" in note
            return [r.ok for r in results], lim

        oks, lim = asyncio.run(main())
        stats = server.stats()
    assert all(oks)
    assert lim.rate_limited >= 1 and lim.cuts >= 1 and lim.rate is not None
    assert lim.rate_limited == sum(1 for e in stats["events"] if e["status"] == 429)
    assert os.environ["PLURALIGN_TEST_KEY"] == "sk-test-adaptive"


def test_a_young_run_is_paced_at_what_it_got_so_far() -> None:
    """A 429 early in a run (a window holding only its first answers) paces at the rate the
    run has been answered at, not at that handful spread over the whole period."""
    clock = VirtualClock()

    async def main() -> AdaptiveLimiter:
        lim = AdaptiveLimiter(8, start=4, period=60.0, clock=clock, sleep=clock.sleep)
        for _ in range(11):
            await lim.acquire()
            lim.settle(200)
            clock.now += 0.1  # ten answers a second, for one second
        await lim.acquire()
        lim.settle(429, retry_after=0.05)
        return lim

    lim = asyncio.run(main())
    assert lim.rate == pytest.approx(0.9 * 11 / 1.1)


@pytest.mark.redis
def test_adaptive_limiter_obeys_the_redis_shared_budget(redis_url: str) -> None:
    """Two adaptive limiters of one key (two clients, as two processes would be) share the
    Redis budget below them: together they are granted no more than it allows."""
    import time

    async def main() -> list[float]:
        a = make_limiter(20, None, key="shared", redis_url=redis_url, period=1.0, adaptive=8)
        b = AdaptiveLimiter(8, inner=make_limiter(20, None, key="shared",
                                                  redis_url=redis_url, period=1.0))
        assert isinstance(a, AdaptiveLimiter)
        grants: list[float] = []

        async def client(lim: AdaptiveLimiter) -> None:
            for _ in range(15):
                await lim.acquire()
                grants.append(time.monotonic())
                lim.settle(200)

        await asyncio.gather(client(a), client(b))
        await a.close()
        await b.close()
        return grants

    grants = asyncio.run(main())
    grants.sort()
    in_first_second = sum(1 for t in grants if t < grants[0] + 1.0)
    assert len(grants) == 30 and in_first_second <= 20


async def _round(lim: AdaptiveLimiter, status: int = 200) -> int:
    """Fill every slot the limit allows, then answer them all with ``status``; returns how
    many went (one round trip of TCP's congestion window)."""
    sent = 0
    while lim.in_flight < max(1, int(lim.limit)):
        await lim.acquire()
        sent += 1
    for _ in range(sent):
        lim.settle(status)
    return sent


def test_slow_start_reaches_the_cap_in_logarithmically_many_rounds() -> None:
    clock = VirtualClock()

    async def main() -> list[int]:
        lim = AdaptiveLimiter(64, start=4, clock=clock, sleep=clock.sleep)
        sizes: list[int] = []
        while lim.limit < 64 and len(sizes) < 100:
            sizes.append(await _round(lim))
        assert lim.slow_start and lim.cuts == 0 and lim.rate is None
        return sizes

    sizes = asyncio.run(main())
    assert sizes == [4, 8, 16, 32]  # doubling per round: log2(64 / 4) rounds, not 60
    assert clock.sleeps == []  # nothing waited: slow start never blocked a free slot


def test_a_429_in_slow_start_cuts_once_and_ends_it() -> None:
    clock = VirtualClock()

    async def main() -> AdaptiveLimiter:
        lim = AdaptiveLimiter(64, start=4, beta=0.5, period=10.0, clock=clock,
                              sleep=clock.sleep)
        await _round(lim)  # 4 -> 8
        assert lim.limit == 8.0 and lim.slow_start
        for _ in range(8):
            await lim.acquire()
        lim.settle(429, retry_after=1.0)
        assert lim.limit == 4.0 and lim.threshold == 4.0 and not lim.slow_start
        for _ in range(7):  # the rest of the window: sent before the cut, the same episode
            lim.settle(429, retry_after=1.0)
        assert lim.cuts == 1 and lim.limit == 4.0 and lim.rate is not None
        clock.now += 1.0  # past the Retry-After
        lim.rate = None  # look at concurrency alone: a round no longer doubles it
        await _round(lim)
        additive = 4.0
        for _ in range(4):  # four clean answers, +1/limit each: about one per round
            additive += 1 / additive
        assert lim.limit == pytest.approx(additive) and not lim.slow_start
        return lim

    lim = asyncio.run(main())
    assert lim.rate_limited == 8


def test_an_overload_ends_slow_start_too() -> None:
    async def main() -> AdaptiveLimiter:
        lim = AdaptiveLimiter(64, start=10)
        await lim.acquire()
        lim.settle(503)
        await _round(lim)
        return lim

    lim = asyncio.run(main())
    assert lim.threshold == pytest.approx(7.0) and not lim.slow_start
    assert lim.limit < 8.0 and lim.rate is None  # one round adds about one, not seven


def test_the_docstring_states_slow_start_and_its_end() -> None:
    doc = " ".join((AdaptiveLimiter.__doc__ or "").split())
    assert "slow start" in doc and "one per clean answer" in doc
    assert "doubling per round" in doc and "ends slow start" in doc
    assert "one per round of clean answers" in doc  # additive increase after the cut
