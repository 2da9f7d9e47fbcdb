"""Graceful shutdown: SIGTERM to a real `python -m citas serve --sandbox` process."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from citas.runtime import RUNTIME
from citas.testing import FakeLLM, ModelScript, reply
from citas.testing.harness import LocalCitas
from tests.conftest import chat_body
from tests.helpers import wait_until

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Server:
    process: asyncio.subprocess.Process
    logs: list[dict[str, Any]] = field(default_factory=list)
    url: str = ""

    def events(self, name: str) -> list[dict[str, Any]]:
        return [e for e in self.logs if e.get("event") == name]


async def _collect(server: Server, stream: asyncio.StreamReader) -> None:
    async for line in stream:
        with suppress(ValueError):
            server.logs.append(json.loads(line))


@asynccontextmanager
async def citas_process(llm: FakeLLM, **env: str) -> AsyncIterator[Server]:
    """`python -m citas serve --sandbox` on a free port, its LLM being `llm`."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("CITAS_", "OPENAI_"))}
    clean.update(
        OPENAI_BASE_URL=llm.base_url, OPENAI_API_KEY="test-key", CITAS_LLM_MAX_RETRIES="0", **env
    )
    clean.pop("REDIS_URL", None)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        *("-m", "citas", "serve", "--sandbox", "--port", "0"),
        cwd=ROOT,
        env=clean,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stderr is not None
    server = Server(process)
    reader = asyncio.create_task(_collect(server, process.stderr))
    try:
        await wait_until(lambda: server.events("citas_listening") or reader.done(), timeout=30)
        [listening] = server.events("citas_listening")
        server.url = f"http://127.0.0.1:{listening['port']}"
        yield server
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()
        await reader


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


async def test_ready_and_chat_answer_503_while_draining(
    client: LocalCitas,
) -> None:
    assert (await client.get("/ready")).status == 200
    client.app[RUNTIME].admission.draining = True
    ready = await client.get("/ready")
    assert (ready.status, await ready.json()) == (503, {"status": "draining"})
    refused = await client.post("/api/chat", json=chat_body("Hola"))
    assert refused.status == 503 and refused.headers["Retry-After"] == "2"
