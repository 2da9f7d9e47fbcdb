"""Several citas instances sharing one Redis: one continuous history, turns one at a time in
arrival order, redelivery answered once, and a Redis restart met with 503s and then recovery."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import suppress
from typing import Any

import aiohttp
import pytest
from redis.asyncio import Redis

from citas.api import turns
from citas.config import Settings
from citas.domain import ConversationKey
from citas.ratelimit import RedisBuckets
from citas.runtime import RUNTIME
from citas.sandbox import Fault, RunningSandbox
from citas.store.redis import Lane, RedisSessionStore
from citas.testing import ModelScript, call, reply
from citas.testing.harness import LocalCitas
from tests.conftest import chat_body, tool_results
from tests.redis_support import RedisServer, make_store, wait_queued

Client = LocalCitas
MakeClient = Callable[..., Awaitable[Client]]
KEY = ConversationKey(12, "51987654321")
SLOT = {"date": "2026-12-01", "time": "15:00"}
CUSTOMER = {"customer_name": "Ana Pérez", "customer_email": "ana.perez@example.com"}


async def _chat(
    client: Client, message: str, message_id: str | None = None
) -> aiohttp.ClientResponse:
    body: dict[str, Any] = chat_body(message, session_id=KEY.session_id, id_empresa=KEY.id_empresa)
    if message_id:
        body["message_id"] = message_id
    return await client.post("/api/chat", json=body)


def _user_messages(request: dict[str, Any]) -> list[str]:
    return [m["content"] for m in request["messages"] if m["role"] == "user"]


@pytest.fixture
async def instances(make_client: MakeClient, redis_settings: Settings) -> tuple[Client, Client]:
    """Two citas apps, A and B, behind one gateway, sharing Redis."""
    return await make_client(redis_settings), await make_client(redis_settings)


@pytest.fixture
async def gate(redis_url: str, redis_prefix: str) -> AsyncIterator[RedisSessionStore]:
    """A third party on the same keys: holding the conversation lets a test queue requests
    in a known order before any of them runs."""
    store = make_store(redis_url, redis_prefix)
    yield store
    await store.close()


async def test_instances_alternating_share_one_continuous_history(
    instances: tuple[Client, Client], llm: ModelScript
) -> None:
    a, b = instances
    assert isinstance(a.app[RUNTIME].store, RedisSessionStore)  # REDIS_URL picks the store
    llm.add(*(reply(f"r{n}") for n in range(4)))
    for n, client in enumerate((a, b, a, b)):
        response = await _chat(client, f"m{n}")
        assert (await response.json())["reply"] == f"r{n}"
    last = llm.requests[-1]["messages"]
    assert _user_messages(llm.requests[-1]) == ["m0", "m1", "m2", "m3"]
    assert [m["content"] for m in last if m["role"] == "assistant"] == ["r0", "r1", "r2"]


async def test_concurrent_messages_on_both_instances_run_one_at_a_time_in_order(
    instances: tuple[Client, Client], llm: ModelScript, gate: RedisSessionStore, redis_client: Redis
) -> None:
    a, b = instances
    llm.add(*(reply(f"r{n}") for n in range(6)))
    async with gate.lock(KEY):
        sent = []
        for n in range(6):
            sent.append(asyncio.create_task(_chat((a, b)[n % 2], f"m{n}")))
            await wait_queued(redis_client, gate, KEY, n + 1)  # arrival order is now known
    responses = await asyncio.gather(*sent)
    assert [(await r.json())["reply"] for r in responses] == [f"r{n}" for n in range(6)]
    # Each turn saw every earlier one: they ran one at a time, none lost, in arrival order.
    assert [_user_messages(request) for request in llm.requests] == [
        [f"m{k}" for k in range(n + 1)] for n in range(6)
    ]


async def test_redelivery_to_another_instance_gets_the_first_reply(
    instances: tuple[Client, Client], llm: ModelScript
) -> None:
    a, b = instances
    llm.add(reply("Hola, ¿en qué te ayudo?"))
    first = await _chat(a, "Hola", message_id="wamid.1")
    again = await _chat(b, "Hola", message_id="wamid.1")
    expected = {"reply": "Hola, ¿en qué te ayudo?", "url": None}
    assert await first.json() == expected
    assert await again.json() == expected
    assert len(llm.requests) == 1


async def test_concurrent_duplicate_deliveries_across_instances_run_the_agent_once(
    instances: tuple[Client, Client],
    llm: ModelScript,
    sandbox: RunningSandbox,
    gate: RedisSessionStore,
    redis_client: Redis,
) -> None:
    a, b = instances
    llm.add(call("check_availability", SLOT), reply("Libre."))
    await _chat(a, "¿Tienen el martes a las 3pm?")
    llm.add(call("create_booking", {**SLOT, **CUSTOMER}), reply("¡Listo!"))
    async with gate.lock(KEY):
        sent = []
        for n, client in enumerate((a, b, b, a)):
            sent.append(
                asyncio.create_task(_chat(client, "Ana Pérez, ana.perez@example.com", "w.9"))
            )
            await wait_queued(redis_client, gate, KEY, n + 1)
    bodies = [await r.json() for r in await asyncio.gather(*sent)]
    [event] = sandbox.backend.events
    assert bodies == [bodies[0]] * 4 and bodies[0]["url"] == event.url
    assert bodies[0]["reply"].startswith("¡Listo!") and event.url in bodies[0]["reply"]
    assert len(llm.requests) == 2 + 2  # the availability turn, then one booking turn


async def test_ready_reflects_the_store(
    make_client: MakeClient, settings: Settings, closed_port_url: str
) -> None:
    client = await make_client(settings.with_updates(redis_url=closed_port_url))
    ready = await client.get("/ready")
    assert (ready.status, await ready.json()) == (503, {"status": "store_unavailable"})
    response = await _chat(client, "Hola")
    assert response.status == 503
    assert (await response.json())["error"]["code"] == "unavailable"
    assert response.headers["Retry-After"] == "1"


async def test_redis_restart_mid_conversation_gives_503_then_recovers(
    make_client: MakeClient, settings: Settings, llm: ModelScript, own_redis: RedisServer
) -> None:
    client = await make_client(_private(settings, own_redis))
    llm.add(reply("r0"))
    assert (await (await _chat(client, "m0")).json())["reply"] == "r0"

    await own_redis.kill()
    down = await _chat(client, "m1", message_id="wamid.m1")
    assert down.status == 503
    assert (await down.json())["error"]["code"] == "unavailable"
    assert (await client.get("/ready")).status == 503
    assert len(llm.requests) == 1  # refused before the model was asked

    await own_redis.start()
    assert (await client.get("/ready")).status == 200
    llm.add(reply("r1"))
    again = await _chat(client, "m1", message_id="wamid.m1")  # the gateway's retry
    assert (await again.json())["reply"] == "r1"
    assert _user_messages(llm.requests[-1]) == ["m0", "m1"]  # history survived the restart


async def test_redis_dying_mid_turn_fails_the_turn_and_its_retry_runs_once(
    make_client: MakeClient, settings: Settings, llm: ModelScript, own_redis: RedisServer
) -> None:
    client = await make_client(_private(settings, own_redis))
    llm.add(reply("r0"))
    llm.delay_next(0.5)
    turn = asyncio.create_task(_chat(client, "m0", message_id="wamid.m0"))
    await _until(lambda: len(llm.requests) == 1)
    await own_redis.kill()  # while the model is thinking: the turn cannot be saved
    failed = await turn
    assert failed.status == 503
    assert (await failed.json())["error"]["code"] == "unavailable"

    await own_redis.start()
    llm.add(reply("r0 again"))
    retried = await _chat(client, "m0", message_id="wamid.m0")
    assert (await retried.json())["reply"] == "r0 again"
    assert _user_messages(llm.requests[-1]) == ["m0"]  # the failed turn left no half history
    llm.add(reply("r1"))
    await _chat(client, "m1")
    assert _user_messages(llm.requests[-1]) == ["m0", "m1"]


async def test_a_booking_made_before_redis_dies_is_reported_and_not_doubled(
    make_client: MakeClient,
    settings: Settings,
    llm: ModelScript,
    sandbox: RunningSandbox,
    own_redis: RedisServer,
) -> None:
    client = await make_client(_private(settings, own_redis))
    llm.add(call("check_availability", SLOT), reply("Libre."))
    await _chat(client, "¿El martes a las 3pm?")
    llm.add(call("create_booking", {**SLOT, **CUSTOMER}), reply("¡Listo!"))
    llm.delay_next(0.0)  # the model asks for the booking at once,
    llm.delay_next(0.5)  # and takes its time over the reply
    turn = asyncio.create_task(_chat(client, "Ana Pérez, ana.perez@example.com", "wamid.b"))
    await _until(lambda: len(llm.requests) == 4)  # the booking ran; the model writes the reply
    assert tool_results(llm.requests[-1])[-1]["reservado"] is True
    await own_redis.kill()
    answered = await turn
    [event] = sandbox.backend.events
    # The customer learns of the booking although its turn could not be saved.
    body = await answered.json()
    assert (answered.status, body["url"]) == (200, event.url)
    assert body["reply"].startswith("¡Listo!") and event.url in body["reply"]
    await own_redis.start()
    llm.add(call("create_booking", {**SLOT, **CUSTOMER}), reply("Ya estaba."))
    await _chat(client, "¿Quedó? Ana, ana.perez@example.com")
    assert len(sandbox.backend.events) == 1  # asking again never books twice


def _private(settings: Settings, server: RedisServer) -> Settings:
    # A short deadline bounds the lock wait, so a regression fails in seconds, not minutes.
    return settings.with_updates(redis_url=server.url, turn_deadline_seconds=5)


async def _until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(5):
        while not condition():  # noqa: ASYNC110 (the fake LLM has no event to wait on)
            await asyncio.sleep(0.005)


async def test_a_booking_committed_by_an_instance_that_died_is_confirmed_on_the_retry(
    make_client: MakeClient, redis_settings: Settings, llm: ModelScript, sandbox: RunningSandbox
) -> None:
    a = await make_client(redis_settings)
    llm.add(call("check_availability", SLOT), reply("Libre."))
    await _chat(a, "¿El martes a las 3pm?")
    # The backend commits at once and answers far too late; the instance dies meanwhile.
    sandbox.backend.faults.add("CREAR_EVENTO", Fault("commit_then_late", seconds=30))
    llm.add(call("create_booking", {**SLOT, **CUSTOMER}))
    first = asyncio.create_task(_chat(a, "Ana Pérez, ana.perez@example.com", "wamid.k"))
    await _until(lambda: len(sandbox.backend.events) == 1)
    for task in list(turns._RUNNING):  # killed: the turn stops where it is, nothing is saved
        task.cancel()
    first.cancel()
    with suppress(asyncio.CancelledError, aiohttp.ClientError):
        await first
    [event] = sandbox.backend.events

    # The gateway's retry, on a fresh instance sharing Redis: the slot is taken by this very
    # booking, so the answer is that booking, not "ese horario ya está ocupado".
    b = await make_client(redis_settings)
    llm.add(call("create_booking", {**SLOT, **CUSTOMER}), reply("¡Listo!"))
    answered = await _chat(b, "Ana Pérez, ana.perez@example.com", "wamid.k")
    body = await answered.json()
    assert answered.status == 200
    assert tool_results(llm.requests[-1])[-1]["reservado"] is True
    assert sandbox.backend.events == [event]
    assert body["url"] == event.url and event.url in body["reply"]
    keys = {c["idempotency_key"] for c in sandbox.backend.calls_of("CREAR_EVENTO")}
    assert keys == {event.idempotency_key}


async def test_one_redis_client_for_the_store_and_the_rate_limits_and_a_short_lock(
    make_client: MakeClient, redis_settings: Settings
) -> None:
    client = await make_client(redis_settings.with_updates(max_concurrent_turns=300))
    runtime = client.app[RUNTIME]
    store = runtime.store
    assert isinstance(store, RedisSessionStore)
    # The rate limits use the same client, under the deployment's prefix; both send on a lane
    # of their own (one pipelined connection each), so nothing is sized from admission.
    buckets = runtime.rate_limits._store
    assert isinstance(buckets, RedisBuckets) and buckets._redis is store._redis
    assert isinstance(store._lane, Lane) and isinstance(buckets._lane, Lane)
    assert store._lane is not buckets._lane
    assert buckets._prefix == f"{redis_settings.redis_prefix}:ratelimit:"
    # A dead holder blocks its conversation 15 s at most; a waiter gives up (503) after 20 s,
    # before a gateway's usual 30 s timeout.
    assert store._lock_ttl_ms == 15_000
    assert store._lock_wait == 20


async def test_500_concurrent_turns_on_redis_get_200_or_overloaded(
    make_client: MakeClient, redis_settings: Settings, llm: ModelScript
) -> None:
    client = await make_client(redis_settings)
    llm.responder = lambda _body: reply("Hola.")
    llm.delay = 0.3  # the model is slow: turns overlap
    bodies = [chat_body("Hola", session_id=f"s{n}") for n in range(500)]
    outcomes: dict[tuple[int, str], int] = {}
    # A session of its own: the harness's caps its connections at aiohttp's default 100.
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(client.base_url, connector=connector) as http:

        async def send(body: dict[str, Any]) -> None:
            async with http.post("/api/chat", json=body) as response:
                data = await response.json()
                message = "" if response.status == 200 else data["error"]["message"]
                outcomes[response.status, message] = outcomes.get((response.status, message), 0) + 1

        await asyncio.gather(*(send(b) for b in bodies))
    assert {status for status, _ in outcomes} <= {200, 503}, outcomes
    assert outcomes.get((200, ""), 0) >= 200, outcomes
    # Only the admission bound's 503 (overloaded), never "el almacén ... no responde".
    assert not any("almacén" in message for _, message in outcomes), outcomes
