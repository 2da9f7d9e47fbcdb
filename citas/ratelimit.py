"""Rate limits: token buckets per conversation and per business, in-process or in Redis.

A message takes one token from every bucket that applies, and only when each of them has one,
so a refusal by one scope never drains another. Refused → `RateLimited` (429 + Retry-After).
With `REDIS_URL` the buckets live in Redis (one Lua script, Redis's own clock), shared by every
instance; without it they live in a bounded in-process cache.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import redis.asyncio
import structlog
from cachetools import TTLCache
from redis.exceptions import RedisError

from citas.config import Settings
from citas.errors import RateLimited
from citas.metrics import SWALLOWED_ERRORS
from citas.store.redis import Lane

log = structlog.get_logger("citas.ratelimit")

REDIS_KEY_PREFIX = "citas:ratelimit:"
MAX_MEMORY_BUCKETS = 100_000


@dataclass(frozen=True, slots=True)
class Rate:
    """`per_second` tokens refill a bucket holding at most `burst`."""

    per_second: float
    burst: int

    @classmethod
    def per_minute(cls, count: float, burst: int) -> Rate | None:
        """None (no limit) for a rate of 0."""
        return cls(count / 60.0, burst) if count > 0 else None

    @property
    def refill_seconds(self) -> float:
        """How long an empty bucket takes to be full again."""
        return self.burst / self.per_second


@dataclass(frozen=True, slots=True)
class Bucket:
    scope: str  # "conversation" | "business"
    key: str
    rate: Rate


@dataclass(frozen=True, slots=True)
class Verdict:
    allowed: bool
    retry_after_seconds: float = 0.0
    scope: str | None = None  # the bucket that refused


class BucketStore(Protocol):
    async def take(self, buckets: Sequence[Bucket]) -> Verdict:
        """One token from each bucket if every one has it; else nothing taken."""
        ...

    async def close(self) -> None: ...


class MemoryBuckets:
    """Buckets in a TTL + LRU cache: an idle bucket is dropped once it would be full anyway,
    and at most `maxsize` are kept (evicting one only forgives its debt)."""

    def __init__(
        self,
        ttl_seconds: float,
        maxsize: int = MAX_MEMORY_BUCKETS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._clock = clock
        self._levels: TTLCache[tuple[str, str], tuple[float, float]] = TTLCache(
            maxsize=maxsize, ttl=ttl_seconds, timer=clock
        )

    def __len__(self) -> int:
        return len(self._levels)

    async def take(self, buckets: Sequence[Bucket]) -> Verdict:
        # No await inside: the read-modify-write is atomic for the event loop.
        now = self._clock()
        levels = []
        refusal = Verdict(True)
        for bucket in buckets:
            tokens, stamp = self._levels.get((bucket.scope, bucket.key), (bucket.rate.burst, now))
            tokens = min(bucket.rate.burst, tokens + max(0.0, now - stamp) * bucket.rate.per_second)
            levels.append(tokens)
            if tokens < 1:
                wait = (1 - tokens) / bucket.rate.per_second
                if wait > refusal.retry_after_seconds:
                    refusal = Verdict(False, wait, bucket.scope)
        taken = 1 if refusal.allowed else 0
        for bucket, tokens in zip(buckets, levels, strict=True):
            self._levels[(bucket.scope, bucket.key)] = (tokens - taken, now)
        return refusal

    async def close(self) -> None:
        self._levels.clear()


# KEYS: one per bucket; ARGV: rate (tokens/s) and burst per bucket, in KEYS order.
# Returns {index of the refusing bucket (0: none), seconds until it has a token}.
_TAKE_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local levels = {}
local refusing, wait = 0, 0
for i = 1, #KEYS do
  local rate, burst = tonumber(ARGV[2 * i - 1]), tonumber(ARGV[2 * i])
  local state = redis.call('HMGET', KEYS[i], 'tokens', 'stamp')
  local tokens, stamp = tonumber(state[1]), tonumber(state[2])
  if tokens == nil or stamp == nil then tokens, stamp = burst, now end
  tokens = math.min(burst, tokens + math.max(0, now - stamp) * rate)
  levels[i] = tokens
  if tokens < 1 and (1 - tokens) / rate > wait then
    refusing, wait = i, (1 - tokens) / rate
  end
end
local taken = 0
if refusing == 0 then taken = 1 end
for i = 1, #KEYS do
  local rate, burst = tonumber(ARGV[2 * i - 1]), tonumber(ARGV[2 * i])
  redis.call('HSET', KEYS[i], 'tokens', tostring(levels[i] - taken), 'stamp', tostring(now))
  redis.call('PEXPIRE', KEYS[i], math.ceil(burst / rate * 1000) + 1000)
end
return {refusing, tostring(wait)}
"""


class RedisBuckets:
    """Buckets shared by every instance: `<prefix><scope>:<key>` hashes with a TTL of one full
    refill. When Redis cannot answer, messages are let through (logged and counted): a limiter
    must not turn a Redis hiccup into an outage."""

    def __init__(
        self,
        client: redis.asyncio.Redis,
        prefix: str = REDIS_KEY_PREFIX,
        *,
        owns_client: bool = True,
        timeout_seconds: float = 0.5,
    ) -> None:
        self._redis = client
        self._prefix = prefix
        self._owns_client = owns_client
        self._take = client.register_script(_TAKE_SCRIPT)
        # Bounded on its own: a hung Redis delays a message by about `timeout_seconds` at most
        # here (then it is let through), whatever the shared client's socket timeouts: half of
        # it for each of the lane's two attempts (no timer of our own on top: CPU, issue 17).
        self._lane = Lane(client, timeout=timeout_seconds / 2)

    async def take(self, buckets: Sequence[Bucket]) -> Verdict:
        keys = [f"{self._prefix}{b.scope}:{b.key}" for b in buckets]
        args: list[float] = []
        for bucket in buckets:
            args += [bucket.rate.per_second, bucket.rate.burst]
        try:
            refusing, wait = await self._lane.script(self._take, keys=keys, args=args)
        except (RedisError, OSError) as exc:
            SWALLOWED_ERRORS.labels(where="rate_limit").inc()
            log.warning("rate_limit_unavailable", error=f"{type(exc).__name__}: {exc}")
            return Verdict(True)
        index = int(refusing)
        if index == 0:
            return Verdict(True)
        return Verdict(False, float(wait), buckets[index - 1].scope)

    async def close(self) -> None:
        await self._lane.close()
        if self._owns_client:  # a shared client is closed by its owner (the session store)
            await self._redis.aclose()


class RateLimits:
    """The policy: which buckets a message of a conversation of a business takes from."""

    def __init__(
        self,
        store: BucketStore | None,
        conversation: Rate | None = None,
        business: Rate | None = None,
    ) -> None:
        self._store = store
        self.conversation = conversation
        self.business = business

    @classmethod
    def off(cls) -> RateLimits:
        return cls(None)

    async def check(self, id_empresa: int, session_id: str) -> None:
        """Take this message's tokens or raise `RateLimited`."""
        if self._store is None:
            return
        buckets = []
        if self.conversation is not None:
            # Hashed: bounded keys, and no phone number (a WhatsApp session id) in Redis keys.
            digest = hashlib.blake2b(
                f"{id_empresa}:{session_id}".encode(), digest_size=16
            ).hexdigest()
            buckets.append(Bucket("conversation", digest, self.conversation))
        if self.business is not None:
            buckets.append(Bucket("business", str(id_empresa), self.business))
        verdict = await self._store.take(buckets)
        if not verdict.allowed:
            assert verdict.scope is not None
            log.info("rate_limited", scope=verdict.scope, retry_after_s=verdict.retry_after_seconds)
            raise RateLimited(verdict.scope, verdict.retry_after_seconds)

    async def close(self) -> None:
        if self._store is not None:
            await self._store.close()


def create_rate_limits(
    settings: Settings,
    clock: Callable[[], float] = time.monotonic,
    client: redis.asyncio.Redis | None = None,
) -> RateLimits:
    """In Redis when `REDIS_URL` is set, else in-process; no store at all when both are off.
    `client` is the app's one Redis client (the session store's); without it, one is built
    from the same settings. Keys live under `CITAS_REDIS_PREFIX`, like the store's."""
    conversation = Rate.per_minute(
        settings.rate_conversation_per_minute, settings.rate_conversation_burst
    )
    business = Rate.per_minute(settings.rate_business_per_minute, settings.rate_business_burst)
    rates = [r for r in (conversation, business) if r is not None]
    if not rates:
        return RateLimits.off()
    store: BucketStore
    if settings.redis_url:
        prefix = f"{settings.redis_prefix}:ratelimit:"
        if client is None:
            from citas.store.redis import connect

            own = connect(settings.redis_url, settings.redis_timeout_seconds)
            store = RedisBuckets(
                own, prefix, timeout_seconds=min(0.5, settings.redis_timeout_seconds)
            )
        else:
            store = RedisBuckets(
                client,
                prefix,
                owns_client=False,
                timeout_seconds=min(0.5, settings.redis_timeout_seconds),
            )
    else:
        store = MemoryBuckets(max(r.refill_seconds for r in rates), clock=clock)
    return RateLimits(store, conversation, business)
