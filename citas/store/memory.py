"""The in-process store: conversations, locks and dedupe records, all bounded."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from cachetools import TTLCache

from citas.conversation import Conversation
from citas.domain import ConversationKey
from citas.errors import Overloaded


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

    async def add_to_burst(self, key: ConversationKey, entry: dict[str, Any]) -> None:
        self._bursts[key] = [*self._bursts.get(key, []), dict(entry)]

    async def burst(self, key: ConversationKey) -> list[dict[str, Any]]:
        return [dict(entry) for entry in self._bursts.get(key, [])]

    async def take_burst(self, key: ConversationKey, count: int) -> None:
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
