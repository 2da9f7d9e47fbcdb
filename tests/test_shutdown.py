"""Graceful shutdown: SIGTERM to a real `python -m citas serve --sandbox` process."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
import pytest

from citas.runtime import RUNTIME
from citas.testing import FakeLLM, ModelScript, reply
from citas.testing.harness import LocalCitas
from tests.conftest import chat_body
from tests.helpers import wait_until
from tests.served import Server, serve_process


@asynccontextmanager
async def citas_process(llm: FakeLLM, **env: str) -> AsyncIterator[Server]:
    """`python -m citas serve --sandbox` on a free port, its LLM being `llm`."""
    endpoint = {"OPENAI_BASE_URL": llm.base_url, "OPENAI_API_KEY": "test-key"}
    async with serve_process(
        {**endpoint, "CITAS_LLM_MAX_RETRIES": "0", **env}, "--sandbox"
    ) as server:
        yield server


@pytest.mark.wire
async def test_sigterm_drains_in_flight_turns_while_ready_says_503(
    llm: ModelScript, fake_llm: FakeLLM
) -> None:
    llm.responder = lambda body: reply("Hola, ¿en qué te ayudo?")
    llm.delay_next(2.0)  # the turn in flight when SIGTERM arrives
    async with citas_process(fake_llm) as server, aiohttp.ClientSession() as http:
        in_flight = asyncio.create_task(
            http.post(f"{server.url}/api/chat", json=chat_body("Hola", session_id="51900000001"))
        )
        await wait_until(lambda: llm.requests)
        server.process.send_signal(signal.SIGTERM)
        await wait_until(lambda: server.events("drain_started"))

        ready = await http.get(f"{server.url}/ready")
        assert (ready.status, await ready.json()) == (503, {"status": "draining"})
        refused = await http.post(
            f"{server.url}/api/chat", json=chat_body("Hola", session_id="51900000002")
        )
        assert refused.status == 503 and refused.headers["Retry-After"] == "2"
        assert (await refused.json())["error"]["code"] == "unavailable"

        finished = await in_flight
        assert finished.status == 200
        assert await finished.json() == {"reply": "Hola, ¿en qué te ayudo?", "url": None}
        assert await asyncio.wait_for(server.process.wait(), timeout=30) == 0
    [started] = server.events("drain_started")
    [drained] = server.events("drain_finished")
    assert started["in_flight"] == 1 and started["bound_s"] == 25
    assert drained["drained"] is True and drained["in_flight"] == 0
    assert server.events("citas_stopped")
    assert len(llm.requests) == 1, "the refused turn never reached the model"


@pytest.mark.wire
async def test_sigterm_stops_waiting_for_a_turn_past_the_drain_bound(
    llm: ModelScript, fake_llm: FakeLLM
) -> None:
    llm.responder = lambda body: reply("demasiado tarde")
    llm.delay_next(60)
    async with (
        citas_process(fake_llm, CITAS_SHUTDOWN_DRAIN_SECONDS="0.5") as server,
        aiohttp.ClientSession() as http,
    ):
        in_flight = asyncio.create_task(http.post(f"{server.url}/api/chat", json=chat_body("Hola")))
        await wait_until(lambda: llm.requests)
        server.process.send_signal(signal.SIGTERM)
        # Far below the model's 60 s: the process does not wait for the turn.
        assert await asyncio.wait_for(server.process.wait(), timeout=30) == 0
        try:
            response = await in_flight
        except aiohttp.ClientError:
            pass  # cut off: the gateway sees a dropped connection and may redeliver
        else:
            raise AssertionError(f"a turn past the bound was answered: {response.status}")
    [drained] = server.events("drain_finished")
    assert drained["drained"] is False and drained["in_flight"] == 1
    assert server.events("drain_timeout") and server.events("citas_stopped")


@pytest.mark.wire
async def test_a_second_signal_ends_the_drain_wait(llm: ModelScript, fake_llm: FakeLLM) -> None:
    llm.responder = lambda body: reply("demasiado tarde")
    llm.delay_next(60)
    # The turn continues without its client after the cut-off, and the app's cleanup waits
    # for it too (up to the bound again): a short bound keeps the test short; the drain ending
    # at once, `drain_interrupted`, is the second signal's doing.
    async with (
        citas_process(fake_llm, CITAS_SHUTDOWN_DRAIN_SECONDS="3") as server,
        aiohttp.ClientSession() as http,
    ):
        in_flight = asyncio.create_task(http.post(f"{server.url}/api/chat", json=chat_body("Hola")))
        await wait_until(lambda: llm.requests)
        server.process.send_signal(signal.SIGTERM)
        await wait_until(lambda: server.events("drain_started"))
        server.process.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(server.process.wait(), timeout=30) == 0
        with pytest.raises(aiohttp.ClientError):
            await in_flight
    [interrupted] = server.events("drain_interrupted")
    [drained] = server.events("drain_finished")
    assert interrupted["in_flight"] == 1 and drained["drained"] is False
    assert server.events("citas_stopped")


async def test_ready_and_chat_answer_503_while_draining(
    client: LocalCitas,
) -> None:
    assert (await client.get("/ready")).status == 200
    client.app[RUNTIME].admission.draining = True
    ready = await client.get("/ready")
    assert (ready.status, await ready.json()) == (503, {"status": "draining"})
    refused = await client.post("/api/chat", json=chat_body("Hola"))
    assert refused.status == 503 and refused.headers["Retry-After"] == "2"
