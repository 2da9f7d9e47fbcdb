"""Admission control: a bound on turns in flight, and draining on shutdown."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager

import structlog

from citas.errors import Overloaded

log = structlog.get_logger("citas.admission")


class Admission:
    """Turns beyond `limit` are refused at once (a fast 503) instead of piling up."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_flight = 0
        self.draining = False
        self._idle = asyncio.Event()
        self._idle.set()

    @contextmanager
    def admit(self) -> Iterator[None]:
        if self.draining:
            raise Overloaded(
                "el servicio se está reiniciando; reintente en unos segundos", 2, "draining"
            )
        if self.in_flight >= self.limit:
            raise Overloaded("el servicio está saturado; reintente en unos segundos", 1)
        self.in_flight += 1
        self._idle.clear()
        try:
            yield
        finally:
            self.in_flight -= 1
            if self.in_flight == 0:
                self._idle.set()

    async def drain(self, timeout: float) -> bool:
        """Refuse new turns and wait up to `timeout` for those in flight; True if all ended."""
        self.draining = True
        try:
            async with asyncio.timeout(timeout):
                await self._idle.wait()
        except TimeoutError:
            log.warning("drain_timeout", in_flight=self.in_flight)
            return False
        return True
