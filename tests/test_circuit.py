"""The circuit breaker alone (with an injected clock), and the backend client's bounds."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aioresponses import aioresponses
from structlog.testing import capture_logs

from citas.backend import BackendClient, BackendPolicy
from citas.circuit import CircuitBreaker, CircuitState
from citas.errors import BackendError, BackendRejected
from citas.sandbox import Fault, RunningSandbox
from citas.testing.harness import MetricsDelta
from tests.helpers import sample, wait_until

OP = "OBTENER_CONTEXTO_NEGOCIO"


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def gauge(operation: str) -> float:
    return sample("citas_circuit_state", operation=operation)


def breaker(name: str, clock: FakeMonotonic, threshold: int = 3) -> CircuitBreaker:
    return CircuitBreaker(name, failure_threshold=threshold, reset_seconds=10, monotonic=clock)


def fail(b: CircuitBreaker, times: int) -> None:
    for _ in range(times):
        assert b.allow()
        b.record_failure()


def test_opens_after_threshold_consecutive_failures_and_refuses_until_cool_down() -> None:
    clock = FakeMonotonic()
    b = breaker("T_OPENS", clock)
    fail(b, 2)
    assert (b.state, gauge("T_OPENS")) == (CircuitState.CLOSED, 0)
    fail(b, 1)
    assert (b.state, gauge("T_OPENS")) == (CircuitState.OPEN, 2)
    assert not b.allow()
    clock.advance(9.9)
    assert not b.allow()


def test_a_success_resets_the_failure_count() -> None:
    b = breaker("T_RESET", FakeMonotonic())
    fail(b, 2)
    b.record_success()
    fail(b, 2)
    assert b.state is CircuitState.CLOSED


def test_one_half_open_probe_after_cool_down_closes_on_success() -> None:
    clock = FakeMonotonic()
    b = breaker("T_PROBE", clock)
    fail(b, 3)
    clock.advance(10)
    assert b.allow()
    assert (b.state, gauge("T_PROBE")) == (CircuitState.HALF_OPEN, 1)
    assert not b.allow(), "only one probe at a time"
    b.record_success()
    assert (b.state, gauge("T_PROBE")) == (CircuitState.CLOSED, 0)
    assert b.allow() and b.allow()


def test_a_failed_probe_opens_again_for_a_whole_cool_down() -> None:
    clock = FakeMonotonic()
    b = breaker("T_REOPEN", clock)
    fail(b, 3)
    clock.advance(10)
    fail(b, 1)
    assert (b.state, gauge("T_REOPEN")) == (CircuitState.OPEN, 2)
    clock.advance(9)
    assert not b.allow()
    clock.advance(1)
    assert b.allow()


def test_a_released_probe_lets_the_next_call_probe() -> None:
    clock = FakeMonotonic()
    b = breaker("T_RELEASE", clock)
    fail(b, 3)
    clock.advance(10)
    assert b.allow()
    b.release()
    assert b.allow()


def test_transitions_are_logged() -> None:
    clock = FakeMonotonic()
    b = breaker("T_LOGS", clock, threshold=1)
    with capture_logs() as logs:
        fail(b, 1)
        clock.advance(10)
        b.allow()
        b.record_success()
    assert [(e["event"], e["log_level"]) for e in logs] == [
        ("circuit_open", "warning"),
        ("circuit_half_open", "info"),
        ("circuit_closed", "info"),
    ]
    assert logs[0]["operation"] == "T_LOGS" and logs[0]["failures"] == 1


# --------------------------------------------------------------------------- in the client


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def policy(**changes: float) -> BackendPolicy:
    base = {"max_tries": 2, "backoff_factor": 0.001, "breaker_threshold": 3}
    return BackendPolicy(**{**base, **changes})  # type: ignore[arg-type]


def attempts(sandbox: RunningSandbox, operation: str) -> int:
    return sum(1 for _, body in sandbox.backend.calls if body.get("codOpe") == operation)


async def test_client_opens_the_breaker_fails_fast_then_probes(
    sandbox: RunningSandbox, http: aiohttp.ClientSession
) -> None:
    clock = FakeMonotonic()
    client = BackendClient(http, policy(breaker_reset_seconds=30), monotonic=clock)
    sandbox.backend.faults.add(OP, Fault("status", http_status=503), times=None)
    delta = MetricsDelta()
    for _ in range(3):
        with pytest.raises(BackendError, match="http_503"):
            await client.call(sandbox.info_url, OP, {"id_empresa": 12})
    assert attempts(sandbox, OP) == 3 * 2  # threshold x tries
    assert client.breaker(OP).state is CircuitState.OPEN and gauge(OP) == 2

    with pytest.raises(BackendError, match="circuit open"):
        await client.call(sandbox.info_url, OP, {"id_empresa": 12})
    assert attempts(sandbox, OP) == 6, "an open circuit must not call the backend"
    assert delta.of("citas_backend_calls_total", operation=OP, outcome="circuit_open") == 1
    assert delta.of("citas_backend_calls_total", operation=OP, outcome="http_503") == 6

    # Another operation has its own breaker.
    faqs = await client.call(sandbox.info_url, "OBTENER_PREGUNTAS_FRECUENTES", {"id_empresa": 12})
    assert faqs["success"] is True

    sandbox.backend.faults.clear()
    clock.advance(30)
    answer = await client.call(sandbox.info_url, OP, {"id_empresa": 12})
    assert answer["success"] is True and attempts(sandbox, OP) == 7
    assert client.breaker(OP).state is CircuitState.CLOSED and gauge(OP) == 0


async def test_business_rejections_are_not_failures_nor_retried(
    sandbox: RunningSandbox, http: aiohttp.ClientSession
) -> None:
    client = BackendClient(http, policy())
    for _ in range(5):
        with pytest.raises(BackendRejected):
            await client.call(sandbox.info_url, OP, {"id_empresa": 999})
    assert attempts(sandbox, OP) == 5
    assert client.breaker(OP).state is CircuitState.CLOSED


async def test_a_cancelled_probe_does_not_jam_the_breaker(
    sandbox: RunningSandbox, http: aiohttp.ClientSession
) -> None:
    clock = FakeMonotonic()
    client = BackendClient(http, policy(max_tries=1, breaker_threshold=1), monotonic=clock)
    faults = sandbox.backend.faults
    faults.add(OP, Fault("status", http_status=500))
    with pytest.raises(BackendError):
        await client.call(sandbox.info_url, OP, {"id_empresa": 12})
    clock.advance(30)
    faults.add(OP, Fault("latency", seconds=5))
    probe = asyncio.create_task(client.call(sandbox.info_url, OP, {"id_empresa": 12}))
    await wait_until(lambda: len(faults.triggered) == 2)
    probe.cancel()
    with pytest.raises(asyncio.CancelledError):
        await probe
    answer = await client.call(sandbox.info_url, OP, {"id_empresa": 12})
    assert answer["success"] is True
    assert client.breaker(OP).state is CircuitState.CLOSED


async def test_the_retry_budget_bounds_a_call_whatever_max_tries_says(
    sandbox: RunningSandbox, http: aiohttp.ClientSession
) -> None:
    client = BackendClient(
        http, policy(max_tries=10, read_timeout=0.2, total_timeout=1, max_retry_seconds=0.5)
    )
    sandbox.backend.faults.add(OP, Fault("latency", seconds=5), times=None)
    delta = MetricsDelta()
    with pytest.raises(BackendError, match="retry budget spent"):
        await client.call(sandbox.info_url, OP, {"id_empresa": 12})
    timeouts = delta.of("citas_backend_calls_total", operation=OP, outcome="timeout")
    assert 1 <= timeouts < 10
    assert len(sandbox.backend.faults.triggered) == timeouts


async def test_an_undecodable_body_is_read_not_a_crash(http: aiohttp.ClientSession) -> None:
    url = "http://backend.invalid/ws_informacion_ia.php"
    client = BackendClient(http, policy())
    with aioresponses() as mocked:
        # Latin-1 from a PHP service that says nothing of its charset (JSON means UTF-8).
        mocked.post(url, body='{"success": true, "contexto": "Clínica"}'.encode("latin-1"))
        answer = await client.call(url, OP, {"id_empresa": 12})
    assert answer["contexto"] == "Cl\ufffdnica"
