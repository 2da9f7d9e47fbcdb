"""The one cache layer: single-flight, stale-on-error, and both seen through the HTTP API."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from citas.cache import SingleFlightCache
from citas.config import Settings
from citas.sandbox import Fault, RunningSandbox
from citas.testing import ModelScript, reply
from citas.testing.harness import MetricsDelta
from tests.conftest import chat_body

INFO_OPERATIONS = (
    "OBTENER_CONTEXTO_NEGOCIO",
    "OBTENER_PREGUNTAS_FRECUENTES",
    "OBTENER_HORARIO_REUNIONES",
    "OBTENER_SERVICIOS_CITAS",
    "OBTENER_PRODUCTOS_CITAS",
)


class Timer:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Loader:
    """A load that counts its calls and can be held open or made to fail."""

    def __init__(self, value: str = "v1") -> None:
        self.calls = 0
        self.value = value
        self.error: Exception | None = None
        self.gate = asyncio.Event()
        self.gate.set()

    async def __call__(self) -> str:
        self.calls += 1
        await self.gate.wait()
        if self.error is not None:
            raise self.error
        return self.value


async def test_concurrent_misses_share_one_load() -> None:
    cache: SingleFlightCache[int, str] = SingleFlightCache(ttl_seconds=60)
    load = Loader()
    load.gate.clear()
    waiters = [asyncio.create_task(cache.get(1, load)) for _ in range(50)]
    await asyncio.sleep(0)
    load.gate.set()
    assert await asyncio.gather(*waiters) == ["v1"] * 50
    assert load.calls == 1
    assert await cache.get(1, load) == "v1" and load.calls == 1


async def test_a_cancelled_first_caller_does_not_fail_the_others() -> None:
    cache: SingleFlightCache[int, str] = SingleFlightCache(ttl_seconds=60)
    load = Loader()
    load.gate.clear()
    first = asyncio.create_task(cache.get(1, load))
    await asyncio.sleep(0)
    second = asyncio.create_task(cache.get(1, load))
    await asyncio.sleep(0)
    first.cancel()
    load.gate.set()
    assert await second == "v1"
    assert first.cancelled() and load.calls == 1


async def test_a_failed_load_reaches_every_waiter_and_is_not_cached() -> None:
    cache: SingleFlightCache[int, str] = SingleFlightCache(ttl_seconds=60)
    load = Loader()
    load.error = RuntimeError("backend down")
    load.gate.clear()
    waiters = [asyncio.create_task(cache.get(1, load)) for _ in range(3)]
    await asyncio.sleep(0)
    load.gate.set()
    results = await asyncio.gather(*waiters, return_exceptions=True)
    assert all(isinstance(r, RuntimeError) for r in results) and load.calls == 1
    load.error = None
    assert await cache.get(1, load) == "v1" and load.calls == 2


async def test_stale_on_error_serves_the_last_good_value_for_a_bounded_time() -> None:
    timer = Timer()
    cache: SingleFlightCache[int, str] = SingleFlightCache(
        ttl_seconds=10, stale_seconds=100, timer=timer
    )
    load = Loader("good")
    assert await cache.get(1, load) == "good"
    load.error = RuntimeError("backend down")
    delta = MetricsDelta()

    timer.now = 11  # expired: a refresh is attempted, fails, the last good value serves
    assert await cache.get(1, load) == "good"
    timer.now = 109
    assert await cache.get(1, load) == "good"
    assert load.calls == 3
    assert delta.of("citas_cache_lookups_total", result="stale") == 2
    assert delta.of("citas_handled_errors_total", where="cache_refresh") == 2

    timer.now = 111  # more than stale_seconds past expiry: the error surfaces
    with pytest.raises(RuntimeError, match="backend down"):
        await cache.get(1, load)


async def test_a_successful_refresh_replaces_the_stale_value() -> None:
    timer = Timer()
    cache: SingleFlightCache[int, str] = SingleFlightCache(ttl_seconds=10, timer=timer)
    load = Loader("old")
    await cache.get(1, load)
    timer.now = 11
    load.value = "new"
    assert await cache.get(1, load) == "new"


# --------------------------------------------------------------------------- through HTTP

MakeClient = Callable[..., Awaitable[Any]]


def info_calls(sandbox: RunningSandbox) -> Counter[str]:
    return Counter(
        body["codOpe"] for _, body in sandbox.backend.calls if body["codOpe"] in INFO_OPERATIONS
    )


async def test_100_concurrent_first_messages_make_one_call_per_info_operation(
    make_client: MakeClient, settings: Settings, llm: ModelScript, sandbox: RunningSandbox
) -> None:
    llm.responder = lambda body: reply("¡Hola! ¿En qué te ayudo?")
    client = await make_client(settings)
    delta = MetricsDelta()
    responses = await asyncio.gather(
        *(
            client.post("/api/chat", json=chat_body("Hola", session_id=f"5190000{n:04d}"))
            for n in range(100)
        )
    )
    assert [r.status for r in responses] == [200] * 100
    assert info_calls(sandbox) == dict.fromkeys(INFO_OPERATIONS, 1)
    assert len(llm.requests) == 100
    assert delta.of("citas_cache_lookups_total", result="miss") == 1


async def test_stale_business_info_keeps_answering_when_the_backend_fails(
    make_client: MakeClient, settings: Settings, llm: ModelScript, sandbox: RunningSandbox
) -> None:
    client = await make_client(
        settings.with_updates(business_cache_ttl_seconds=0.05, backend_max_tries=1)
    )
    llm.add(reply("Hola."), reply("Abrimos de 9 a 13 y de 15 a 19."))
    first = await client.post("/api/chat", json=chat_body("Hola"))
    assert first.status == 200
    for operation in INFO_OPERATIONS:
        sandbox.backend.faults.add(operation, Fault("status", http_status=503), times=None)
    await asyncio.sleep(0.1)  # past the TTL: the next turn must refresh, and the refresh fails
    delta = MetricsDelta()

    second = await client.post("/api/chat", json=chat_body("¿Qué horario tienen?"))
    assert await second.json() == {"reply": "Abrimos de 9 a 13 y de 15 a 19.", "url": None}
    assert delta.of("citas_cache_lookups_total", result="stale") == 1
    assert sandbox.backend.faults.triggered  # the refresh really was tried
    # The model got the same business data: the system prompt is byte-identical.
    assert llm.requests[1]["messages"][0] == llm.requests[0]["messages"][0]
