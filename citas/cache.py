"""The one cache layer: bounded TTL, single-flight loads, and stale-on-error."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

import structlog
from cachetools import TTLCache

from citas.metrics import CACHE_LOOKUPS, SWALLOWED_ERRORS

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

log = structlog.get_logger("citas.cache")


class SingleFlightCache(Generic[K, V]):
    """`get(key, load)` returns a fresh value, loading it at most once however many ask at once.

    When a refresh fails and the last good value expired less than `stale_seconds` ago, that
    value is served (logged and counted) instead of the error.
    """

    def __init__(
        self,
        ttl_seconds: float,
        maxsize: int = 1024,
        stale_seconds: float = 3600,
        *,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fresh: TTLCache[K, V] = TTLCache(maxsize=maxsize, ttl=ttl_seconds, timer=timer)
        self._stale: TTLCache[K, V] = TTLCache(
            maxsize=maxsize, ttl=ttl_seconds + stale_seconds, timer=timer
        )
        self._inflight: dict[K, asyncio.Task[V]] = {}

    async def get(self, key: K, load: Callable[[], Awaitable[V]]) -> V:
        try:
            value = self._fresh[key]
        except KeyError:
            pass
        else:
            CACHE_LOOKUPS.labels(result="hit").inc()
            return value
        task = self._inflight.get(key)
        if task is None:
            CACHE_LOOKUPS.labels(result="miss").inc()
            # The load is its own task, owned by no caller: whoever started it may be cancelled
            # (or time out) without failing the others who wait for the same key.
            task = asyncio.ensure_future(self._load(key, load))
            self._inflight[key] = task
            task.add_done_callback(lambda done: self._settled(key, done))
        else:
            CACHE_LOOKUPS.labels(result="hit").inc()
        return await asyncio.shield(task)

    def _settled(self, key: K, task: asyncio.Task[V]) -> None:
        if self._inflight.get(key) is task:
            del self._inflight[key]
        if not task.cancelled():
            task.exception()  # retrieved here: every waiter may have gone away

    async def _load(self, key: K, load: Callable[[], Awaitable[V]]) -> V:
        try:
            value = await load()
        except Exception as exc:
            stale = self._stale.get(key)
            if stale is None:
                raise
            CACHE_LOOKUPS.labels(result="stale").inc()
            SWALLOWED_ERRORS.labels(where="cache_refresh").inc()
            log.warning("cache_serving_stale", key=str(key), error=str(exc))
            return stale
        self._fresh[key] = value
        self._stale[key] = value
        return value

    def invalidate(self, key: K) -> None:
        self._fresh.pop(key, None)
