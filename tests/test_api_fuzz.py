"""API fuzzing: schemathesis against /openapi.json of a running citas (fake LLM, sandbox).

Every operation of the document gets generated requests, valid and invalid; each answer must
be no 5xx and conform to the document (status, content type, body schema, headers), and the
declared bearer auth must really be enforced.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import AsyncExitStack
from typing import Any

import pytest
import schemathesis
from aiohttp import web
from hypothesis import HealthCheck, settings

from citas.app import create_app
from citas.clock import frozen_clock
from citas.config import Settings
from citas.sandbox import SandboxBackend, SandboxSeed, start_sandbox
from citas.testing import FakeLLM, reply
from tests.conftest import NOW

TOKEN = "fuzz-token"


class LiveCitas:
    """citas, the sandbox and a fake LLM that always answers text, served from a thread of
    their own: schemathesis calls them over real HTTP with blocking `requests`."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._stack = AsyncExitStack()
        self.base_url = ""

    def __enter__(self) -> LiveCitas:
        self._thread.start()
        self.base_url = self._run(self._start())
        return self

    def __exit__(self, *_: object) -> None:
        self._run(self._stack.aclose())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        self.loop.close()

    def _run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=30)

    async def _start(self) -> str:
        clock = frozen_clock(NOW)
        sandbox = await start_sandbox(SandboxBackend(SandboxSeed.load(), clock=clock))
        self._stack.push_async_callback(sandbox.close)
        llm = FakeLLM(responder=lambda _body: reply("Hola, ¿en qué te ayudo?"), record=False)
        await llm.start()
        self._stack.push_async_callback(llm.close)
        config = Settings.from_env(
            {},
            OPENAI_API_KEY="test-key",
            OPENAI_BASE_URL=llm.base_url,
            CITAS_CALENDAR_API_URL=sandbox.calendar_url,
            CITAS_INFO_API_URL=sandbox.info_url,
            CITAS_API_TOKEN=TOKEN,
            CITAS_LLM_MAX_RETRIES=0,
            # Generated requests reuse session ids a lot: left on, the limit would answer
            # most of them with 429 and the agent path would hardly be fuzzed.
            CITAS_RATE_LIMIT_CONVERSATION_PER_MINUTE=0,
        )
        runner = web.AppRunner(create_app(config, clock=clock), access_log=None)
        await runner.setup()
        self._stack.push_async_callback(runner.cleanup)
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        return f"http://{host}:{port}"


@pytest.fixture(scope="module")
def live() -> Iterator[LiveCitas]:
    with LiveCitas() as running:
        yield running


@pytest.fixture
def api_schema(live: LiveCitas) -> Any:
    # The coverage phase's valid cases would send one turn per listed time zone (~600);
    # its invalid ones (missing fields, wrong types, bounds, undeclared methods) all run, and
    # the fuzzing phase covers valid requests.
    config = schemathesis.config.SchemathesisConfig.from_dict(
        {"phases": {"coverage": {"generation": {"mode": "negative"}}}}
    )
    return schemathesis.openapi.from_url(f"{live.base_url}/openapi.json", config=config)


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(
    max_examples=100,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
def test_api_conforms_to_its_document(case: Any) -> None:
    case.call_and_validate(headers={"Authorization": f"Bearer {TOKEN}"})
