"""The one cache layer: bounded TTL, single-flight loads, and stale-on-error."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

import structlog
from cachetools import TTLCache

from citas.metrics import CACHE_LOOKUPS, SWALLOWED_ERRORS
from citas.singleflight import SingleFlight

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
        self._flights: SingleFlight[K, V] = SingleFlight()

    async def get(self, key: K, load: Callable[[], Awaitable[V]]) -> V:
        try:
            value = self._fresh[key]
        except KeyError:
            pass
        else:
            CACHE_LOOKUPS.labels(result="hit").inc()
            return value
        # A caller that joins a load in flight causes no backend call: a hit.
        CACHE_LOOKUPS.labels(result="hit" if key in self._flights else "miss").inc()
        value, _ = await self._flights.run(key, lambda: self._load(key, load))
        return value

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
