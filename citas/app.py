"""The aiohttp application factory: wiring, shared clients, start-up and shutdown."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from datetime import timedelta

import aiohttp
import structlog
from aiohttp import web
from aiohttp.typedefs import Middleware
from redis.asyncio import Redis

from citas.admission import Admission
from citas.agent.loop import Agent
from citas.agent.model import ChatModel
from citas.agent.openai_model import OpenAIChatModel, create_client
from citas.agent.prompt import PromptBuilder
from citas.agent.reply_guard import ReplyGuard
from citas.agent.telemetry import record_metrics, write_logs
from citas.agent.tools import ToolRegistry, ToolServices
from citas.api.middlewares import bearer_auth, json_errors, request_context
from citas.api.routes import setup_routes
from citas.backend import BackendClient, BackendPolicy
from citas.cache import SingleFlightCache
from citas.clock import Clock, system_clock
from citas.config import Settings
from citas.domain import SlotRules
from citas.ratelimit import create_rate_limits
from citas.runtime import RUNTIME, SETTINGS, Runtime
from citas.services.appointments import AppointmentService
from citas.services.availability import AvailabilityService
from citas.services.booking import BookingService
from citas.services.business import BusinessDirectory
from citas.services.products import ProductCatalog
from citas.store.base import SessionStore
from citas.store.memory import MemorySessionStore
from citas.store.redis import RedisSessionStore, connect

log = structlog.get_logger("citas.app")

MAX_BODY_BYTES = 64 * 1024


def create_app(
    settings: Settings, *, model: ChatModel | None = None, clock: Clock = system_clock
) -> web.Application:
    """The citas app. `model` stands in for the endpoint that the settings name (the sandbox's
    demo model, tests); the app builds and closes only the clients it creates itself."""
    middlewares: list[Middleware] = [request_context, json_errors]
    if settings.api_token:
        middlewares.append(
            bearer_auth(settings.api_token, protect_metrics=settings.metrics_require_token)
        )
    app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=middlewares)
    app[SETTINGS] = settings
    setup_routes(app)

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            app[RUNTIME] = await _build_runtime(stack, settings, model, clock)
            log.info(
                "citas_started",
                model=app[RUNTIME].agent.model.name,
                store=type(app[RUNTIME].store).__name__,
            )
            yield
            await app[RUNTIME].admission.drain(settings.shutdown_drain_seconds)

    app.cleanup_ctx.append(lifecycle)
    app.on_shutdown.append(_start_draining)
    return app


async def _start_draining(app: web.Application) -> None:
    # on_shutdown runs once the listener is closed: /ready turns 503, new turns get 503.
    app[RUNTIME].admission.draining = True


async def _build_runtime(
    stack: AsyncExitStack, settings: Settings, model: ChatModel | None, clock: Clock
) -> Runtime:
    http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=100, keepalive_timeout=30))
    stack.push_async_callback(http.close)
    backend = BackendClient(
        http,
        BackendPolicy(
            connect_timeout=settings.backend_connect_timeout_seconds,
            read_timeout=settings.backend_read_timeout_seconds,
            total_timeout=settings.backend_total_timeout_seconds,
            max_tries=settings.backend_max_tries,
            max_retry_seconds=settings.backend_max_retry_seconds,
            breaker_threshold=settings.breaker_threshold,
            breaker_reset_seconds=settings.breaker_reset_seconds,
        ),
    )
    # One Redis client, built once from the settings, for the store and the rate limits.
    redis_client = (
        None
        if settings.redis_url is None
        else connect(settings.redis_url, settings.redis_timeout_seconds)
    )
    store = _build_store(settings, redis_client)
    stack.push_async_callback(store.close)
    directory = BusinessDirectory(
        backend,
        settings.info_api_url,
        SingleFlightCache(
            ttl_seconds=settings.business_cache_ttl_seconds,
            maxsize=4096,
            stale_seconds=settings.business_cache_stale_seconds,
        ),
    )
    rules = SlotRules(
        min_notice=timedelta(minutes=settings.booking_min_notice_minutes),
        horizon=timedelta(days=settings.booking_horizon_days),
    )
    availability = AvailabilityService(backend, settings.calendar_api_url, directory, rules, clock)
    booking = BookingService(
        backend,
        settings.calendar_api_url,
        availability,
        confirm_before_booking=settings.confirm_before_booking,
        intents=store,
    )
    catalog = ProductCatalog(backend, settings.info_api_url)
    appointments = AppointmentService(
        backend,
        settings.calendar_api_url,
        availability,
        confirm_before_change=settings.confirm_before_booking,
        cancel_min_notice=timedelta(minutes=settings.cancel_min_notice_minutes),
    )
    agent = Agent(
        model=model or _endpoint_model(stack, settings),
        tools=ToolRegistry(ToolServices(booking, catalog, appointments)),
        prompts=PromptBuilder(settings.prompts_dir),
        store=store,
        directory=directory,
        clock=clock,
        max_tool_rounds=settings.max_tool_rounds,
        history_max_messages=settings.history_max_messages,
        turn_deadline_seconds=settings.turn_deadline_seconds,
        guard=ReplyGuard(settings.max_reply_chars),
        history_max_tokens=settings.history_max_tokens,
        handoff_ttl_seconds=settings.handoff_ttl_seconds,
        clock_role=settings.clock_role,
        reply_format=settings.reply_format,
        coalesce_seconds=settings.coalesce_ms / 1000,
        listeners=(record_metrics, write_logs),
    )
    rate_limits = create_rate_limits(settings, client=redis_client)
    stack.push_async_callback(rate_limits.close)
    admission = Admission(settings.max_concurrent_turns)
    return Runtime(settings, http, backend, store, agent, admission, rate_limits)


def _endpoint_model(stack: AsyncExitStack, settings: Settings) -> ChatModel:
    """The model at `OPENAI_BASE_URL` (OpenAI's API without it)."""
    client = create_client(
        settings.openai_api_key,
        settings.openai_base_url,
        settings.llm_timeout_seconds,
        settings.llm_max_retries,
        # A turn makes one model call at a time: no turn ever waits for a connection.
        max_connections=settings.max_concurrent_turns,
    )
    stack.push_async_callback(client.close)
    return OpenAIChatModel(
        client,
        settings.model,
        call_timeout=settings.llm_timeout_seconds,
        read_timeout=settings.llm_read_timeout_seconds,
        max_tokens=settings.llm_max_tokens,
        temperature=settings.llm_temperature,
    )


def _build_store(settings: Settings, client: Redis | None) -> SessionStore:
    """Redis when `REDIS_URL` is set (several instances share conversations), else in-process."""
    if client is None:
        return MemorySessionStore(
            max_sessions=settings.max_sessions,
            ttl_seconds=settings.session_ttl_seconds,
            lock_wait_seconds=_lock_wait(settings),
        )
    return RedisSessionStore(
        client,
        prefix=settings.redis_prefix,
        ttl_seconds=settings.session_ttl_seconds,
        lock_wait_seconds=_lock_wait(settings),
        # Short: the live holder renews it every third of it, a dead one lets it lapse soon.
        lock_ttl_seconds=settings.redis_lock_ttl_seconds,
        # Each command whole (its retry and a pool wait included) within two socket timeouts,
        # so a hung Redis always answers 503 after the same time.
        operation_timeout_seconds=2 * settings.redis_timeout_seconds,
        # A backstop only: the agent trims to the budget before every turn.
        max_messages=settings.history_max_messages * 2,
    )


def _lock_wait(settings: Settings) -> float:
    """A message waits for the conversation's previous turn at most this long (then a 503)."""
    return min(settings.lock_wait_seconds, settings.turn_deadline_seconds)
