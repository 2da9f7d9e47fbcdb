"""The in-process store: conversations, dedupe records and locks are all bounded, so nothing
grows per conversation seen; turns of one conversation run one at a time, in arrival order."""

from __future__ import annotations

import asyncio

import pytest

from citas.conversation import Conversation
from citas.domain import ConversationKey
from citas.errors import Overloaded
from citas.runtime import RUNTIME
from citas.store.memory import MemorySessionStore
from citas.testing.harness import LocalCitas


class FakeTimer:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _conversation(n: int) -> Conversation:
    return Conversation([[{"role": "user", "content": f"u{n}"}]])


async def test_conversations_replies_and_locks_stay_within_their_bound() -> None:
    store = MemorySessionStore(max_sessions=50, ttl_seconds=3600, lock_wait_seconds=5)
    for n in range(1000):
        key = ConversationKey(12, f"s{n}")
        async with store.lock(key):
            await store.save(key, _conversation(n))
            await store.remember_reply(key, f"wamid.{n}", {"reply": "ok"})
        assert len(store) <= 50 and store.replies_remembered <= 50 and store.locks_held == 0
    assert len(store) == 50 and store.replies_remembered == 50
    # The least recently used went first; the latest are still there.
    latest = ConversationKey(12, "s999")
    assert await store.load(latest) == _conversation(999)
    assert await store.recall_reply(latest, "wamid.999") == {"reply": "ok"}
    assert await store.load(ConversationKey(12, "s0")) == Conversation()


async def test_idle_conversations_and_replies_expire() -> None:
    timer = FakeTimer()
    store = MemorySessionStore(max_sessions=50, ttl_seconds=60, lock_wait_seconds=5, timer=timer)
    key = ConversationKey(12, "s")
    await store.save(key, _conversation(1))
    await store.remember_reply(key, "wamid.1", {"reply": "ok"})
    timer.now = 61
    assert await store.load(key) == Conversation()
    assert await store.recall_reply(key, "wamid.1") is None
    await store.save(ConversationKey(12, "other"), _conversation(2))  # purges expired entries
    assert len(store) == 1 and store.replies_remembered == 0


async def test_locks_exist_only_while_held_or_awaited_and_serve_in_order() -> None:
    store = MemorySessionStore(max_sessions=50, ttl_seconds=3600, lock_wait_seconds=5)
    key = ConversationKey(12, "s")
    entered: list[int] = []

    async def turn(n: int) -> None:
        async with store.lock(key):
            entered.append(n)

    async with store.lock(key):
        waiters = [asyncio.create_task(turn(n)) for n in range(5)]
        await asyncio.sleep(0)
        assert store.locks_held == 1  # one lock per conversation, however many wait
    await asyncio.gather(*waiters)
    assert entered == list(range(5))
    assert store.locks_held == 0


async def test_lock_wait_is_bounded_and_forgotten() -> None:
    store = MemorySessionStore(max_sessions=50, ttl_seconds=3600, lock_wait_seconds=0.01)
    key = ConversationKey(12, "s")
    async with store.lock(key):
        with pytest.raises(Overloaded):
            async with store.lock(key):
                pytest.fail("got a lock that is held")
    assert store.locks_held == 0


def test_without_redis_url_the_app_keeps_sessions_in_process(
    client: LocalCitas,
) -> None:
    assert isinstance(client.app[RUNTIME].store, MemorySessionStore)


async def test_a_turn_reads_while_held_and_ends_in_one_write() -> None:
    """The same `turn` contract as the Redis store (tests/test_store_redis.py)."""
    store = MemorySessionStore(max_sessions=10, ttl_seconds=60, lock_wait_seconds=1)
    key = ConversationKey(12, "s")
    await store.save(key, _conversation(1))
    first = await store.join_burst(key, "wamid.1", {"id": "a", "message_id": "wamid.1"})
    again = await store.join_burst(key, "wamid.1", {"id": "b", "message_id": "wamid.1"})
    assert (first.joined, again.joined, again.entry["id"]) == (True, False, "a")
    async with store.turn(key, "wamid.1", burst=True) as held:
        assert store.locks_held == 1
        assert held.conversation == _conversation(1) and held.earlier_reply is None
        assert [e["id"] for e in held.burst] == ["a"]
        held.conversation.turns.append([{"role": "user", "content": "more"}])
        await held.finish(conversation=held.conversation, reply={"reply": "ok"}, answered=1)
    assert store.locks_held == 0
    assert len((await store.load(key)).turns) == len(_conversation(1).turns) + 1
    async with store.turn(key, "wamid.1", burst=True) as replayed:
        assert replayed.earlier_reply == {"reply": "ok"} and replayed.burst == []
    answered = await store.join_burst(key, "wamid.1", {"id": "c", "message_id": "wamid.1"})
    assert answered.earlier_reply == {"reply": "ok"} and not answered.joined
