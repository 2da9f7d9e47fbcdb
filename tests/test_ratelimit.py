"""Rate limits: token buckets per conversation and per business, in-process and in Redis."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import redis.asyncio
from redis.exceptions import RedisError

from citas.config import Settings
from citas.metrics import REGISTRY, SWALLOWED_ERRORS
from citas.ratelimit import (
    Bucket,
    BucketStore,
    MemoryBuckets,
    Rate,
    RateLimits,
    RedisBuckets,
    create_rate_limits,
)
from citas.runtime import RUNTIME
from citas.testing import ModelScript, reply
from citas.testing.harness import LocalCitas
from tests.conftest import chat_body

Client = LocalCitas
REDIS_URL = "redis://127.0.0.1:6379/0"

SLOW = Rate(per_second=1 / 3600, burst=2)  # no refill within a test


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def conversation(key: str = "c1", rate: Rate = SLOW) -> Bucket:
    return Bucket("conversation", key, rate)


def business(key: str = "12", rate: Rate = SLOW) -> Bucket:
    return Bucket("business", key, rate)


# --------------------------------------------------------------------------- both stores


@pytest.fixture
async def redis_prefix() -> AsyncIterator[tuple[Any, str]]:
    """A client of the real Redis and a key prefix of this test only (deleted afterwards)."""
    client = redis.asyncio.Redis.from_url(REDIS_URL)
    try:
        await client.ping()
    except (RedisError, OSError):
        await client.aclose()
        if os.environ.get("CI") == "true":
            pytest.fail("Redis at 127.0.0.1:6379 is required in CI")
        pytest.skip("no Redis at 127.0.0.1:6379")
    prefix = f"citas-test:{uuid.uuid4().hex}:"
    yield client, prefix
    keys = [key async for key in client.scan_iter(match=prefix + "*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


@pytest.fixture(params=["memory", "redis"])
def buckets(request: pytest.FixtureRequest) -> BucketStore:
    if request.param == "memory":
        return MemoryBuckets(ttl_seconds=7200)
    client, prefix = request.getfixturevalue("redis_prefix")
    return RedisBuckets(client, prefix)


async def test_burst_then_refused_with_the_wait(buckets: BucketStore) -> None:
    assert (await buckets.take([conversation()])).allowed
    assert (await buckets.take([conversation()])).allowed
    refused = await buckets.take([conversation()])
    assert not refused.allowed and refused.scope == "conversation"
    assert 3000 < refused.retry_after_seconds <= 3600  # one token at 1/h


async def test_buckets_are_separate_per_key(buckets: BucketStore) -> None:
    for _ in range(2):
        await buckets.take([conversation("a")])
    assert not (await buckets.take([conversation("a")])).allowed
    assert (await buckets.take([conversation("b")])).allowed


async def test_a_refusal_takes_no_token_from_the_other_scope(buckets: BucketStore) -> None:
    tight = business(rate=Rate(1 / 3600, 1))
    assert (await buckets.take([conversation(), tight])).allowed
    refused = await buckets.take([conversation(), tight])
    assert (refused.allowed, refused.scope) == (False, "business")
    # The conversation still has its second token: the business refusal did not spend it.
    assert (await buckets.take([conversation()])).allowed
    assert not (await buckets.take([conversation()])).allowed


async def test_concurrent_takes_never_exceed_the_burst(buckets: BucketStore) -> None:
    results = await asyncio.gather(
        *(buckets.take([conversation(rate=Rate(1 / 3600, 5))]) for _ in range(20))
    )
    assert sum(r.allowed for r in results) == 5


async def test_redis_buckets_refill_on_redis_time(redis_prefix: tuple[Any, str]) -> None:
    client, prefix = redis_prefix
    store = RedisBuckets(client, prefix)
    fast = conversation(rate=Rate(per_second=20, burst=1))
    assert (await store.take([fast])).allowed
    refused = await store.take([fast])
    assert not refused.allowed and 0 < refused.retry_after_seconds <= 0.05
    await asyncio.sleep(refused.retry_after_seconds + 0.01)
    assert (await store.take([fast])).allowed
    ttl_ms = await client.pttl(f"{prefix}conversation:c1")
    assert 0 < ttl_ms <= 1050  # one refill (50 ms) plus a second of slack, then gone


async def test_redis_buckets_are_shared_by_instances(redis_prefix: tuple[Any, str]) -> None:
    client, prefix = redis_prefix
    other = redis.asyncio.Redis.from_url(REDIS_URL)
    try:
        first, second = RedisBuckets(client, prefix), RedisBuckets(other, prefix)
        assert (await first.take([conversation()])).allowed
        assert (await second.take([conversation()])).allowed
        assert not (await first.take([conversation()])).allowed
    finally:
        await other.aclose()


async def test_redis_down_lets_messages_through_logged_and_counted() -> None:
    dead = redis.asyncio.Redis.from_url(
        "redis://127.0.0.1:1/0", socket_timeout=0.2, socket_connect_timeout=0.2
    )
    before = SWALLOWED_ERRORS.labels(where="rate_limit")._value.get()
    try:
        verdict = await RedisBuckets(dead, "x:").take([conversation()])
    finally:
        await dead.aclose()
    assert verdict.allowed
    assert SWALLOWED_ERRORS.labels(where="rate_limit")._value.get() == before + 1


# --------------------------------------------------------------------------- in-process only


async def test_memory_buckets_refill_with_time() -> None:
    clock = FakeClock()
    store = MemoryBuckets(ttl_seconds=60, clock=clock)
    rate = Rate(per_second=0.5, burst=2)
    for _ in range(2):
        assert (await store.take([conversation(rate=rate)])).allowed
    refused = await store.take([conversation(rate=rate)])
    assert refused.retry_after_seconds == pytest.approx(2.0)
    clock.now += 1.9
    assert not (await store.take([conversation(rate=rate)])).allowed
    clock.now += 0.2
    assert (await store.take([conversation(rate=rate)])).allowed


async def test_memory_buckets_are_bounded() -> None:
    clock = FakeClock()
    store = MemoryBuckets(ttl_seconds=4, maxsize=100, clock=clock)
    rate = Rate(per_second=0.5, burst=2)
    for n in range(1000):
        await store.take([conversation(str(n), rate)])
    assert len(store) == 100
    # An idle bucket is dropped once it would be full again: forgetting it changes nothing.
    clock.now += 4.1
    await store.take([conversation("new", rate)])
    assert len(store) == 1


def test_settings_pick_the_store() -> None:
    base = Settings.from_env({})
    assert isinstance(create_rate_limits(base)._store, MemoryBuckets)
    redis_backed = create_rate_limits(base.with_updates(redis_url=REDIS_URL))
    assert isinstance(redis_backed._store, RedisBuckets)
    off = base.with_updates(rate_conversation_per_minute=0, rate_business_per_minute=0)
    assert create_rate_limits(off)._store is None
    both = create_rate_limits(base.with_updates(rate_business_per_minute=120))
    assert both.business == Rate(2.0, 200) and both.conversation == Rate(0.5, 30)


def test_redis_buckets_live_under_the_deployments_prefix() -> None:
    # Two deployments on one Redis (different CITAS_REDIS_PREFIX) must not share buckets.
    base = Settings.from_env({}, REDIS_URL=REDIS_URL)
    for prefix in ("citas", "clinica-b"):
        limits = create_rate_limits(base.with_updates(redis_prefix=prefix))
        assert isinstance(limits._store, RedisBuckets)
        assert limits._store._prefix == f"{prefix}:ratelimit:"


# --------------------------------------------------------------------------- through the API

MakeClient = Callable[..., Awaitable[Client]]


def _limited(settings: Settings, **changes: Any) -> Settings:
    return settings.with_updates(
        **{
            "rate_conversation_per_minute": 1 / 60,
            "rate_conversation_burst": 2,
            "rate_business_per_minute": 0,
            **changes,
        }
    )


def _turn_routes(client: Client) -> list[str]:
    """Every POST under /api/ but the operator's `/api/conversations/...` (resume, a person's
    message: not customer turns, never rate-limited): a turn endpoint added later is covered
    without a new test."""
    return sorted(
        route.resource.canonical
        for route in client.app.router.routes()
        if route.method == "POST"
        and route.resource is not None
        and route.resource.canonical.startswith("/api/")
        and not route.resource.canonical.startswith("/api/conversations/")
    )


def _rejected(reason: str) -> float:
    return REGISTRY.get_sample_value("citas_rejected_requests_total", {"reason": reason}) or 0.0


async def test_conversation_limit_answers_429_with_retry_after(
    make_client: MakeClient, settings: Settings, llm: ModelScript
) -> None:
    client = await make_client(_limited(settings))
    llm.responder = lambda _body: reply("Hola")
    routes = _turn_routes(client)
    assert "/api/chat" in routes
    for n, route in enumerate(routes):
        session = f"rl-{n}"
        before = _rejected("rate_limited_conversation")
        for _ in range(2):
            ok = await client.post(route, json=chat_body("hola", session_id=session))
            assert ok.status == 200
            await ok.read()
        refused = await client.post(route, json=chat_body("hola", session_id=session))
        assert refused.status == 429, route
        assert 3000 < int(refused.headers["Retry-After"]) <= 3600
        assert (await refused.json())["error"]["code"] == "rate_limited"
        assert _rejected("rate_limited_conversation") == before + 1
        # Another conversation of the same business is not affected.
        other = await client.post(route, json=chat_body("hola", session_id=session + "-b"))
        assert other.status == 200
        await other.read()


async def test_business_limit_spans_its_conversations_only(
    make_client: MakeClient, settings: Settings, llm: ModelScript
) -> None:
    limited = _limited(
        settings,
        rate_conversation_per_minute=0,
        rate_business_per_minute=1 / 60,
        rate_business_burst=3,
    )
    client = await make_client(limited)
    llm.responder = lambda _body: reply("Hola")
    statuses = [
        (await client.post("/api/chat", json=chat_body("hola", session_id=f"s{n}"))).status
        for n in range(4)
    ]
    assert statuses == [200, 200, 200, 429]
    other = await client.post("/api/chat", json=chat_body("hola", session_id="s0", id_empresa=27))
    assert other.status == 200


async def test_limited_messages_never_reach_the_model(
    make_client: MakeClient, settings: Settings, llm: ModelScript
) -> None:
    client = await make_client(_limited(settings))
    llm.responder = lambda _body: reply("Hola")
    statuses = [(await client.post("/api/chat", json=chat_body("hola"))).status for _ in range(5)]
    assert statuses == [200, 200, 429, 429, 429]
    assert len(llm.requests) == 2


async def test_two_instances_share_the_limit_through_redis(
    make_client: MakeClient, settings: Settings, llm: ModelScript, redis_prefix: tuple[Any, str]
) -> None:
    client, prefix = redis_prefix
    shared = _limited(settings, redis_url=REDIS_URL)
    first, second = await make_client(shared), await make_client(shared)
    for app_client in (first, second):
        # Same buckets as the app wired from REDIS_URL, under this test's own prefix.
        runtime = app_client.app[RUNTIME]
        assert isinstance(runtime.rate_limits._store, RedisBuckets)
        await runtime.rate_limits.close()
        runtime.rate_limits = RateLimits(
            RedisBuckets(redis.asyncio.Redis.from_url(REDIS_URL), prefix),
            conversation=Rate(1 / 3600, 2),
        )
    llm.responder = lambda _body: reply("Hola")
    statuses = [
        (await app_client.post("/api/chat", json=chat_body("hola"))).status
        for app_client in (first, second, first, second)
    ]
    assert statuses == [200, 200, 429, 429]
    assert [key async for key in client.scan_iter(match=prefix + "conversation:*")]


async def test_a_redelivery_answered_from_memory_spends_no_token(
    make_client: MakeClient, settings: Settings, llm: ModelScript
) -> None:
    client = await make_client(_limited(settings))
    llm.responder = lambda _body: reply("Hola")
    body = {**chat_body("Hola"), "message_id": "wamid.same"}
    for _ in range(10):  # a gateway retrying one message: the first reply, every time
        response = await client.post("/api/chat", json=body)
        assert response.status == 200
    assert len(llm.requests) == 1
    # The burst of 2 is untouched but for that first message: one more new message passes.
    response = await client.post("/api/chat", json={**chat_body("Otra"), "message_id": "wamid.2"})
    assert response.status == 200
    response = await client.post("/api/chat", json={**chat_body("Más"), "message_id": "wamid.3"})
    assert response.status == 429
