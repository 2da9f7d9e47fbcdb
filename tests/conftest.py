"""Shared fixtures: the sandbox backend and the fake LLM as real servers on 127.0.0.1, and the
citas app wired to both with a frozen clock."""

from __future__ import annotations

import inspect
import json
import unittest.mock
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import aioresponses.core
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from citas.app import create_app
from citas.clock import frozen_clock
from citas.config import Settings
from citas.sandbox import RunningSandbox, SandboxBackend, SandboxSeed, start_sandbox
from citas.testing import FakeLLM

# aioresponses 0.7.9 does not support aiohttp 3.14 (ClientResponse gained a required
# `stream_writer`): upstream issue pnuckowski/aioresponses#289, fix pending in PR #288.
# Delete this shim once a fixed aioresponses is released.
if "stream_writer" in inspect.signature(aiohttp.ClientResponse.__init__).parameters:

    class _ClientResponse(aiohttp.ClientResponse):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs.setdefault("stream_writer", unittest.mock.Mock(output_size=0))
            super().__init__(*args, **kwargs)

    aioresponses.core.ClientResponse = _ClientResponse  # type: ignore[misc]

# Redis fixtures (shared server with per-test prefixes, a private killable server).
pytest_plugins = ["tests.redis_support"]

LIMA = ZoneInfo("America/Lima")
# Monday 2026-11-30 10:00 in Lima; the clinic (business 12) is open 09:00-13:00 and 15:00-19:00.
NOW = datetime(2026, 11, 30, 10, 0, tzinfo=LIMA)

ChatFn = Callable[..., Awaitable[aiohttp.ClientResponse]]


@pytest.fixture
def now() -> datetime:
    return NOW


@pytest.fixture
async def sandbox(now: datetime) -> AsyncIterator[RunningSandbox]:
    running = await start_sandbox(SandboxBackend(SandboxSeed.load(), clock=frozen_clock(now)))
    yield running
    await running.close()


@pytest.fixture
async def llm() -> AsyncIterator[FakeLLM]:
    async with FakeLLM() as fake:
        yield fake
        assert not fake.rejections, f"the fake LLM rejected requests: {fake.rejections}"


@pytest.fixture
def settings(sandbox: RunningSandbox, llm: FakeLLM) -> Settings:
    return Settings.from_env(
        {},
        OPENAI_API_KEY="test-key",
        OPENAI_BASE_URL=llm.base_url,
        CITAS_CALENDAR_API_URL=sandbox.calendar_url,
        CITAS_INFO_API_URL=sandbox.info_url,
        CITAS_LLM_MAX_RETRIES=0,
        CITAS_LLM_TIMEOUT_SECONDS=5,
        CITAS_BACKEND_TOTAL_TIMEOUT=2,
        CITAS_BACKEND_READ_TIMEOUT=1,
    )


@pytest.fixture
def make_client(
    aiohttp_client: Any, now: datetime
) -> Callable[..., Awaitable[TestClient[web.Request, web.Application]]]:
    async def make(settings: Settings, **kwargs: Any) -> TestClient[web.Request, web.Application]:
        app = create_app(settings, clock=frozen_clock(now), **kwargs)
        return await aiohttp_client(app)  # type: ignore[no-any-return]

    return make


@pytest.fixture
async def client(
    make_client: Callable[..., Awaitable[TestClient[web.Request, web.Application]]],
    settings: Settings,
) -> TestClient[web.Request, web.Application]:
    return await make_client(settings)


def chat_body(
    message: str, session_id: str = "51987654321", id_empresa: int = 12, **config: Any
) -> dict[str, Any]:
    config.setdefault("usuario_id", 7)
    config.setdefault("duracion_cita_minutos", 30)
    return {
        "message": message,
        "session_id": session_id,
        "context": {"config": {"id_empresa": id_empresa, **config}},
    }


@pytest.fixture
def chat(client: TestClient[web.Request, web.Application]) -> ChatFn:
    async def send(message: str, **kwargs: Any) -> aiohttp.ClientResponse:
        message_id = kwargs.pop("message_id", None)
        body = chat_body(message, **kwargs)
        if message_id:
            body["message_id"] = message_id
        return await client.post("/api/chat", json=body)

    return send


def tool_results(request_body: dict[str, Any]) -> list[dict[str, Any]]:
    """The tool results (decoded) that the model was sent in one LLM request."""
    return [json.loads(m["content"]) for m in request_body["messages"] if m["role"] == "tool"]
