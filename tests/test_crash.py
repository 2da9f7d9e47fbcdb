"""A real `citas serve` process killed with SIGKILL in the middle of a booking, on Redis: the
gateway's retry, on a fresh process, gets the booking made (one event), within the lock's TTL."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import suppress
from datetime import date, timedelta
from typing import Any

import aiohttp
import pytest

from citas.clock import system_clock
from citas.sandbox import Fault, RunningSandbox, SandboxBackend, SandboxSeed, start_sandbox
from citas.testing import FakeLLM, ModelScript, call, reply
from tests.conftest import chat_body
from tests.helpers import wait_until
from tests.served import serve_process

CUSTOMER = {"customer_name": "Ana Pérez", "customer_email": "ana.perez@example.com"}


def _next_open_afternoon() -> str:
    """A Monday to Thursday a week or more ahead (the seed's business 12 opens 15:00 then)."""
    day = system_clock().date() + timedelta(days=7)
    while day.weekday() > 3:
        day += timedelta(days=1)
    return date.isoformat(day)


@pytest.fixture
async def live_sandbox() -> AsyncIterator[RunningSandbox]:
    """The backend outlives the citas processes, on the real clock as they are."""
    running = await start_sandbox(SandboxBackend(SandboxSeed.load(), clock=system_clock))
    yield running
    await running.close()


@pytest.mark.wire
async def test_a_booking_committed_before_sigkill_is_confirmed_by_a_fresh_process(
    llm: ModelScript,
    fake_llm: FakeLLM,
    live_sandbox: RunningSandbox,
    redis_url: str,
    redis_prefix: str,
) -> None:
    env = {
        "OPENAI_BASE_URL": fake_llm.base_url,
        "OPENAI_API_KEY": "test-key",
        "CITAS_LLM_MAX_RETRIES": "0",
        "CITAS_CALENDAR_API_URL": live_sandbox.calendar_url,
        "CITAS_INFO_API_URL": live_sandbox.info_url,
        "CITAS_CONFIRM_BEFORE_BOOKING": "false",
        "REDIS_URL": redis_url,
        "CITAS_REDIS_PREFIX": redis_prefix,
        "CITAS_REDIS_LOCK_TTL_SECONDS": "3",
    }
    slot = {"date": _next_open_afternoon(), "time": "15:00"}
    body: dict[str, Any] = {
        **chat_body("Ana Pérez, ana.perez@example.com"),
        "message_id": "wamid.k",
    }
    async with aiohttp.ClientSession() as http:
        async with serve_process(env) as first:
            llm.add(call("check_availability", slot), reply("Libre."))
            # The day by its date: a weekday name would name another day on most days.
            asked = chat_body(f"¿El {slot['date']} a las 3 de la tarde?")
            checked = await http.post(f"{first.url}/api/chat", json=asked)
            assert checked.status == 200
            # The backend commits at once and answers 30 s late; the process is killed meanwhile.
            live_sandbox.backend.faults.add("CREAR_EVENTO", Fault("commit_then_late", seconds=30))
            llm.add(call("create_booking", {**slot, **CUSTOMER}))
            booking = asyncio.create_task(http.post(f"{first.url}/api/chat", json=body))
            await wait_until(lambda: live_sandbox.backend.events, timeout=30)
            first.process.kill()
            with suppress(aiohttp.ClientError):
                await booking
        [event] = live_sandbox.backend.events

        async with serve_process(env) as second:
            llm.add(call("create_booking", {**slot, **CUSTOMER}), reply("¡Listo!"))
            start = time.perf_counter()
            retry = await http.post(f"{second.url}/api/chat", json=body)
            waited = time.perf_counter() - start
            answer = await retry.json()
    assert retry.status == 200, answer
    assert answer["url"] == event.url and event.url in answer["reply"]
    assert live_sandbox.backend.events == [event]
    keys = {c["idempotency_key"] for c in live_sandbox.backend.calls_of("CREAR_EVENTO")}
    assert keys == {event.idempotency_key}
    assert waited < 3 + 2, "the dead holder's lock lapses within its TTL"
