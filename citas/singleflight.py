"""Single-flight: concurrent calls for one key share one run of the work."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class SingleFlight(Generic[K, V]):
    """`await flights.run(key, work)` → `(value, shared)`; `shared` is True for the callers that
    joined a run another caller started.

    The run is its own task, owned by no caller: whoever started it may be cancelled (or time
    out) without failing the others who wait for the same key, and without abandoning the work
    half-done (a booking in flight completes).
    """

    def __init__(self) -> None:
        self._inflight: dict[K, asyncio.Task[V]] = {}

    def __len__(self) -> int:
        return len(self._inflight)

    def __contains__(self, key: K) -> bool:
        return key in self._inflight

    async def run(self, key: K, work: Callable[[], Awaitable[V]]) -> tuple[V, bool]:
        task = self._inflight.get(key)
        shared = task is not None
        if task is None:
            task = asyncio.ensure_future(work())
            self._inflight[key] = task
            task.add_done_callback(lambda done: self._settled(key, done))
        return await asyncio.shield(task), shared

    def _settled(self, key: K, task: asyncio.Task[V]) -> None:
        if self._inflight.get(key) is task:
            del self._inflight[key]
        if not task.cancelled():
            task.exception()  # retrieved here: every waiter may have gone away
