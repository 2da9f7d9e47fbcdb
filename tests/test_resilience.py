"""Fault injection through the HTTP API: each sandbox fault, LLM failures, a tool that raises,
overload. Each test asserts what the customer gets and what the metrics show."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import structlog.testing

from citas.admission import MAX_QUEUED_PER_CONVERSATION
from citas.agent.loop import BACKEND_APOLOGY, LLM_APOLOGY
from citas.circuit import CircuitState
from citas.config import Settings
from citas.errors import BackendError, ConfigError
from citas.runtime import RUNTIME
from citas.sandbox import ANY_OPERATION, Fault, RunningSandbox
from citas.services.availability import AvailabilityService
from citas.testing import ModelScript, call, reply
from citas.testing.harness import LocalCitas, MetricsDelta
from tests.conftest import chat_body, tool_results
from tests.helpers import sample, wait_until
from tests.test_cache import INFO_OPERATIONS

Client = LocalCitas
MakeClient = Callable[..., Awaitable[Client]]

SLOT = {"date": "2026-12-01", "time": "15:00"}
BOOKING = {**SLOT, "customer_name": "Ana Pérez", "customer_email": "ana.perez@example.com"}


@pytest.fixture
def fast(settings: Settings) -> Settings:
    """Short backend timeouts, so a late answer is a timeout within the test's patience."""
    return settings.with_updates(
        backend_read_timeout_seconds=0.3,
        backend_total_timeout_seconds=1.0,
        backend_max_retry_seconds=5.0,
    )


async def send(client: Client, message: str, **kwargs: Any) -> tuple[int, dict[str, Any]]:
    response = await client.post("/api/chat", json=chat_body(message, **kwargs))
    return response.status, await response.json()


def backend_attempts(delta: MetricsDelta, operation: str, outcome: str) -> float:
    return delta.of("citas_backend_calls_total", operation=operation, outcome=outcome)


def calls_of(sandbox: RunningSandbox, operation: str) -> list[dict[str, Any]]:
    return [body for _, body in sandbox.backend.calls if body.get("codOpe") == operation]


async def book(client: Client, llm: ModelScript) -> tuple[int, dict[str, Any]]:
    """Verify the slot in one turn and book it in the next; returns the booking turn's answer."""
    llm.add(call("check_availability", SLOT), reply("Está libre. ¿Tu nombre y correo?"))
    await send(client, "Quiero el martes a las 3pm")
    llm.add(call("create_booking", BOOKING), reply("¡Reservado!"))
    return await send(client, "Ana Pérez, ana.perez@example.com")


# --------------------------------------------------------------------------- latency


async def test_latency_within_the_read_timeout_is_only_slower(
    make_client: MakeClient, fast: Settings, llm: ModelScript, sandbox: RunningSandbox
) -> None:
    client = await make_client(fast)
    sandbox.backend.faults.add("OBTENER_CONTEXTO_NEGOCIO", Fault("latency", seconds=0.05))
    delta = MetricsDelta()
    llm.add(reply("Hola."))
    assert await send(client, "Hola") == (200, {"reply": "Hola.", "url": None})
    assert backend_attempts(delta, "OBTENER_CONTEXTO_NEGOCIO", "ok") == 1
    assert backend_attempts(delta, "OBTENER_CONTEXTO_NEGOCIO", "timeout") == 0


async def test_latency_past_the_read_timeout_is_retried(
    make_client: MakeClient, fast: Settings, llm: ModelScript, sandbox: RunningSandbox
) -> None:
    client = await make_client(fast)
    sandbox.backend.faults.add("CONSULTAR_DISPONIBILIDAD", Fault("latency", seconds=2))
    delta = MetricsDelta()
    llm.add(call("check_availability", SLOT), reply("Está libre."))
    status, body = await send(client, "¿El martes a las 3pm?")
    assert (status, body) == (200, {"reply": "Está libre.", "url": None})
    assert tool_results(llm.requests[-1])[-1]["disponible"] is True
    assert backend_attempts(delta, "CONSULTAR_DISPONIBILIDAD", "timeout") == 1
    assert backend_attempts(delta, "CONSULTAR_DISPONIBILIDAD", "ok") == 1


# --------------------------------------------------------------------------- 5xx


async def test_one_5xx_is_retried_and_the_customer_never_notices(
    make_client: MakeClient, fast: Settings, llm: ModelScript, sandbox: RunningSandbox
) -> None:
    client = await make_client(fast)
    sandbox.backend.faults.add("CONSULTAR_DISPONIBILIDAD", Fault("status", http_status=502))
    delta = MetricsDelta()
    llm.add(call("check_availability", SLOT), reply("Está libre."))
    assert await send(client, "¿El martes a las 3pm?") == (
        200,
        {"reply": "Está libre.", "url": None},
    )
    assert backend_attempts(delta, "CONSULTAR_DISPONIBILIDAD", "http_502") == 1
    assert backend_attempts(delta, "CONSULTAR_DISPONIBILIDAD", "ok") == 1


async def test_a_calendar_that_keeps_failing_becomes_a_tool_result_and_an_error_code(
    make_client: MakeClient, fast: Settings, llm: ModelScript, sandbox: RunningSandbox
) -> None:
    client = await make_client(fast)
    sandbox.backend.faults.add(
        "CONSULTAR_DISPONIBILIDAD", Fault("status", http_status=503), times=None
    )
    delta = MetricsDelta()
    llm.add(call("check_availability", SLOT), reply("Disculpa, el sistema no responde."))
    status, body = await send(client, "¿El martes a las 3pm?")
    assert status == 200
    assert body["reply"] == "Disculpa, el sistema no responde."
    assert body["error"]["code"] == "backend_unavailable"
    [result] = tool_results(llm.requests[-1])
    assert result["ok"] is False and result["error"] == "backend_unavailable"
    assert backend_attempts(delta, "CONSULTAR_DISPONIBILIDAD", "http_503") == fast.backend_max_tries
    assert delta.of("citas_tool_calls_total", tool="check_availability", outcome="backend_error")
    assert sandbox.backend.events == []


# --------------------------------------------------------------------------- malformed JSON


async def test_one_malformed_answer_is_retried(
    make_client: MakeClient, fast: Settings, llm: ModelScript, sandbox: RunningSandbox
) -> None:
    client = await make_client(fast)
    sandbox.backend.faults.add("OBTENER_HORARIO_REUNIONES", Fault("malformed_json"))
    delta = MetricsDelta()
    llm.add(reply("Hola."))
    assert await send(client, "Hola") == (200, {"reply": "Hola.", "url": None})
    assert backend_attempts(delta, "OBTENER_HORARIO_REUNIONES", "malformed") == 1
    assert backend_attempts(delta, "OBTENER_HORARIO_REUNIONES", "ok") == 1


async def test_business_info_that_stays_malformed_gets_the_backend_apology(
    make_client: MakeClient, fast: Settings, llm: ModelScript, sandbox: RunningSandbox
) -> None:
    client = await make_client(fast)
    sandbox.backend.faults.add("OBTENER_HORARIO_REUNIONES", Fault("malformed_json"), times=None)
    delta = MetricsDelta()
    status, body = await send(client, "Hola")
    assert status == 200 and body["reply"] == BACKEND_APOLOGY
    assert body["error"]["code"] == "backend_unavailable"
    assert llm.requests == []  # no business data, no prompt: the model is not asked
    assert (
        backend_attempts(delta, "OBTENER_HORARIO_REUNIONES", "malformed") == fast.backend_max_tries
    )
    assert delta.of("citas_handled_errors_total", where="business_info") == 1


# --------------------------------------------------------------------------- writes


async def test_connection_reset_on_booking_is_retried_with_the_same_key(
    make_client: MakeClient, fast: Settings, llm: ModelScript, sandbox: RunningSandbox
) -> None:
    client = await make_client(fast)
    sandbox.backend.faults.add("CREAR_EVENTO", Fault("connection_reset"))
    delta = MetricsDelta()
    status, body = await book(client, llm)
    [event] = sandbox.backend.events
    assert (status, body["url"]) == (200, event.url)
    assert body["reply"].startswith("¡Reservado!") and event.url in body["reply"]
    sent = calls_of(sandbox, "CREAR_EVENTO")
    assert len(sent) == 2 and sent[0]["idempotency_key"] == sent[1]["idempotency_key"]
    assert backend_attempts(delta, "CREAR_EVENTO", "connection") == 1
    assert delta.of("citas_bookings_total", outcome="created") == 1


async def test_commit_then_late_answer_books_once(
    make_client: MakeClient, fast: Settings, llm: ModelScript, sandbox: RunningSandbox
) -> None:
    client = await make_client(fast)
    sandbox.backend.faults.add("CREAR_EVENTO", Fault("commit_then_late", seconds=2))
    delta = MetricsDelta()
    status, body = await book(client, llm)
    [event] = sandbox.backend.events  # committed by the first attempt, found again by the retry
    assert (status, body["url"]) == (200, event.url)
    assert body["reply"].startswith("¡Reservado!") and event.url in body["reply"]
    assert len(calls_of(sandbox, "CREAR_EVENTO")) == 2
    assert tool_results(llm.requests[-1])[-1]["reservado"] is True
    assert backend_attempts(delta, "CREAR_EVENTO", "timeout") == 1
    assert backend_attempts(delta, "CREAR_EVENTO", "ok") == 1


# --------------------------------------------------------------------------- backend down


async def test_backend_down_opens_the_breakers_then_answers_without_calling_it(
    make_client: MakeClient, fast: Settings, llm: ModelScript, sandbox: RunningSandbox
) -> None:
    client = await make_client(fast.with_updates(breaker_threshold=2))
    backend = client.app[RUNTIME].backend
    sandbox.backend.faults.add(ANY_OPERATION, Fault("status", http_status=503), times=None)
    delta = MetricsDelta()
    for turn in range(2):
        status, body = await send(client, "Hola", session_id=f"519000000{turn}")
        assert status == 200 and body["error"]["code"] == "backend_unavailable"
    assert llm.requests == []
    for operation in INFO_OPERATIONS:
        assert backend.breaker(operation).state is CircuitState.OPEN
        assert sample("citas_circuit_state", operation=operation) == 2
    # threshold (2) x business-info operations (5) x tries (3)
    assert len(sandbox.backend.calls) == 2 * 5 * 3

    status, body = await send(client, "Hola", session_id="5190000009")
    assert status == 200 and body["error"]["code"] == "backend_unavailable"
    assert len(sandbox.backend.calls) == 30, "open breakers answer without the backend"
    opened = [
        delta.of("citas_backend_calls_total", operation=op, outcome="circuit_open")
        for op in INFO_OPERATIONS
    ]
    assert opened == [1] * 5


# --------------------------------------------------------------------------- LLM


@pytest.mark.wire  # the LLM client's own retries and timeouts
async def test_llm_429_with_retry_after_is_retried_once_by_the_client(
    make_client: MakeClient, settings: Settings, llm: ModelScript
) -> None:
    client = await make_client(settings.with_updates(llm_max_retries=1))
    llm.fail_next(429, retry_after=0.25)
    llm.add(reply("Hola."))
    delta = MetricsDelta()
    with structlog.testing.capture_logs() as logs:
        assert await send(client, "Hola") == (200, {"reply": "Hola.", "url": None})
    assert len(llm.requests) == 2
    waits = [
        (e["retry"], e["max_retries"], e["wait_seconds"]) for e in logs if e["event"] == "llm_retry"
    ]
    assert waits == [(1, 1, 0.25)]
    assert delta.of("citas_llm_calls_total", outcome="ok") == 1


@pytest.mark.wire  # the LLM client's own retries and timeouts
async def test_llm_429_beyond_the_client_retries_is_an_apology(
    make_client: MakeClient, settings: Settings, llm: ModelScript
) -> None:
    client = await make_client(settings.with_updates(llm_max_retries=1))
    llm.fail_next(429, times=2, retry_after=0.01)
    delta = MetricsDelta()
    status, body = await send(client, "Hola")
    assert status == 200 and body["reply"] == LLM_APOLOGY
    assert body["error"]["code"] == "llm_unavailable"
    assert len(llm.requests) == 2
    assert delta.of("citas_llm_calls_total", outcome="rate_limited") == 1


@pytest.mark.wire  # the LLM client's own retries and timeouts
async def test_llm_timeout_is_an_apology_with_llm_unavailable(
    make_client: MakeClient, settings: Settings, llm: ModelScript
) -> None:
    client = await make_client(settings.with_updates(llm_timeout_seconds=0.2))
    llm.delay_next(2)
    llm.add(reply("demasiado tarde"))
    delta = MetricsDelta()
    status, body = await send(client, "Hola")
    assert status == 200 and body["reply"] == LLM_APOLOGY
    assert body["error"]["code"] == "llm_unavailable"
    assert delta.of("citas_llm_calls_total", outcome="timeout") == 1
    assert delta.of("citas_handled_errors_total", where="llm") == 1


@pytest.mark.wire  # the LLM client's own retries and timeouts
async def test_the_turn_deadline_wins_over_a_long_retry_after(
    make_client: MakeClient, settings: Settings, llm: ModelScript
) -> None:
    client = await make_client(settings.with_updates(llm_max_retries=2, turn_deadline_seconds=1))
    llm.add(reply("Hola."))
    await send(client, "Hola", session_id="51900000001")  # business info cached: not timed
    llm.fail_next(429, retry_after=60)  # the client would honour it and wait a minute
    delta = MetricsDelta()
    status, body = await send(client, "Hola")
    assert status == 200 and body["error"]["code"] == "llm_unavailable"
    assert len(llm.requests) == 2
    assert delta.of("citas_llm_calls_total", outcome="deadline") == 1


# --------------------------------------------------------------------------- tools


async def test_a_tool_that_raises_becomes_a_tool_result(
    client: Client, llm: ModelScript, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(*_args: Any) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(AvailabilityService, "check_slot", broken)
    llm.add(call("check_availability", SLOT), reply("Disculpa, no pude revisarlo."))
    delta = MetricsDelta()
    assert await send(client, "¿El martes a las 3pm?") == (
        200,
        {"reply": "Disculpa, no pude revisarlo.", "url": None},
    )
    [result] = tool_results(llm.requests[-1])
    assert result["ok"] is False and result["error"] == "tool_failed"
    assert "No confirmes" in result["instruccion"]
    assert delta.of("citas_tool_calls_total", tool="check_availability", outcome="error") == 1
    assert delta.of("citas_handled_errors_total", where="tool_check_availability") == 1


async def test_a_backend_error_inside_a_tool_is_still_the_backend_result(
    client: Client, llm: ModelScript, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def down(*_args: Any) -> None:
        raise BackendError("CONSULTAR_DISPONIBILIDAD", "circuit open")

    monkeypatch.setattr(AvailabilityService, "check_slot", down)
    llm.add(call("check_availability", SLOT), reply("Disculpa."))
    status, body = await send(client, "¿El martes a las 3pm?")
    assert status == 200 and body["error"]["code"] == "backend_unavailable"
    assert tool_results(llm.requests[-1])[0]["error"] == "backend_unavailable"


# --------------------------------------------------------------------------- overload


async def test_overload_is_a_fast_503_with_retry_after(
    make_client: MakeClient, settings: Settings, llm: ModelScript
) -> None:
    client = await make_client(settings.with_updates(max_concurrent_turns=1))
    llm.delay_next(1.0)
    llm.add(reply("Hola."))
    delta = MetricsDelta()
    first = asyncio.create_task(send(client, "Hola", session_id="51911111111"))
    await wait_until(lambda: llm.requests)
    response = await client.post("/api/chat", json=chat_body("Hola", session_id="51922222222"))
    assert not first.done(), "the refusal must not wait for the turn in flight"
    assert response.status == 503
    assert response.headers["Retry-After"] == "1"
    assert (await response.json())["error"]["code"] == "unavailable"
    assert await first == (200, {"reply": "Hola.", "url": None})
    assert delta.of("citas_rejected_requests_total", reason="overloaded") == 1


async def test_messages_queued_on_a_busy_conversation_hold_no_admission_slot(
    make_client: MakeClient, settings: Settings, llm: ModelScript
) -> None:
    client = await make_client(settings.with_updates(max_concurrent_turns=2))
    llm.delay_next(1.0)
    llm.responder = lambda _body: reply("Hola.")
    busy = "51911111111"
    first = asyncio.create_task(send(client, "m0", session_id=busy))
    await wait_until(lambda: llm.requests)
    queued = [asyncio.create_task(send(client, f"m{n}", session_id=busy)) for n in range(1, 6)]
    await wait_until(lambda: client.app[RUNTIME].admission.queued == 5)
    assert client.app[RUNTIME].admission.in_flight == 1  # the waiters are not turns in flight
    # Another business's first message still gets a turn (it used to get 503 overloaded).
    other = chat_body("Hola", session_id="51922222222", id_empresa=27)
    response = await client.post("/api/chat", json=other)
    assert response.status == 200, await response.text()
    assert not first.done()
    for task in [first, *queued]:
        assert (await task)[0] == 200


async def test_the_queue_of_one_conversation_is_bounded(
    make_client: MakeClient, settings: Settings, llm: ModelScript
) -> None:
    client = await make_client(settings)
    llm.delay_next(1.0)
    llm.responder = lambda _body: reply("Hola.")
    busy = "51911111111"
    first = asyncio.create_task(send(client, "m0", session_id=busy))
    await wait_until(lambda: llm.requests)
    queued = [asyncio.create_task(send(client, f"m{n}", session_id=busy)) for n in range(1, 11)]
    await wait_until(lambda: client.app[RUNTIME].admission.queued == MAX_QUEUED_PER_CONVERSATION)
    delta = MetricsDelta()
    response = await client.post("/api/chat", json=chat_body("m11", session_id=busy))
    assert not first.done(), "the refusal must not wait for the queue"
    assert response.status == 503
    assert delta.of("citas_rejected_requests_total", reason="conversation_busy") == 1
    for task in [first, *queued]:
        assert (await task)[0] == 200


# --------------------------------------------------------------------------- settings


async def test_resilience_settings_reach_the_runtime(
    make_client: MakeClient, settings: Settings
) -> None:
    env = Settings.from_env(
        {
            "CITAS_BREAKER_THRESHOLD": "7",
            "CITAS_BREAKER_RESET_SECONDS": "12.5",
            "CITAS_BACKEND_MAX_RETRY_SECONDS": "4",
        }
    )
    client = await make_client(
        settings.with_updates(
            breaker_threshold=env.breaker_threshold,
            breaker_reset_seconds=env.breaker_reset_seconds,
            backend_max_retry_seconds=env.backend_max_retry_seconds,
        )
    )
    backend = client.app[RUNTIME].backend
    assert (backend.policy.breaker_reset_seconds, backend.policy.max_retry_seconds) == (12.5, 4)
    assert backend.breaker("CREAR_EVENTO").failure_threshold == 7


@pytest.mark.parametrize(
    "variable",
    [
        "CITAS_BREAKER_THRESHOLD",
        "CITAS_BREAKER_RESET_SECONDS",
        "CITAS_BACKEND_MAX_RETRY_SECONDS",
        "CITAS_BUSINESS_CACHE_STALE_SECONDS",
        "CITAS_SHUTDOWN_DRAIN_SECONDS",
    ],
)
def test_resilience_settings_refuse_zero(variable: str) -> None:
    with pytest.raises(ConfigError, match=variable):
        Settings.from_env({variable: "0"})
