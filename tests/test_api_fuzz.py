"""API fuzzing: schemathesis against /openapi.json of a running citas (fake LLM, sandbox).

Every operation of the document gets generated requests, valid and invalid; each answer must
be no 5xx and conform to the document (status, content type, body schema, headers), and the
declared bearer auth must really be enforced.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AsyncExitStack
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from citas.clock import frozen_clock
from citas.config import Settings
from citas.sandbox import SandboxBackend, SandboxSeed, start_sandbox
from citas.testing import ScriptedModel, reply
from citas.testing.harness import LocalCitas, LoopThread
from tests.conftest import NOW

TOKEN = "fuzz-token"


async def _serve(stack: AsyncExitStack) -> str:
    clock = frozen_clock(NOW)
    sandbox = await start_sandbox(SandboxBackend(SandboxSeed.load(), clock=clock))
    stack.push_async_callback(sandbox.close)
    model = ScriptedModel(responder=lambda _body: reply("Hola, ¿en qué te ayudo?"), record=False)
    config = Settings.from_env(
        {},
        CITAS_CALENDAR_API_URL=sandbox.calendar_url,
        CITAS_INFO_API_URL=sandbox.info_url,
        CITAS_API_TOKEN=TOKEN,
        # Generated requests reuse session ids a lot: left on, the limit would answer
        # most of them with 429 and the agent path would hardly be fuzzed.
        CITAS_RATE_LIMIT_CONVERSATION_PER_MINUTE=0,
    )
    citas = await stack.enter_async_context(LocalCitas.start(config, model=model, clock=clock))
    return citas.base_url


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    """citas, the sandbox and a model that always answers text, served from a thread of their
    own: schemathesis calls them over real HTTP with blocking `requests`."""
    thread = LoopThread("citas-fuzz")
    stack = AsyncExitStack()
    try:
        yield thread.run(_serve(stack), timeout=30)
    finally:
        thread.run(stack.aclose(), timeout=30)
        thread.stop()


@pytest.fixture
def api_schema(base_url: str) -> Any:
    # The coverage phase's valid cases would send one turn per listed time zone (~600);
    # its invalid ones (missing fields, wrong types, bounds, undeclared methods) all run, and
    # the fuzzing phase covers valid requests.
    config = schemathesis.config.SchemathesisConfig.from_dict(
        {"phases": {"coverage": {"generation": {"mode": "negative"}}}}
    )
    return schemathesis.openapi.from_url(f"{base_url}/openapi.json", config=config)


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
