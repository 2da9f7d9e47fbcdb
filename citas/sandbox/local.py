"""`--sandbox`: citas against the bundled sandbox backend running in this process, and the demo
model when no model endpoint is configured. Used by `citas serve`, `citas chat` and `doctor`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import structlog

from citas.agent.model import ChatModel
from citas.clock import Clock, system_clock
from citas.config import Settings
from citas.sandbox.demo_model import demo_model
from citas.sandbox.server import RunningSandbox, start_sandbox
from citas.sandbox.state import SandboxBackend, SandboxSeed

log = structlog.get_logger("citas.sandbox")


@dataclass(frozen=True, slots=True)
class SandboxSetup:
    settings: Settings
    """The settings with the sandbox's URLs for the backend URLs left unset."""
    model: ChatModel | None
    """The demo model, or None: the endpoint the settings name."""
    sandbox: RunningSandbox


def wants_demo_model(settings: Settings) -> bool:
    return not settings.openai_api_key and not settings.openai_base_url


@asynccontextmanager
async def sandbox_setup(
    settings: Settings, *, clock: Clock = system_clock
) -> AsyncIterator[SandboxSetup]:
    """Start the sandbox (bundled seed, no call log: a long-running server must not grow)."""
    running = await start_sandbox(
        SandboxBackend(SandboxSeed.load(), clock=clock, record_calls=False)
    )
    try:
        settings = settings.with_updates(
            calendar_api_url=settings.calendar_api_url or running.calendar_url,
            info_api_url=settings.info_api_url or running.info_url,
        )
        model = None
        if wants_demo_model(settings):
            model = demo_model()
            log.warning(
                "demo_model_active",
                detail="no OPENAI_API_KEY/OPENAI_BASE_URL: a scripted "
                "demo model stands in for the LLM; its answers are canned, not AI",
            )
        yield SandboxSetup(settings, model, running)
    finally:
        await running.close()
