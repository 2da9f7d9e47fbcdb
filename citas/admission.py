"""Admission control: a bound on turns in flight, a bound on messages queued per conversation,
and draining on shutdown.

A message waiting for its conversation's previous turn is queued, not in flight: it holds no
admission slot (a busy conversation cannot shut other businesses out), and at most
`max_queued` of one conversation wait in this process; past that, a fast 503."""

from __future__ import annotations

import asyncio
from collections.abc import Hashable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import structlog

from citas.errors import Overloaded

log = structlog.get_logger("citas.admission")


MAX_QUEUED_PER_CONVERSATION = 10


@dataclass(slots=True)
class Ticket:
    """A message's place in its conversation's queue, until its turn is admitted."""

    key: Hashable
    queued: bool = True


class Admission:
    """Turns beyond `limit` are refused at once (a fast 503) instead of piling up."""

    def __init__(self, limit: int, max_queued: int = MAX_QUEUED_PER_CONVERSATION) -> None:
        self.limit = limit
        self.max_queued = max_queued
        self.in_flight = 0
        self.draining = False
        self._queued: dict[Hashable, int] = {}
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def queued(self) -> int:
        """Messages waiting for their conversation, all conversations together."""
        return sum(self._queued.values())

    def check(self) -> None:
        """Raise the 503 that `admit` would raise now (a fast answer before anything starts)."""
        if self.draining:
            raise Overloaded(
                "el servicio se está reiniciando; reintente en unos segundos", 2, "draining"
            )
        if self.in_flight >= self.limit:
            raise Overloaded("el servicio está saturado; reintente en unos segundos", 1)

    @contextmanager
    def queue(self, key: Hashable) -> Iterator[Ticket]:
        """Hold a place in `key`'s queue until `admit(ticket)` (or the end); past `max_queued`
        waiting for one conversation, `Overloaded` (conversation_busy) at once."""
        waiting = self._queued.get(key, 0)
        if waiting >= self.max_queued:
            raise Overloaded(
                "la conversación está ocupada; reintente en unos segundos",
                reason="conversation_busy",
            )
        self._queued[key] = waiting + 1
        ticket = Ticket(key)
        try:
            yield ticket
        finally:
            self._leave(ticket)

    def _leave(self, ticket: Ticket) -> None:
        if not ticket.queued:
            return
        ticket.queued = False
        left = self._queued[ticket.key] - 1
        if left:
            self._queued[ticket.key] = left
        else:
            del self._queued[ticket.key]

    @contextmanager
    def admit(self, ticket: Ticket | None = None) -> Iterator[None]:
        """A turn in flight (its conversation held): counted against `limit` until it ends."""
        if ticket is not None:
            self._leave(ticket)
        self.check()
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
