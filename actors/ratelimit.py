"""Request and token budgets for API clients: in-process, or shared across a cluster via Redis,
and adaptive concurrency (AIMD, slow start first) for keys whose limits nobody gave.

Both budget limiters run the same token bucket (``TokenBucket`` here, a Lua script in Redis),
sized so that no sliding window of ``period`` seconds ever sees more than the budget.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
import weakref
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeAlias, runtime_checkable

from pluralign.engine.jsontypes import JSONDict
from pluralign.engine.store.hashing import text_digest

log = logging.getLogger(__name__)

_EPS = 1e-9
TOKEN_BURST = 0.1
"""Token buckets hold a tenth of the budget: one large prompt must fit, a minute's worth must not."""


def key_id(api_key: str | None) -> str:
    """A short, stable, non-reversible name for an API key (what Redis keys and logs may show)."""
    if not api_key:
        return "anonymous"
    return text_digest(api_key, 16)


@runtime_checkable
class Limiter(Protocol):
    """Grants requests and tokens within a budget; ``acquire`` waits until both are available."""

    async def acquire(self, requests: int = 1, tokens: int = 0) -> None: ...

    def settle(self, status: int | None, retry_after: float | None = None) -> None:
        """How the request that ``acquire`` let through ended: its HTTP status (None when no
        answer came) and the server's Retry-After. Called once per ``acquire``."""
        ...

    async def close(self) -> None: ...


@dataclass(frozen=True)
class BucketSpec:
    """A token bucket that never lets a window of ``period`` seconds exceed ``limit``."""

    limit: float
    """Budget per window (requests or tokens)."""
    period: float = 60.0
    """Window length in seconds."""
    burst: float = 1.0
    """Bucket capacity: how many may go at once after an idle spell."""
    slack: float | None = None
    """Seconds of arrival jitter the budget absorbs (the refill is spread over period + slack);
    None = period / 120 (0.5 s for a minute), so scaled-down windows behave the same."""

    def __post_init__(self) -> None:
        if self.slack is None:
            object.__setattr__(self, "slack", self.period / 120)
        if not self.limit > 0 or not self.period > 0 or not self.burst > 0 or (
                self.slack is not None and self.slack < 0):
            raise ValueError(f"bad bucket: limit={self.limit} period={self.period} "
                             f"burst={self.burst} slack={self.slack}; all must be > 0")

    @property
    def capacity(self) -> float:
        # A burst of the whole budget would leave nothing to refill within the window.
        return min(self.burst, self.limit / 2)

    @property
    def rate(self) -> float:
        """Refill per second, so that capacity + rate * (period + slack) == limit."""
        return (self.limit - self.capacity) / (self.period + (self.slack or 0.0))


class TokenBucket:
    """Deterministic bucket arithmetic (no sleeping): callers pass the clock in."""

    def __init__(self, spec: BucketSpec, now: float) -> None:
        self.spec = spec
        self.level = spec.capacity
        self.stamp = now

    def refill(self, now: float) -> None:
        elapsed = max(0.0, now - self.stamp)
        self.level = min(self.spec.capacity, self.level + elapsed * self.spec.rate)
        self.stamp = max(self.stamp, now)

    def wait_for(self, amount: float) -> float:
        """Seconds until ``amount`` may be taken (after ``refill``).

        An amount above the capacity goes when the bucket is full and leaves it in debt, so
        large requests are slowed, never starved.
        """
        need = min(amount, self.spec.capacity)
        # The tolerance keeps float round-off from producing endless sub-nanosecond waits.
        return 0.0 if self.level >= need - _EPS else (need - self.level) / self.spec.rate

    def take(self, amount: float) -> None:
        self.level -= amount


def take_all(buckets: Sequence[tuple[TokenBucket, float]], now: float) -> float:
    """Take every (bucket, amount) at once and return 0.0, or take none and return the wait."""
    for bucket, _ in buckets:
        bucket.refill(now)
    wait = max((b.wait_for(a) for b, a in buckets if a > 0), default=0.0)
    if wait == 0.0:
        for bucket, amount in buckets:
            bucket.take(amount)
    return wait


def _specs(
    rpm: float | None, tpm: float | None, period: float, burst: float, slack: float | None
) -> tuple[BucketSpec | None, BucketSpec | None]:
    req = BucketSpec(rpm, period, burst, slack) if rpm else None
    tok = BucketSpec(tpm, period, max(1.0, tpm * TOKEN_BURST), slack) if tpm else None
    return req, tok


class LocalLimiter:
    """In-process RPM/TPM limits for the coroutines of one process (FIFO, no busy waiting)."""

    def __init__(
        self,
        rpm: float | None = None,
        tpm: float | None = None,
        *,
        period: float = 60.0,
        burst: float = 1.0,
        slack: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        """``clock`` and ``sleep`` are injectable so tests can run the limiter in virtual time."""
        self._clock = clock
        self._sleep = sleep
        req, tok = _specs(rpm, tpm, period, burst, slack)
        now = clock()
        self._req = TokenBucket(req, now) if req else None
        self._tok = TokenBucket(tok, now) if tok else None
        self._lock: asyncio.Lock | None = None  # made lazily: bound to the loop that uses it

    async def acquire(self, requests: int = 1, tokens: int = 0) -> None:
        pairs = [(b, float(a)) for b, a in ((self._req, requests), (self._tok, tokens)) if b]
        if not pairs:
            return
        if self._lock is None:
            self._lock = asyncio.Lock()
        # One waiter at a time at the head of the queue keeps grants in arrival order.
        async with self._lock:
            while (wait := take_all(pairs, self._clock())) > 0:
                await self._sleep(wait)

    def settle(self, status: int | None, retry_after: float | None = None) -> None:
        return None  # a fixed budget does not learn

    async def close(self) -> None:
        return None


# KEYS: one hash per bucket. ARGV: per bucket (capacity, rate, amount). Redis' own clock makes
# every node agree on time; effects replication (Redis >= 5) allows TIME in a writing script.
_LUA_TAKE_ALL = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local levels, wait = {}, 0
for i, key in ipairs(KEYS) do
  local cap = tonumber(ARGV[3*i-2]); local rate = tonumber(ARGV[3*i-1])
  local amount = tonumber(ARGV[3*i])
  local s = redis.call('HMGET', key, 'level', 'stamp')
  local level = tonumber(s[1]) or cap
  local stamp = tonumber(s[2]) or now
  level = math.min(cap, level + math.max(0, now - stamp) * rate)
  levels[i] = level
  local need = math.min(amount, cap)
  if amount > 0 and level < need - 1e-9 then wait = math.max(wait, (need - level) / rate) end
end
for i, key in ipairs(KEYS) do
  local cap = tonumber(ARGV[3*i-2]); local rate = tonumber(ARGV[3*i-1])
  local level = levels[i]
  if wait == 0 then level = level - tonumber(ARGV[3*i]) end
  redis.call('HSET', key, 'level', tostring(level), 'stamp', tostring(now))
  redis.call('PEXPIRE', key, math.ceil(1000 * (cap - level) / rate) + 60000)
end
return tostring(wait)
"""


FALLBACK_SHARE = 0.25
"""While Redis is unreachable each process sends at this share of the shared budget."""


RedisClient: TypeAlias = Any
"""A ``redis.asyncio.Redis`` client or registered script, imported only where Redis is used
(its command methods are typed as sync-or-async unions, which each call would have to undo)."""


def _redis_errors() -> tuple[type[BaseException], ...]:
    from redis.exceptions import RedisError

    return (RedisError, OSError, TimeoutError)


class RedisLimiter:
    """The same bucket in Redis (one atomic Lua call), shared by every process using one key.

    If Redis goes away the limiter degrades instead of failing: it says so in one warning line,
    grants from a local bucket at ``fallback_share`` of the budget, retries Redis with
    exponential backoff, and says so again (one line) when the shared budget is back.
    """

    def __init__(
        self,
        url: str,
        key: str,
        rpm: float | None = None,
        tpm: float | None = None,
        *,
        period: float = 60.0,
        burst: float = 1.0,
        slack: float | None = None,
        prefix: str = "pluralign:ratelimit",
        fallback_share: float = FALLBACK_SHARE,
        retry_max: float = 30.0,
    ) -> None:
        """``key`` names the shared budget: pass ``key_id(api_key)``, never the key itself."""
        self._url = url
        req, tok = _specs(rpm, tpm, period, burst, slack)
        self._buckets = [(f"{prefix}:{key}:{kind}", spec)
                         for kind, spec in (("requests", req), ("tokens", tok)) if spec]
        self._client: RedisClient = None
        self._script: RedisClient = None
        self._lock: asyncio.Lock | None = None
        share = fallback_share
        self._fallback = LocalLimiter(rpm * share if rpm else None, tpm * share if tpm else None,
                                      period=period, burst=burst, slack=slack)
        self._fallback_text = ", ".join(
            f"{v * share:g} {unit} per {period:g}s"
            for v, unit in ((rpm, "requests"), (tpm, "tokens")) if v)
        self._retry_max = retry_max
        self._down_since: float | None = None
        self._next_try = 0.0
        self._backoff = 0.5
        self.outages = 0
        """Times Redis was lost (each one logged as one warning line)."""

    def __repr__(self) -> str:
        return f"RedisLimiter(buckets={[k for k, _ in self._buckets]})"

    def _ensure(self) -> None:
        if self._client is None:
            import redis.asyncio as aioredis

            # Bounded timeouts: a Redis that stops answering must not stall every request.
            self._client = aioredis.Redis.from_url(self._url, socket_connect_timeout=2.0,
                                                   socket_timeout=5.0)
            self._script = self._client.register_script(_LUA_TAKE_ALL)
            self._lock = asyncio.Lock()

    async def try_acquire(self, requests: int = 1, tokens: int = 0) -> float:
        """Take both amounts and return 0.0, or take nothing and return the seconds to wait."""
        if not self._buckets:
            return 0.0
        self._ensure()
        amounts = {"requests": requests, "tokens": tokens}
        keys = [k for k, _ in self._buckets]
        args: list[float] = []
        for k, spec in self._buckets:
            args += [spec.capacity, spec.rate, float(amounts[k.rsplit(":", 1)[1]])]
        return float(await self._script(keys=keys, args=args))

    async def acquire(self, requests: int = 1, tokens: int = 0) -> None:
        if not self._buckets:
            return
        self._ensure()
        assert self._lock is not None
        # The local lock queues this process' waiters so they do not all poll Redis at once.
        async with self._lock:
            while True:
                if self._down_since is not None and time.monotonic() < self._next_try:
                    await self._fallback.acquire(requests, tokens)
                    return
                try:
                    wait = await self.try_acquire(requests, tokens)
                except asyncio.CancelledError:
                    raise
                except _redis_errors() as e:
                    self._lost(e)
                    continue
                self._back()
                if wait <= 0:
                    return
                await asyncio.sleep(wait)

    def settle(self, status: int | None, retry_after: float | None = None) -> None:
        return None  # a fixed budget does not learn

    def _lost(self, error: BaseException) -> None:
        now = time.monotonic()
        if self._down_since is None:
            self._down_since = now
            self._backoff = 0.5
            self.outages += 1
            log.warning("rate limit: Redis unreachable (%s); sending at a local limit of %s "
                        "until it is back (retrying with backoff)",
                        type(error).__name__, self._fallback_text)
        else:
            self._backoff = min(self._retry_max, self._backoff * 2)
        self._next_try = now + self._backoff

    def _back(self) -> None:
        if self._down_since is not None:
            log.warning("rate limit: Redis is back after %.1fs; shared budget resumed",
                        time.monotonic() - self._down_since)
            self._down_since = None

    async def close(self) -> None:
        if self._client is not None:
            try:
                await self._client.aclose()
            except _redis_errors():
                pass
            self._client = None


OVERLOADED = frozenset({429, 503, 529})
"""Statuses that mean "slow down": rate limited, unavailable, overloaded (Anthropic's 529)."""


class AdaptiveLimiter:
    """AIMD for an endpoint whose limits are unknown, with TCP's slow start: concurrency starts
    at ``start`` and, until the first cut, grows by one per clean answer (doubling per round of
    answers) up to ``max_concurrency``, so a short run is not spent below what the endpoint
    allows. A 429 or an overload cuts it by ``beta`` and ends slow start for good: the cut value
    becomes the threshold, and from there it grows by one per round of clean answers (+1/limit
    each), the additive increase of "Congestion Avoidance and Control" (Jacobson, 1988). A 429
    also pauses every send until its Retry-After and paces sends at ``rate_beta`` of the rate
    the server accepted over the last ``period`` (providers count limits per minute; over the
    run so far while it is younger), a rate that then grows by ``rate_gain`` of itself per
    period while answers come back clean.

    One cut per episode: a 429 of a request sent before the last cut does not cut again. A
    budget ``inner`` (a token bucket, in Redis or here) is still obeyed: AIMD adapts below it.
    """

    def __init__(
        self,
        max_concurrency: int,
        *,
        inner: Limiter | None = None,
        start: int = 4,
        beta: float = 0.7,
        rate_beta: float = 0.9,
        rate_gain: float = 0.05,
        period: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if max_concurrency < 1 or not 0 < beta < 1 or not 0 < rate_beta <= 1 or period <= 0:
            raise ValueError(f"bad AIMD settings: max_concurrency={max_concurrency} "
                             f"beta={beta} rate_beta={rate_beta} period={period}")
        self.max = int(max_concurrency)
        self.limit = float(min(max(1, start), self.max))
        """Current concurrency (float; floor() requests may be in flight)."""
        self.threshold = math.inf
        """Slow start grows ``limit`` by one per clean answer below this; the first cut sets it
        to the cut value (TCP's ssthresh), after which growth is additive."""
        self.rate: float | None = None
        """Requests per second once a 429 taught one, else None (no pacing)."""
        self.in_flight = 0
        self.waiting = 0
        self.rate_limited = 0
        """429s and overload answers seen."""
        self.cuts = 0
        self.answered = 0
        self._inner = inner
        self._beta, self._rate_beta, self._gain, self._period = beta, rate_beta, rate_gain, period
        self._clock, self._sleep = clock, sleep
        self._pause_until = 0.0
        self._next_send = 0.0
        self._last_cut = -math.inf
        self._first: float | None = None  # when the first clean answer came
        self._sent: deque[float] = deque()  # send times of requests in flight (oldest first)
        self._accepted: deque[float] = deque()  # answer times of clean answers, last period
        self._lock: asyncio.Lock | None = None
        self._freed: asyncio.Event | None = None
        _ADAPTIVE.add(self)

    def __repr__(self) -> str:
        return f"AdaptiveLimiter({self.describe()})"

    @property
    def slow_start(self) -> bool:
        """True until the first cut: growth is exponential (one per clean answer)."""
        return self.limit < self.threshold

    def describe(self) -> str:
        """``concurrency 6/16, 12 x 429, 3 waiting`` (what the progress line shows)."""
        rate = f", {self.rate * 60:.0f}/min" if self.rate else ""
        return (f"concurrency {int(self.limit)}/{self.max}{rate}, {self.rate_limited} x 429, "
                f"{self.waiting} waiting")

    def _wait(self, now: float) -> float | None:
        """Seconds to sleep before the next send (inf: until a slot frees), None: go now."""
        if now < self._pause_until:
            return self._pause_until - now
        if self.in_flight >= max(1, math.floor(self.limit)):
            return math.inf
        if self.rate and now < self._next_send - _EPS:
            return self._next_send - now
        return None

    async def acquire(self, requests: int = 1, tokens: int = 0) -> None:
        if self._lock is None:
            self._lock, self._freed = asyncio.Lock(), asyncio.Event()
        assert self._freed is not None
        self.waiting += 1
        try:
            async with self._lock:  # FIFO: one waiter at the head of the queue
                while (wait := self._wait(self._clock())) is not None:
                    if wait == math.inf:
                        self._freed.clear()
                        await self._freed.wait()
                    else:
                        await self._sleep(wait)
                now = self._clock()
                self.in_flight += 1
                self._sent.append(now)
                if self.rate:
                    self._next_send = max(now, self._next_send) + 1.0 / self.rate
        finally:
            self.waiting -= 1
        if self._inner is not None:
            try:
                await self._inner.acquire(requests, tokens)
            except BaseException:
                self.settle(None)
                raise

    def settle(self, status: int | None, retry_after: float | None = None) -> None:
        now = self._clock()
        sent_at = self._sent.popleft() if self._sent else now
        self.in_flight = max(0, self.in_flight - 1)
        if self._freed is not None:
            self._freed.set()
        if status in OVERLOADED:
            self._slow_down(now, sent_at, status, retry_after)
        elif status is not None and status < 400:
            self._speed_up(now)
        if self._inner is not None:
            self._inner.settle(status, retry_after)

    def _slow_down(self, now: float, sent_at: float, status: int | None,
                   retry_after: float | None) -> None:
        self.rate_limited += 1
        if retry_after:
            self._pause_until = max(self._pause_until, now + retry_after)
        if sent_at <= self._last_cut:
            return  # sent before the last cut: the same episode
        self._last_cut = now
        self.cuts += 1
        self.limit = max(1.0, self.limit * self._beta)
        self.threshold = self.limit  # slow start is over: additive increase from here
        if status == 429:
            while self._accepted and self._accepted[0] <= now - self._period:
                self._accepted.popleft()
            # The rate the server accepted over the last period, or over the run so far while
            # it is younger than that (a young run's window holds only its first answers).
            span = self._period if self._first is None else min(
                self._period, max(now - self._first, 1e-3))
            accepted = len(self._accepted) / span
            floor = 1.0 / self._period  # at least one request per period
            base = accepted if accepted > 0 else (self.rate or floor)
            self.rate = max(floor, self._rate_beta * base)
            self._next_send = max(self._next_send, self._pause_until)

    def _speed_up(self, now: float) -> None:
        self.answered += 1
        if self._first is None:
            self._first = now
        self._accepted.append(now)
        while self._accepted and self._accepted[0] <= now - self._period:
            self._accepted.popleft()
        step = 1.0 if self.slow_start else 1.0 / self.limit
        self.limit = min(float(self.max), self.limit + step)
        if self.rate:
            # rate_gain of the rate per period: rate * period answers arrive in one period.
            self.rate += self._gain / self._period

    async def close(self) -> None:
        if self._inner is not None:
            await self._inner.close()


_ADAPTIVE: weakref.WeakSet[AdaptiveLimiter] = weakref.WeakSet()


def adaptive_status() -> str:
    """What every adaptive limiter of this process is doing, for the progress line ("" when
    none is in use)."""
    return "; ".join(lim.describe() for lim in list(_ADAPTIVE) if lim.answered or lim.in_flight
                     or lim.rate_limited)


_SharedKey: TypeAlias = tuple[str, float | None, float | None, float, int]
"""(key id, rpm, tpm, period): clients with equal ones share a limiter."""
_SHARED: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[_SharedKey, Limiter]]
_SHARED = weakref.WeakKeyDictionary()


def make_limiter(
    rpm: float | None,
    tpm: float | None,
    *,
    key: str,
    redis_url: str | None = None,
    period: float = 60.0,
    adaptive: int = 0,
) -> Limiter:
    """A RedisLimiter when ``redis_url`` is given (one budget across the cluster), else the
    LocalLimiter every client of this key shares on this event loop (one budget per process).
    ``adaptive`` > 0 wraps that budget in an :class:`AdaptiveLimiter` of at most that many
    requests in flight (shared likewise by the clients of this key in this process)."""
    def budget() -> Limiter:
        if redis_url:
            return RedisLimiter(redis_url, key, rpm, tpm, period=period)
        return LocalLimiter(rpm, tpm, period=period)

    def build() -> Limiter:
        inner = budget()
        if not adaptive:
            return inner
        return AdaptiveLimiter(adaptive, inner=inner if (rpm or tpm) else None, period=period)

    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return build()
    if redis_url and not adaptive:
        return build()
    # Keyed by loop too: an asyncio lock cannot be shared between event loops.
    shared = _SHARED.setdefault(loop, {})
    id_ = (key, rpm, tpm, period, adaptive)
    if id_ not in shared:
        shared[id_] = build()
    return shared[id_]


class RedisStatus:
    """Job status and progress in Redis: a hash ``<prefix>:<job>`` plus a pub/sub channel."""

    def __init__(self, url: str, job_id: str, *, prefix: str = "pluralign:job",
                 ttl: float = 7 * 24 * 3600) -> None:
        self._url = url
        self._key = f"{prefix}:{job_id}"
        self._ttl = int(ttl)
        self._client: RedisClient = None
        self._down = False

    @property
    def key(self) -> str:
        return self._key

    @property
    def channel(self) -> str:
        return f"{self._key}:events"

    def _redis(self) -> RedisClient:
        if self._client is None:
            import redis.asyncio as aioredis

            self._client = aioredis.Redis.from_url(self._url, socket_connect_timeout=2.0,
                                                   socket_timeout=5.0)
        return self._client

    async def publish(self, fields: Mapping[str, object]) -> None:
        """Merge ``fields`` into the hash (values as JSON) and publish them on the channel."""
        if not fields:
            return
        encoded = {k: json.dumps(v) for k, v in fields.items()}
        client = self._redis()
        try:
            async with client.pipeline(transaction=True) as pipe:
                pipe.hset(self._key, mapping=encoded)
                pipe.expire(self._key, self._ttl)
                pipe.publish(self.channel, json.dumps(dict(fields)))
                await pipe.execute()
        except _redis_errors() as e:  # status is advisory: one line per outage, never a stop
            if not self._down:
                self._down = True
                log.warning("job status: Redis unreachable (%s); status updates skipped until "
                            "it is back", type(e).__name__)
            return
        if self._down:
            self._down = False
            log.warning("job status: Redis is back; status updates resumed")

    async def read(self) -> JSONDict:
        """The current hash, values decoded from JSON."""
        raw = await self._redis().hgetall(self._key)
        return {k.decode(): json.loads(v) for k, v in raw.items()}

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
