"""The one cache layer: bounded TTL, single-flight loads, and stale-on-error."""

from __future__ import annotations

import asyncio
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

    When a refresh fails and a value younger than `stale_seconds` exists, that value is served
    (logged and counted) instead of the error.
    """

    def __init__(
        self, ttl_seconds: float, maxsize: int = 1024, stale_seconds: float = 3600
    ) -> None:
        self._fresh: TTLCache[K, V] = TTLCache(maxsize=maxsize, ttl=ttl_seconds)
        self._stale: TTLCache[K, V] = TTLCache(maxsize=maxsize, ttl=stale_seconds)
        self._inflight: dict[K, asyncio.Future[V]] = {}

    async def get(self, key: K, load: Callable[[], Awaitable[V]]) -> V:
        try:
            value = self._fresh[key]
        except KeyError:
            pass
        else:
            CACHE_LOOKUPS.labels(result="hit").inc()
            return value
        pending = self._inflight.get(key)
        if pending is not None:
            CACHE_LOOKUPS.labels(result="hit").inc()
            # shield: one waiter being cancelled must not cancel the load the others await.
            return await asyncio.shield(pending)
        CACHE_LOOKUPS.labels(result="miss").inc()
        future: asyncio.Future[V] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            value = await self._load(key, load)
        except asyncio.CancelledError:
            future.cancel()
            raise
        except Exception as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved: nobody else may be waiting
            raise
        else:
            future.set_result(value)
            return value
        finally:
            del self._inflight[key]

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
