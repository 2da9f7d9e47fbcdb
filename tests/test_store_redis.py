"""The Redis session store against a real Redis: layout, TTLs, bounds, the cross-instance lock
(order, bounded wait, crashed holders and waiters), and failing fast when Redis is gone."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from citas.config import Settings
from citas.conversation import SCHEMA_VERSION, Conversation
from citas.domain import ConversationKey
from citas.errors import ConfigError, Overloaded, StoreUnavailable
from citas.store.redis import (
    RedisSessionStore,
    _decode_conversation,
    _encode_conversation,
    connect,
)
from tests.helpers import sample
from tests.redis_support import RedisServer, make_store, wait_queued

KEY = ConversationKey(12, "51987654321")


@pytest.fixture
async def store(redis_url: str, redis_prefix: str) -> AsyncIterator[RedisSessionStore]:
    store = make_store(redis_url, redis_prefix)
    yield store
    await store.close()


@pytest.fixture
async def other(redis_url: str, redis_prefix: str) -> AsyncIterator[RedisSessionStore]:
    """A second store on the same keys: another citas instance."""
    store = make_store(redis_url, redis_prefix)
    yield store
    await store.close()


def _turn(n: int) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"u{n}"}, {"role": "assistant", "content": f"a{n}"}]


async def test_key_layout_is_the_documented_one_and_injective(
    store: RedisSessionStore, redis_prefix: str
) -> None:
    base = f"{redis_prefix}:v{SCHEMA_VERSION}:{{12:51987654321}}"
    keys = store.keys(KEY)
    assert (keys.conv, keys.lock, keys.queue) == (f"{base}:conv", f"{base}:lock", f"{base}:queue")
    assert keys.reply("wamid.HBgL") == f"{base}:reply:wamid.HBgL"
    # Separators and hash-tag braces inside ids are encoded: no two conversations share a key.
    assert store.keys(ConversationKey(12, "a:b")).reply("c") != store.keys(
        ConversationKey(12, "a")
    ).reply("b:c")
    assert store.keys(ConversationKey(12, "x}y{z")).conv.count("{") == 1
    assert store.keys(ConversationKey(27, "51987654321")).conv != keys.conv


@pytest.mark.parametrize("prefix", ["a{b}", "a*", "a b", ""])
def test_a_prefix_that_would_break_the_layout_is_refused(prefix: str) -> None:
    with pytest.raises(ConfigError, match="CITAS_REDIS_PREFIX"):
        Settings.from_env({}, CITAS_REDIS_PREFIX=prefix)


async def test_saved_history_is_versioned_json_with_a_refreshed_ttl(
    store: RedisSessionStore, other: RedisSessionStore, redis_client: Redis
) -> None:
    conversation = await store.load(KEY)
    assert conversation == Conversation()
    conversation.turns.append(_turn(1))
    conversation.ledger.mark_verified("2026-12-01 15:00:00")
    conversation.ledger.record_booking("k1", {"event_id": "e1"})
    await store.save(KEY, conversation)

    name = store.keys(KEY).conv
    stored = json.loads(await redis_client.get(name))
    assert stored["v"] == SCHEMA_VERSION and stored["turns"] == [_turn(1)]
    assert 3500 < await redis_client.ttl(name) <= 3600

    await redis_client.expire(name, 10)
    assert await other.load(KEY) == conversation  # another instance sees the same state
    assert await redis_client.ttl(name) > 3500  # and reading it refreshed the time to live


async def test_unreadable_history_starts_afresh(
    store: RedisSessionStore, redis_client: Redis
) -> None:
    await redis_client.set(store.keys(KEY).conv, "{not json")
    assert await store.load(KEY) == Conversation()
    await redis_client.set(store.keys(KEY).conv, json.dumps({"v": 999, "turns": [_turn(1)]}))
    assert await store.load(KEY) == Conversation()


async def test_stored_history_length_is_bounded(redis_url: str, redis_prefix: str) -> None:
    store = make_store(redis_url, redis_prefix, max_messages=10)
    try:
        conversation = Conversation([_turn(n) for n in range(20)])
        conversation.ledger.mark_verified("2026-12-01 15:00:00")
        conversation.ledger.record_booking("k1", {"event_id": "e1"})
        conversation.ledger.mark_unsettled("k2")
        await store.save(KEY, conversation)
        saved = await store.load(KEY)
        assert saved.message_count() <= 10
        assert saved.turns[-1] == _turn(19)  # the latest turns are kept, whole
        # Trimming history never drops the ledger: an unanswered booking stays unsettled, so
        # asking again resends its key instead of calling our own event a taken slot.
        assert saved.ledger == conversation.ledger
        assert len(conversation.turns) == 20  # the caller's object is left alone
    finally:
        await store.close()


async def test_replies_are_remembered_per_conversation_with_ttl(
    store: RedisSessionStore, other: RedisSessionStore, redis_client: Redis
) -> None:
    reply = {"reply": "Hola", "url": None, "error": None}
    assert await store.recall_reply(KEY, "wamid.1") is None
    await store.remember_reply(KEY, "wamid.1", reply)
    assert await other.recall_reply(KEY, "wamid.1") == reply
    assert await other.recall_reply(ConversationKey(27, KEY.session_id), "wamid.1") is None
    assert 3500 < await redis_client.ttl(store.keys(KEY).reply("wamid.1")) <= 3600


async def test_lock_serves_waiters_of_all_instances_in_arrival_order(
    store: RedisSessionStore, other: RedisSessionStore, redis_client: Redis
) -> None:
    entered: list[int] = []
    active = 0

    async def turn(n: int, instance: RedisSessionStore) -> None:
        nonlocal active
        async with instance.lock(KEY):
            active += 1
            assert active == 1, "two turns of one conversation ran at once"
            entered.append(n)
            await asyncio.sleep(0.002)
            active -= 1

    async with store.lock(KEY):
        tasks = []
        for n in range(8):
            tasks.append(asyncio.create_task(turn(n, (store, other)[n % 2])))
            await wait_queued(redis_client, store, KEY, n + 1)
    await asyncio.gather(*tasks)
    assert entered == list(range(8))
    # Nothing is left behind but the ticket counter, and it expires.
    leftovers = [k async for k in redis_client.scan_iter(match=store.keys(KEY).conv[:-4] + "*")]
    assert leftovers == [store.keys(KEY).ticket]
    assert 0 < await redis_client.pttl(store.keys(KEY).ticket) <= 60_000


async def test_lock_wait_is_bounded_and_leaves_the_line(
    store: RedisSessionStore, redis_url: str, redis_prefix: str, redis_client: Redis
) -> None:
    impatient = make_store(redis_url, redis_prefix, lock_wait=0.1)
    try:
        async with store.lock(KEY):
            with pytest.raises(Overloaded):
                async with impatient.lock(KEY):
                    pytest.fail("got a lock that is held")
            assert await redis_client.zcard(store.keys(KEY).queue) == 0
    finally:
        await impatient.close()


async def test_cancelled_waiter_leaves_the_line(
    store: RedisSessionStore, other: RedisSessionStore, redis_client: Redis
) -> None:
    async def wait_forever() -> None:
        async with other.lock(KEY):
            pytest.fail("got a lock that is held")

    async with store.lock(KEY):
        waiter = asyncio.create_task(wait_forever())
        await wait_queued(redis_client, store, KEY, 1)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert await redis_client.zcard(store.keys(KEY).queue) == 0


async def test_a_crashed_holder_blocks_only_until_its_lock_expires(
    store: RedisSessionStore, redis_client: Redis
) -> None:
    # A holder that died mid-turn: its lock is there, nobody will release or renew it.
    await redis_client.set(store.keys(KEY).lock, "dead-holder", px=150)
    async with store.lock(KEY):
        assert await redis_client.get(store.keys(KEY).lock) not in (None, "dead-holder")


async def test_a_crashed_waiter_at_the_head_of_the_line_is_skipped(
    store: RedisSessionStore, redis_client: Redis
) -> None:
    keys = store.keys(KEY)
    # A waiter that died while first in line: queued, but its heartbeat has lapsed.
    await redis_client.zadd(keys.queue, {"dead-waiter": 0})
    await redis_client.zadd(keys.alive, {"dead-waiter": 1})
    async with asyncio.timeout(2), store.lock(KEY):
        assert await redis_client.zscore(keys.queue, "dead-waiter") is None


async def test_a_live_holder_keeps_its_lock_past_the_ttl(
    redis_url: str, redis_prefix: str, other: RedisSessionStore, redis_client: Redis
) -> None:
    short = make_store(redis_url, redis_prefix, lock_ttl=0.15)
    impatient = make_store(redis_url, redis_prefix, lock_wait=0.4)
    try:
        async with short.lock(KEY):
            token = await redis_client.get(short.keys(KEY).lock)
            # Longer than the TTL: only renewal keeps the lock from lapsing to the waiter.
            with pytest.raises(Overloaded):
                async with impatient.lock(KEY):
                    pytest.fail("a live holder lost its lock")
            assert await redis_client.get(short.keys(KEY).lock) == token
        assert await redis_client.get(short.keys(KEY).lock) is None
    finally:
        await short.close()
        await impatient.close()


async def test_unreachable_redis_is_store_unavailable(closed_port_url: str) -> None:
    store = make_store(closed_port_url, "citas-test-nowhere")
    try:
        assert await store.ping() is False
        with pytest.raises(StoreUnavailable):
            await store.load(KEY)
        with pytest.raises(StoreUnavailable):
            await store.save(KEY, Conversation())
        with pytest.raises(StoreUnavailable):
            await store.recall_reply(KEY, "wamid.1")
        with pytest.raises(StoreUnavailable):
            async with store.lock(KEY):
                pytest.fail("locked without Redis")
    finally:
        await store.close()


async def test_a_small_pool_queues_commands_instead_of_refusing_them(redis_url: str) -> None:
    # redis-py's default pool raised MaxConnectionsError past its bound: a 503 on a healthy
    # Redis. Bounded and blocking, commands beyond it wait for a connection.
    client = connect(redis_url, timeout_seconds=2.0, max_connections=4)
    try:
        results = await asyncio.gather(
            *(client.blpop([f"citas-test-nothing-{n}"], timeout=0.05) for n in range(40))
        )
        assert results == [None] * 40
        assert client.connection_pool.max_connections == 4
    finally:
        await client.aclose()


async def test_a_lock_won_unheard_while_redis_hung_is_released_when_it_resumes(
    own_redis: RedisServer,
) -> None:
    store = RedisSessionStore(
        connect(own_redis.url, timeout_seconds=0.3),
        prefix="citas-test-hung",
        ttl_seconds=3600,
        lock_wait_seconds=5,
        lock_ttl_seconds=60,
        max_messages=60,
        operation_timeout_seconds=0.6,
    )
    observer = Redis.from_url(own_redis.url, decode_responses=True)
    try:
        async with store.lock(KEY):  # a warm connection, the scripts loaded
            pass
        own_redis.pause()
        loop = asyncio.get_running_loop()
        for _ in range(2):
            start = loop.time()
            with pytest.raises(StoreUnavailable):
                async with store.lock(KEY):
                    pytest.fail("locked with Redis hung")
            assert loop.time() - start < 0.6 + 0.2  # every 503 after the same bounded time
        # Resumed, Redis runs the attempts queued meanwhile: one may take the lock for a
        # request that already answered 503. It must not wait out its TTL (60 s here).
        own_redis.resume()
        async with asyncio.timeout(8):
            while await observer.exists(store.keys(KEY).lock):  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        async with asyncio.timeout(1):
            async with store.lock(KEY):
                pass
    finally:
        own_redis.resume()
        await observer.aclose()
        await store.close()


# --- a turn: one script to hold and read, one to write and let go ----------------------------


async def test_a_turn_reads_with_the_lock_and_ends_in_one_write(
    store: RedisSessionStore, other: RedisSessionStore, redis_client: Redis
) -> None:
    keys = store.keys(KEY)
    await store.save(KEY, Conversation([_turn(1)]))
    await redis_client.expire(keys.conv, 10)
    await other.join_burst(KEY, "wamid.1", {"id": "b1", "message_id": "wamid.1"})
    async with store.turn(KEY, "wamid.2", burst=True) as held:
        assert await redis_client.get(keys.lock)  # held
        assert held.conversation == Conversation([_turn(1)]) and held.earlier_reply is None
        assert held.burst == [{"id": "b1", "message_id": "wamid.1"}]
        assert await redis_client.ttl(keys.conv) > 3500  # reading refreshed it, as GETEX
        held.conversation.turns.append(_turn(2))
        await held.finish(conversation=held.conversation, reply={"reply": "ok"}, answered=1)
        assert not await redis_client.exists(keys.lock)  # let go by the same write
    assert (await other.load(KEY)).turns == [_turn(1), _turn(2)]
    assert await other.recall_reply(KEY, "wamid.2") == {"reply": "ok"}
    assert 3500 < await redis_client.ttl(keys.reply("wamid.2")) <= 3600
    assert 3500 < await redis_client.ttl(keys.conv) <= 3600
    assert await redis_client.llen(keys.burst) == 0


async def test_a_turn_left_without_finishing_writes_nothing_and_lets_go(
    store: RedisSessionStore, redis_client: Redis
) -> None:
    with pytest.raises(RuntimeError):
        async with store.turn(KEY, "wamid.1") as held:
            held.conversation.turns.append(_turn(1))
            raise RuntimeError("the model failed")
    assert await store.load(KEY) == Conversation()
    assert await store.recall_reply(KEY, "wamid.1") is None
    assert not await redis_client.exists(store.keys(KEY).lock)


async def test_an_answered_message_gets_its_reply_without_waiting_for_the_lock(
    store: RedisSessionStore, other: RedisSessionStore, redis_client: Redis
) -> None:
    async with store.turn(KEY, "wamid.1") as held:
        await held.finish(conversation=held.conversation, reply={"reply": "first"})
    async with other.lock(KEY), asyncio.timeout(1):  # another turn holds the conversation
        async with store.turn(KEY, "wamid.1") as again:
            assert again.earlier_reply == {"reply": "first"}
        assert await redis_client.zcard(store.keys(KEY).queue) == 0  # it left no place in line


async def test_a_concurrent_duplicate_waits_for_the_first_and_gets_its_reply(
    store: RedisSessionStore, other: RedisSessionStore
) -> None:
    async with store.turn(KEY, "wamid.1") as first:
        duplicate = asyncio.create_task(_earlier(other, "wamid.1"))
        await asyncio.sleep(0.1)
        assert not duplicate.done()  # the first turn is still running
        await first.finish(conversation=first.conversation, reply={"reply": "once"})
    assert await duplicate == {"reply": "once"}


async def _earlier(store: RedisSessionStore, message_id: str) -> dict[str, object] | None:
    async with store.turn(KEY, message_id) as held:
        return held.earlier_reply


async def test_finishing_after_the_lock_was_lost_still_saves_and_says_so(
    store: RedisSessionStore, redis_client: Redis
) -> None:
    lost = sample("citas_handled_errors_total", where="store_lock_lost")
    async with store.turn(KEY, "wamid.1") as held:
        await redis_client.delete(store.keys(KEY).lock)  # expired while the turn ran
        held.conversation.turns.append(_turn(1))
        await held.finish(conversation=held.conversation, reply={"reply": "ok"})
    assert (await store.load(KEY)).turns == [_turn(1)]
    assert sample("citas_handled_errors_total", where="store_lock_lost") == lost + 1


async def test_a_redelivered_message_joins_its_burst_once(store: RedisSessionStore) -> None:
    first = await store.join_burst(KEY, "wamid.1", {"id": "a", "message_id": "wamid.1"})
    again = await store.join_burst(KEY, "wamid.1", {"id": "b", "message_id": "wamid.1"})
    assert (first.joined, again.joined, again.entry["id"]) == (True, False, "a")
    async with store.turn(KEY, "wamid.1", burst=True) as held:
        assert [e["id"] for e in held.burst] == ["a"]
        await held.finish(reply={"reply": "ok"}, answered=1)
    answered = await store.join_burst(KEY, "wamid.1", {"id": "c", "message_id": "wamid.1"})
    assert answered.earlier_reply == {"reply": "ok"} and not answered.joined


# --- the conversation's text: unchanged turns are not encoded again ---------------------------


def _history(count: int) -> Conversation:
    conversation = Conversation()
    for n in range(count):
        conversation.turns.append(
            [
                {"role": "user", "content": f'¿Hay hueco el día {n}? "comillas" y \\ y \n'},
                {"role": "assistant", "content": f"Sí, el día {n} 🙂"},
            ]
        )
    conversation.ledger.verified_slots.append({"date": "2026-12-01", "time": "15:00"})
    return conversation


def _plain(conversation: Conversation) -> str:
    return json.dumps(conversation.to_dict(), ensure_ascii=False, separators=(",", ":"))


@pytest.mark.parametrize("count", [0, 1, 5])
def test_the_conversation_text_is_what_json_dumps_wrote(count: int) -> None:
    conversation = _history(count)
    text = _encode_conversation(conversation, {})
    assert text == _plain(conversation)
    data, texts = _decode_conversation(text)
    assert data == json.loads(text)
    assert len(texts) == count
    # Read back, trimmed and grown by a turn: the same text as encoding it all again.
    again = Conversation.from_dict(data)
    if again.turns:
        again.turns.pop(0)
    again.turns.append([{"role": "user", "content": "nuevo"}])
    assert _encode_conversation(again, texts) == _plain(again)


def test_a_conversation_written_otherwise_is_still_read_whole() -> None:
    conversation = _history(2)
    spaced = json.dumps(conversation.to_dict(), ensure_ascii=False, indent=1)
    data, texts = _decode_conversation(spaced)
    assert data == conversation.to_dict() and texts == {}
    with pytest.raises(ValueError):
        _decode_conversation(_plain(conversation)[:-5])
