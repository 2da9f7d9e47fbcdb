"""The in-process store: conversations, locks and dedupe records, all bounded."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from cachetools import TTLCache

from citas.conversation import Conversation
from citas.domain import ConversationKey
from citas.errors import Overloaded
from citas.store.base import BurstPlace


class KeyedLocks:
    """One FIFO `asyncio.Lock` per key, kept only while someone holds or waits for it, so the
    number of locks is bounded by the requests in flight, not by the conversations seen."""

    def __init__(self, wait_seconds: float) -> None:
        self._wait_seconds = wait_seconds
        self._locks: dict[Any, tuple[asyncio.Lock, int]] = {}

    def __len__(self) -> int:
        return len(self._locks)

    @asynccontextmanager
    async def hold(self, key: Any) -> AsyncIterator[None]:
        lock, users = self._locks.get(key, (None, 0))
        if lock is None:
            lock = asyncio.Lock()
        self._locks[key] = (lock, users + 1)
        try:
            try:
                async with asyncio.timeout(self._wait_seconds):
                    await lock.acquire()
            except TimeoutError:
                raise Overloaded(
                    "la conversación está ocupada; reintente en unos segundos",
                    reason="conversation_busy",
                ) from None
            try:
                yield
            finally:
                lock.release()
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)


@dataclass
class _MemoryTurn:
    """`HeldTurn` of the in-process store: plain reads and writes while the lock is held."""

    store: MemorySessionStore
    key: ConversationKey
    message_id: str | None
    conversation: Conversation
    earlier_reply: dict[str, Any] | None
    burst: list[dict[str, Any]]

    async def finish(
        self,
        *,
        conversation: Conversation | None = None,
        reply: dict[str, Any] | None = None,
        answered: int = 0,
    ) -> None:
        if conversation is not None:
            await self.store.save(self.key, conversation)
        if reply is not None and self.message_id:
            await self.store.remember_reply(self.key, self.message_id, reply)
        if answered:
            self.store._take_burst(self.key, answered)


class MemorySessionStore:
    """Conversations in a TTL + LRU bounded cache (`max_sessions`, `ttl_seconds` idle)."""

    def __init__(
        self,
        max_sessions: int,
        ttl_seconds: float,
        lock_wait_seconds: float,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        self._conversations: TTLCache[ConversationKey, Conversation] = TTLCache(
            maxsize=max_sessions, ttl=ttl_seconds, timer=timer
        )
        self._replies: TTLCache[tuple[ConversationKey, str], dict[str, Any]] = TTLCache(
            maxsize=max_sessions, ttl=ttl_seconds, timer=timer
        )
        self._intents: TTLCache[tuple[ConversationKey, str], dict[str, Any]] = TTLCache(
            maxsize=max_sessions, ttl=ttl_seconds, timer=timer
        )
        self._locks = KeyedLocks(lock_wait_seconds)
        self._bursts: TTLCache[ConversationKey, list[dict[str, Any]]] = TTLCache(
            maxsize=max_sessions, ttl=ttl_seconds, timer=timer
        )

    def __len__(self) -> int:
        return len(self._conversations)

    @property
    def locks_held(self) -> int:
        return len(self._locks)

    @property
    def replies_remembered(self) -> int:
        return len(self._replies)

    async def load(self, key: ConversationKey) -> Conversation:
        saved = self._conversations.get(key)
        # Copies both ways: a caller changing its conversation never changes the stored one.
        return Conversation() if saved is None else saved.copy()

    async def save(self, key: ConversationKey, conversation: Conversation) -> None:
        self._conversations[key] = conversation.copy()

    def lock(self, key: ConversationKey) -> Any:
        return self._locks.hold(key)

    @asynccontextmanager
    async def turn(
        self, key: ConversationKey, message_id: str | None, *, burst: bool = False
    ) -> AsyncIterator[_MemoryTurn]:
        async with self._locks.hold(key):
            earlier = await self.recall_reply(key, message_id) if message_id else None
            conversation = await self.load(key)
            waiting = self._burst(key) if burst else []
            yield _MemoryTurn(self, key, message_id, conversation, earlier, waiting)

    async def recall_reply(self, key: ConversationKey, message_id: str) -> dict[str, Any] | None:
        return self._replies.get((key, message_id))

    async def remember_reply(
        self, key: ConversationKey, message_id: str, reply: dict[str, Any]
    ) -> None:
        self._replies[(key, message_id)] = reply

    async def remember_intent(
        self, key: ConversationKey, intent_key: str, intent: dict[str, Any]
    ) -> None:
        self._intents[(key, intent_key)] = dict(intent)

    async def recall_intent(self, key: ConversationKey, intent_key: str) -> dict[str, Any] | None:
        return self._intents.get((key, intent_key))

    async def join_burst(
        self, key: ConversationKey, message_id: str | None, entry: dict[str, Any]
    ) -> BurstPlace:
        if message_id:
            earlier = await self.recall_reply(key, message_id)
            if earlier is not None:
                return BurstPlace({}, earlier_reply=earlier)
            for waiting in self._burst(key):
                if waiting.get("message_id") == message_id:
                    return BurstPlace(waiting)
        self._bursts[key] = [*self._bursts.get(key, []), dict(entry)]
        return BurstPlace(dict(entry), joined=True)

    def _burst(self, key: ConversationKey) -> list[dict[str, Any]]:
        return [dict(entry) for entry in self._bursts.get(key, [])]

    def _take_burst(self, key: ConversationKey, count: int) -> None:
        left = self._bursts.get(key, [])[count:]
        if left:
            self._bursts[key] = left
        else:
            self._bursts.pop(key, None)

    async def count(self) -> int:
        self._conversations.expire()
        return len(self._conversations)

    async def ping(self) -> bool:
        return True

    async def close(self) -> None:
        self._conversations.clear()
        self._replies.clear()
        self._intents.clear()
        self._bursts.clear()
