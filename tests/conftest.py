"""Shared fixtures: the sandbox backend on 127.0.0.1, a fake model answering from a script, and
citas served by the harness with a frozen clock.

The model is in-process (`ScriptedModel`) unless a test is marked `wire`: then the same script is
served by an OpenAI-compatible server on 127.0.0.1 (`FakeLLM`) and reached over HTTP, as in
production. Either way the fake refuses what the real API refuses, and a test whose citas sent
such a request fails.
"""

from __future__ import annotations

import inspect
import json
import unittest.mock
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import aioresponses.core
import pytest

from citas.agent.model import ChatModel
from citas.agent.tools.context import TurnContext
from citas.clock import frozen_clock
from citas.config import Settings
from citas.customer_words import CustomerWords
from citas.domain import ConversationKey, Tenant
from citas.ledger import BookingLedger
from citas.sandbox import RunningSandbox, SandboxBackend, SandboxSeed, start_sandbox
from citas.testing import FakeLLM, ModelScript, ScriptedModel
from citas.testing.harness import LocalCitas

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
MakeClient = Callable[..., Awaitable[LocalCitas]]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "wire: the fake model is reached over HTTP by the LLM client (FakeLLM)"
    )


@pytest.fixture
def now() -> datetime:
    return NOW


@pytest.fixture
async def sandbox(now: datetime) -> AsyncIterator[RunningSandbox]:
    running = await start_sandbox(SandboxBackend(SandboxSeed.load(), clock=frozen_clock(now)))
    yield running
    await running.close()


@pytest.fixture
def llm() -> Iterator[ModelScript]:
    """What the fake model answers (`add`, `responder`, `fail_next`, ...) and was asked
    (`requests`)."""
    script = ModelScript()
    yield script
    assert not script.rejections, f"the fake model refused requests: {script.rejections}"


@pytest.fixture
def wire(request: pytest.FixtureRequest) -> bool:
    return request.node.get_closest_marker("wire") is not None


@pytest.fixture
async def fake_llm(llm: ModelScript) -> AsyncIterator[FakeLLM]:
    """The script served over HTTP (wire tests)."""
    async with FakeLLM(script=llm) as server:
        yield server


@pytest.fixture
def model(wire: bool, llm: ModelScript) -> ChatModel | None:
    """The model citas is given: the script in-process, or None (the endpoint of the settings)."""
    return None if wire else ScriptedModel(script=llm)


@pytest.fixture
def settings(request: pytest.FixtureRequest, wire: bool, sandbox: RunningSandbox) -> Settings:
    endpoint: dict[str, Any] = {}
    if wire:
        server: FakeLLM = request.getfixturevalue("fake_llm")
        endpoint = {"OPENAI_API_KEY": "test-key", "OPENAI_BASE_URL": server.base_url}
    return Settings.from_env(
        {},
        **endpoint,
        # Most tests book with one create_booking; the customer's confirmation (on by default)
        # is tested in test_guards.py and by the recorded conversations that turn it on.
        CITAS_CONFIRM_BEFORE_BOOKING=False,
        CITAS_CALENDAR_API_URL=sandbox.calendar_url,
        CITAS_INFO_API_URL=sandbox.info_url,
        CITAS_LLM_MAX_RETRIES=0,
        CITAS_LLM_TIMEOUT_SECONDS=5,
        CITAS_BACKEND_TOTAL_TIMEOUT=2,
        CITAS_BACKEND_READ_TIMEOUT=1,
    )


@pytest.fixture
async def make_client(now: datetime, model: ChatModel | None) -> AsyncIterator[MakeClient]:
    """Serve citas with the given settings (and the test's model); stopped after the test."""
    async with AsyncExitStack() as stack:

        async def make(settings: Settings, **kwargs: Any) -> LocalCitas:
            kwargs.setdefault("model", model)
            kwargs.setdefault("clock", frozen_clock(now))
            return await stack.enter_async_context(LocalCitas.start(settings, **kwargs))

        yield make


@pytest.fixture
async def client(make_client: MakeClient, settings: Settings) -> LocalCitas:
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
def chat(client: LocalCitas) -> ChatFn:
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


OTHER_EMAIL = "luis@example.com"


def occupy(sandbox: RunningSandbox, start: str, end: str, usuario_id: int = 7) -> None:
    """Someone else books the clinic's calendar (business 12) directly in the backend, from
    `start` to `end` (local `YYYY-MM-DD HH:MM:SS`)."""
    answer = sandbox.backend.handle(
        "calendar",
        {
            "codOpe": "CREAR_EVENTO",
            "id_empresa": 12,
            "usuario_id": usuario_id,
            "titulo": "Otra cita",
            "fecha_inicio": start,
            "fecha_fin": end,
            "cliente_nombre": "Luis Soto",
            "cliente_correo": OTHER_EMAIL,
        },
    )
    assert answer["success"] is True


def turn_context(**fields: Any) -> TurnContext:
    """A tool's view of one turn of the clinic's conversation, on the frozen clock's Monday."""
    return TurnContext(
        Tenant(12, ZoneInfo("America/Lima"), 30, usuario_id=7),
        ConversationKey(12, "51987654321"),
        BookingLedger(),
        CustomerWords(),
        today=date(2026, 11, 30),
        turn_id="t1",
        **fields,
    )
