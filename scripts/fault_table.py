"""Measure what a customer gets under each fault, and what the metrics show: the README's table.

    python scripts/fault_table.py            # markdown table on stdout (about a minute)

Each scenario runs the real app against the sandbox backend and the fake LLM on 127.0.0.1 with
the default settings, except where a row names a shorter timeout (to keep the run short).
Figures are wall-clock times of one `/api/chat` request on this machine: indicative, not goals.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # this checkout's citas, whatever is installed

from citas.clock import frozen_clock  # noqa: E402
from citas.config import Settings  # noqa: E402
from citas.domain import ConversationKey, Tenant  # noqa: E402
from citas.logs import configure_logging  # noqa: E402
from citas.metrics import REGISTRY  # noqa: E402
from citas.sandbox import (  # noqa: E402
    ANY_OPERATION,
    Fault,
    RunningSandbox,
    SandboxSeed,
)
from citas.services.appointments import reference_for  # noqa: E402
from citas.testing import FakeLLM, ModelScript, call, reply  # noqa: E402
from citas.testing.harness import LocalCitas, MetricsDelta  # noqa: E402

NOW = datetime(2026, 11, 30, 10, 0, tzinfo=ZoneInfo("America/Lima"))
SLOT = {"date": "2026-12-01", "time": "15:00"}
BOOKING = {**SLOT, "customer_name": "Ana Pérez", "customer_email": "ana@example.com"}
INFO = (
    "OBTENER_CONTEXTO_NEGOCIO",
    "OBTENER_PREGUNTAS_FRECUENTES",
    "OBTENER_HORARIO_REUNIONES",
    "OBTENER_SERVICIOS_CITAS",
    "OBTENER_PRODUCTOS_CITAS",
)


@dataclass
class Row:
    fault: str
    customer: str
    signals: str
    figure: str


@dataclass
class Harness:
    citas: LocalCitas
    llm: ModelScript  # what the fake model answers, over HTTP through the service's client
    server: FakeLLM  # how it streams (chunk_delay, stall_next)
    session: int = 0

    @property
    def sandbox(self) -> RunningSandbox:
        assert self.citas.sandbox is not None
        return self.citas.sandbox

    async def chat(self, message: str, session: str | None = None) -> tuple[float, int, Any]:
        """POST one message; returns (seconds, status, body)."""
        if session is None:
            self.session += 1
            session = f"5190000{self.session:04d}"
        body = {
            "message": message,
            "session_id": session,
            "context": {"config": {"id_empresa": 12, "usuario_id": 7, "duracion_cita_minutos": 30}},
        }
        start = time.perf_counter()
        async with self.citas.http.post("/api/chat", json=body) as response:
            answer = await response.json()
        return time.perf_counter() - start, response.status, answer


@asynccontextmanager
async def harness(**overrides: Any) -> AsyncIterator[Harness]:
    async with FakeLLM() as llm:
        settings = Settings.from_env(
            {}, OPENAI_API_KEY="k", OPENAI_BASE_URL=llm.base_url
        ).with_updates(**overrides)
        async with LocalCitas.start(
            settings, clock=frozen_clock(NOW), seed=SandboxSeed.load()
        ) as citas:
            yield Harness(citas, llm.script, llm)


def counters(delta: MetricsDelta, *names: str) -> dict[str, float]:
    """Counters that moved, as `name{labels}: n` (without the `citas_` prefix and `_total`)."""
    out: dict[str, float] = {}
    for name in names:
        for labels, change in delta.changes(name):
            short = name.removeprefix("citas_").removesuffix("_total")
            out[f"{short}{{{','.join(labels.values())}}}"] = change
    return out


def backend_attempts(
    delta: MetricsDelta, outcome_filter: Callable[[str], bool] = lambda o: True
) -> int:
    """Backend HTTP attempts made (a call refused by an open circuit makes none)."""
    return int(
        sum(
            change
            for labels, change in delta.changes("citas_backend_calls_total")
            if outcome_filter(labels["outcome"]) and labels["outcome"] != "circuit_open"
        )
    )


def fmt(moved: dict[str, float]) -> str:
    return ", ".join(f"{k} +{v:g}" for k, v in moved.items())


def customer(status: int, body: Any) -> str:
    if status != 200:
        return f"{status} `{body['error']['code']}`"
    code = body.get("error", {}).get("code") if isinstance(body.get("error"), dict) else None
    reply = " ".join(body["reply"].split())  # one table cell: no line breaks
    text = reply[:48] + ("…" if len(reply) > 48 else "")
    return f"200 «{text}»" + (f" + `{code}`" if code else "")


# --------------------------------------------------------------------------- scenarios

Scenario = Callable[[], Awaitable[list[Row]]]
SHOWN = ("citas_backend_calls_total", "citas_llm_calls_total", "citas_tool_calls_total")


async def baseline() -> list[Row]:
    async with harness() as h:
        h.llm.add(reply("Hola, ¿en qué te ayudo?"))
        seconds, status, body = await h.chat("Hola")
    return [
        Row("none (first message)", customer(status, body), "5 info calls ok", f"{seconds:.3f} s")
    ]


async def latency_short() -> list[Row]:
    async with harness() as h:
        h.sandbox.backend.faults.add("OBTENER_CONTEXTO_NEGOCIO", Fault("latency", seconds=0.5))
        h.llm.add(reply("Hola."))
        seconds, status, body = await h.chat("Hola")
    return [
        Row(
            "latency 0.5 s on one info call (< read timeout)",
            customer(status, body),
            "`backend_call` duration_ms≈500, outcome ok",
            f"{seconds:.2f} s",
        )
    ]


async def latency_long() -> list[Row]:
    async with harness(backend_read_timeout_seconds=1.0) as h:
        await warm(h)
        h.sandbox.backend.faults.add("CONSULTAR_DISPONIBILIDAD", Fault("latency", seconds=30))
        h.llm.add(call("check_availability", SLOT), reply("Está libre."))
        delta = MetricsDelta()
        seconds, status, body = await h.chat("¿martes 3pm?")
    return [
        Row(
            "latency 30 s on CONSULTAR_DISPONIBILIDAD once (read timeout 1 s)",
            customer(status, body),
            "`backend_retry` warning; " + fmt(counters(delta, "citas_backend_calls_total")),
            f"{seconds:.2f} s",
        )
    ]


async def warm(h: Harness) -> None:
    """One turn so the business info is cached and later rows measure only their fault."""
    h.llm.add(reply("Hola."))
    await h.chat("Hola", session="warm")


async def status_once() -> list[Row]:
    async with harness() as h:
        await warm(h)
        h.sandbox.backend.faults.add("CONSULTAR_DISPONIBILIDAD", Fault("status", http_status=502))
        h.llm.add(call("check_availability", SLOT), reply("Está libre."))
        delta = MetricsDelta()
        seconds, status, body = await h.chat("¿martes 3pm?")
    return [
        Row(
            "HTTP 502 once on CONSULTAR_DISPONIBILIDAD",
            customer(status, body),
            fmt(counters(delta, "citas_backend_calls_total")),
            f"{seconds:.2f} s",
        )
    ]


async def status_persistent() -> list[Row]:
    async with harness() as h:
        await warm(h)
        h.sandbox.backend.faults.add(
            "CONSULTAR_DISPONIBILIDAD", Fault("status", http_status=503), times=None
        )
        h.llm.add(
            call("check_availability", SLOT),
            reply("Disculpa, el sistema de reservas no responde; intenta en unos minutos."),
        )
        delta = MetricsDelta()
        seconds, status, body = await h.chat("¿martes 3pm?")
    return [
        Row(
            "HTTP 503 on every CONSULTAR_DISPONIBILIDAD",
            customer(status, body) + " (the model read a `backend_unavailable` tool result)",
            "`tool_backend_failure` warning; " + fmt(counters(delta, *SHOWN)),
            f"{seconds:.2f} s, {backend_attempts(delta)} attempts",
        )
    ]


async def malformed_once() -> list[Row]:
    async with harness() as h:
        h.sandbox.backend.faults.add("OBTENER_HORARIO_REUNIONES", Fault("malformed_json"))
        h.llm.add(reply("Hola."))
        delta = MetricsDelta()
        seconds, status, body = await h.chat("Hola")
        moved = counters(delta, "citas_backend_calls_total")
    shown = {k: v for k, v in moved.items() if "HORARIO" in k}
    return [
        Row(
            "malformed JSON once on OBTENER_HORARIO_REUNIONES",
            customer(status, body),
            fmt(shown),
            f"{seconds:.2f} s",
        )
    ]


async def malformed_persistent() -> list[Row]:
    async with harness() as h:
        h.sandbox.backend.faults.add(
            "OBTENER_HORARIO_REUNIONES", Fault("malformed_json"), times=None
        )
        delta = MetricsDelta()
        seconds, status, body = await h.chat("Hola")
        moved = counters(delta, "citas_backend_calls_total", "citas_handled_errors_total")
        llm_asked = len(h.llm.requests)
    shown = {k: v for k, v in moved.items() if "HORARIO" in k or "business_info" in k}
    return [
        Row(
            "malformed JSON on every OBTENER_HORARIO_REUNIONES",
            customer(status, body) + f"; LLM not called ({llm_asked} requests)",
            "`turn_failed` warning; " + fmt(shown),
            f"{seconds:.2f} s",
        )
    ]


async def booking_fault(fault: Fault, label: str, **overrides: Any) -> list[Row]:
    async with harness(**overrides) as h:
        h.llm.add(call("check_availability", SLOT), reply("Libre. ¿Nombre y correo?"))
        await h.chat("martes 3pm", session="519111")
        h.sandbox.backend.faults.add("CREAR_EVENTO", fault)
        h.llm.add(call("create_booking", BOOKING), reply("¡Reservado!"))
        delta = MetricsDelta()
        seconds, status, body = await h.chat("Ana Pérez, ana@example.com", session="519111")
        events = len(h.sandbox.backend.events)
        sent = [b for _, b in h.sandbox.backend.calls if b["codOpe"] == "CREAR_EVENTO"]
    keys = len({b["idempotency_key"] for b in sent})
    moved = {k: v for k, v in counters(delta, "citas_backend_calls_total").items() if "CREAR" in k}
    moved.update(counters(delta, "citas_bookings_total"))
    return [
        Row(
            label,
            customer(status, body) + f" with the url; events in calendar: {events}",
            fmt(moved) + f"; {len(sent)} CREAR_EVENTO sent, {keys} idempotency key",
            f"{seconds:.2f} s",
        )
    ]


async def connection_reset() -> list[Row]:
    return await booking_fault(Fault("connection_reset"), "connection reset on CREAR_EVENTO")


async def commit_then_late() -> list[Row]:
    return await booking_fault(
        Fault("commit_then_late", seconds=30),
        "CREAR_EVENTO commits, answers after 30 s (read timeout 1 s)",
        backend_read_timeout_seconds=1.0,
    )


async def change_fault(op: str, label: str) -> list[Row]:
    """A cancellation or a reschedule whose backend commits and answers late: one change."""
    session = "51911100011"
    async with harness(backend_read_timeout_seconds=1.0, confirm_before_booking=False) as h:
        made = h.sandbox.backend.handle(
            "calendar",
            {
                "codOpe": "CREAR_EVENTO",
                "id_empresa": 12,
                "usuario_id": 7,
                "titulo": "Cita - Ana Pérez",
                "fecha_inicio": "2026-12-01 15:00:00",
                "fecha_fin": "2026-12-01 15:30:00",
                "cliente_nombre": "Ana Pérez",
                "cliente_correo": "ana@example.com",
                "cliente_telefono": session,
            },
        )
        tenant = Tenant(12, ZoneInfo("America/Lima"), 30, usuario_id=7)
        ref = reference_for(tenant, ConversationKey(12, session), str(made["id_evento"]))
        h.sandbox.backend.faults.add(op, Fault("commit_then_late", seconds=30))
        if op == "CANCELAR_EVENTO":
            h.llm.add(call("cancel_booking", {"reference": ref}), reply("Cancelada."))
        else:
            moved_to = {"reference": ref, "date": "2026-12-02", "time": "10:00"}
            h.llm.add(call("reschedule_booking", moved_to), reply("Cambiada."))
        delta = MetricsDelta()
        seconds, status, body = await h.chat("Sí, confirmo", session=session)
        [event] = [e for e in h.sandbox.backend.events if e.id_evento == made["id_evento"]]
        state = f"{event.estado} {event.fecha_inicio:%Y-%m-%d %H:%M}"
        sent = [b for _, b in h.sandbox.backend.calls if b["codOpe"] == op]
    keys = len({b["idempotency_key"] for b in sent})
    moved = {k: v for k, v in counters(delta, "citas_backend_calls_total").items() if op in k}
    moved.update(counters(delta, "citas_appointment_changes_total"))
    return [
        Row(
            label,
            customer(status, body) + f"; the event: {state}",
            fmt(moved) + f"; {len(sent)} {op} sent, {keys} idempotency key",
            f"{seconds:.2f} s",
        )
    ]


async def cancel_late() -> list[Row]:
    return await change_fault(
        "CANCELAR_EVENTO", "CANCELAR_EVENTO commits, answers after 30 s (read timeout 1 s)"
    )


async def reschedule_late() -> list[Row]:
    return await change_fault(
        "REPROGRAMAR_EVENTO", "REPROGRAMAR_EVENTO commits, answers after 30 s (read timeout 1 s)"
    )


async def backend_down() -> list[Row]:
    rows = []
    async with harness() as h:
        await h.sandbox.close()  # connection refused: the backend is gone
        delta = MetricsDelta()
        times = []
        opened_after = None
        for turn in range(1, 8):
            seconds, _status, body = await h.chat("Hola")
            times.append(seconds)
            states = [
                REGISTRY.get_sample_value("citas_circuit_state", {"operation": op}) for op in INFO
            ]
            if opened_after is None and all(s == 2 for s in states):
                opened_after = (turn, backend_attempts(delta))
        last = body
        assert opened_after is not None
        turn, attempts = opened_after
    rows.append(
        Row(
            "backend down (connection refused), breaker threshold 5",
            customer(200, last) + "; LLM not called",
            "`backend_retry`, `turn_failed`, `circuit_open` warnings; "
            "`citas_circuit_state`=2 per operation; then `outcome=circuit_open`",
            f"turns 1–{turn}: {min(times[:turn]):.2f}–{max(times[:turn]):.2f} s each; "
            f"{attempts} attempts before all 5 breakers opened (after turn {turn}); "
            f"then {min(times[turn:]) * 1000:.1f}–{max(times[turn:]) * 1000:.1f} ms, 0 attempts",
        )
    )
    return rows


async def backend_hanging() -> list[Row]:
    rows = []
    for overrides, label in (
        ({"backend_read_timeout_seconds": 1.0}, "read timeout 1 s"),
        ({}, "default timeouts: read 10 s, retry budget 20 s"),
    ):
        async with harness(**overrides) as h:
            h.sandbox.backend.faults.add(ANY_OPERATION, Fault("latency", seconds=60), times=None)
            delta = MetricsDelta()
            seconds, status, body = await h.chat("Hola")
        rows.append(
            Row(
                f"backend hanging: every call takes 60 s ({label})",
                customer(status, body),
                f"`outcome=timeout` attempts: {backend_attempts(delta)} (5 operations)",
                f"{seconds:.2f} s per turn until the breakers open",
            )
        )
    return rows


async def stale() -> list[Row]:
    async with harness(business_cache_ttl_seconds=0.2) as h:
        await warm(h)
        await asyncio.sleep(0.3)
        h.sandbox.backend.faults.add(ANY_OPERATION, Fault("status", http_status=503), times=None)
        h.llm.add(reply("Abrimos de 9 a 13 y de 15 a 19."))
        delta = MetricsDelta()
        seconds, status, body = await h.chat("¿Horario?")
        moved = counters(delta, "citas_cache_lookups_total", "citas_handled_errors_total")
    return [
        Row(
            "info refresh fails after the TTL (stale copy ≤ 1 h old)",
            customer(status, body) + " from the last good business data",
            "`cache_serving_stale` warning; " + fmt(moved),
            f"{seconds:.2f} s",
        )
    ]


async def llm_429() -> list[Row]:
    async with harness() as h:
        await warm(h)
        h.llm.fail_next(429, retry_after=1)
        h.llm.add(reply("Hola."))
        delta = MetricsDelta()
        seconds, status, body = await h.chat("Hola")
    return [
        Row(
            "LLM 429 with `Retry-After: 1`",
            customer(status, body),
            "`llm_retry` log (`wait_seconds=1.0`); "
            + fmt(counters(delta, "citas_llm_calls_total")),
            f"{seconds:.2f} s (2 LLM requests)",
        )
    ]


async def llm_500() -> list[Row]:
    async with harness() as h:
        await warm(h)
        h.llm.fail_next(500, times=3)
        delta = MetricsDelta()
        seconds, status, body = await h.chat("Hola")
        sent = len(h.llm.requests) - 1
    return [
        Row(
            "LLM 500 on every attempt (max_retries 2)",
            customer(status, body),
            "`turn_failed` warning; " + fmt(counters(delta, "citas_llm_calls_total")),
            f"{seconds:.2f} s ({sent} LLM requests)",
        )
    ]


async def llm_timeout() -> list[Row]:
    async with harness(llm_timeout_seconds=1.0) as h:
        await warm(h)
        h.llm.delay = 30
        delta = MetricsDelta()
        seconds, status, body = await h.chat("Hola")
        sent = len(h.llm.requests) - 1
    return [
        Row(
            "LLM never answers (`CITAS_LLM_TIMEOUT_SECONDS` 1 s, max_retries 2)",
            customer(status, body),
            fmt(counters(delta, "citas_llm_calls_total")),
            f"{seconds:.2f} s ({sent} LLM requests)",
        )
    ]


LONG_ANSWER = "El martes tenemos libre a las 10:00, a las 11:00 y a las 15:00. " * 6


async def llm_slow_stream() -> list[Row]:
    async with harness(llm_timeout_seconds=1.0) as h:
        await warm(h)
        h.server.chunk_delay = 0.05  # each chunk well within any read timeout
        h.llm.add(reply(LONG_ANSWER))
        delta = MetricsDelta()
        seconds, status, body = await h.chat("Hola")
    return [
        Row(
            f"LLM streams a long answer slowly (chunks 50 ms apart, "
            f"{len(LONG_ANSWER) // 4 * 0.05:.0f} s in all; `CITAS_LLM_TIMEOUT_SECONDS` 1 s)",
            customer(status, body),
            fmt(counters(delta, "citas_llm_calls_total")),
            f"{seconds:.2f} s",
        )
    ]


async def llm_stalled_stream() -> list[Row]:
    async with harness(llm_timeout_seconds=30.0, llm_read_timeout_seconds=0.5) as h:
        await warm(h)
        h.server.stall_next(60, after_chunks=3)
        h.llm.add(reply(LONG_ANSWER))
        delta = MetricsDelta()
        seconds, status, body = await h.chat("Hola")
    return [
        Row(
            "LLM stream stalls after its first chunks (`CITAS_LLM_READ_TIMEOUT_SECONDS` 0.5 s)",
            customer(status, body),
            fmt(counters(delta, "citas_llm_calls_total")),
            f"{seconds:.2f} s",
        )
    ]


async def deadline() -> list[Row]:
    async with harness(turn_deadline_seconds=2.0) as h:
        await warm(h)
        h.llm.fail_next(429, retry_after=60)
        delta = MetricsDelta()
        seconds, status, body = await h.chat("Hola")
    return [
        Row(
            "LLM 429 with `Retry-After: 60` (turn deadline 2 s)",
            customer(status, body),
            fmt(counters(delta, "citas_llm_calls_total")),
            f"{seconds:.2f} s",
        )
    ]


async def tool_raises() -> list[Row]:
    from citas.services.availability import AvailabilityService

    async def broken(*_args: Any) -> Any:
        raise RuntimeError("a bug")

    original = AvailabilityService.check_slot
    AvailabilityService.check_slot = broken  # type: ignore[method-assign]
    try:
        async with harness() as h:
            await warm(h)
            h.llm.add(call("check_availability", SLOT), reply("Disculpa, no pude revisarlo."))
            delta = MetricsDelta()
            seconds, status, body = await h.chat("¿martes 3pm?")
    finally:
        AvailabilityService.check_slot = original  # type: ignore[method-assign]
    moved = counters(delta, "citas_tool_calls_total", "citas_handled_errors_total")
    return [
        Row(
            "a tool raises (a bug)",
            customer(status, body) + " (the model read a `tool_failed` result)",
            "`tool_failed` error with traceback; " + fmt(moved),
            f"{seconds:.2f} s",
        )
    ]


async def overload() -> list[Row]:
    async with harness(max_concurrent_turns=1) as h:
        await warm(h)
        h.llm.delay_next(1)
        h.llm.add(reply("Hola."))
        first = asyncio.create_task(h.chat("Hola"))
        while not len(h.llm.requests) > 1:  # noqa: ASYNC110 - a measurement script
            await asyncio.sleep(0.002)
        delta = MetricsDelta()
        seconds, status, body = await h.chat("Hola")
        await first
    return [
        Row(
            "more turns than `CITAS_MAX_CONCURRENT_TURNS`",
            customer(status, body) + " with `Retry-After: 1`",
            fmt(counters(delta, "citas_rejected_requests_total")),
            f"{seconds * 1000:.1f} ms",
        )
    ]


async def hostile_input() -> list[Row]:
    """Bodies the gateway should never send, answered before any model call."""
    rows = []
    deep = b'{"message": "hola", "session_id": "s", "context": ' + b"[" * 1000 + b"]" * 1000 + b"}"
    plain = json.dumps(
        {"message": "hola", "session_id": "s", "context": {"config": {"id_empresa": 12}}}
    ).encode()
    cases = (
        ("a JSON body nested 1,000 levels deep", deep, "application/json"),
        ("a JSON body sent as `text/plain`", plain, "text/plain"),
    )
    async with harness() as h:
        for label, raw, content_type in cases:
            delta = MetricsDelta()
            start = time.perf_counter()
            async with h.citas.http.post(
                "/api/chat", data=raw, headers={"Content-Type": content_type}
            ) as response:
                body = await response.json()
            seconds = time.perf_counter() - start
            rows.append(
                Row(
                    label,
                    customer(response.status, body),
                    fmt(counters(delta, "citas_rejected_requests_total", *SHOWN)),
                    f"{seconds * 1000:.1f} ms",
                )
            )
    return rows


async def unknown_business() -> list[Row]:
    async with harness() as h:
        delta = MetricsDelta()
        times, statuses = [], []
        for n in range(3):
            body = {
                "message": f"hola {n}",
                "session_id": "51900000001",
                "context": {"config": {"id_empresa": 999}},
            }
            start = time.perf_counter()
            async with h.citas.http.post("/api/chat", json=body) as response:
                answer = await response.json()
            times.append(time.perf_counter() - start)
            statuses.append(customer(response.status, answer))
    return [
        Row(
            "3 messages for an `id_empresa` the backend does not know",
            statuses[0] + ", the model not called",
            fmt(counters(delta, "citas_rejected_requests_total", *SHOWN)),
            ", ".join(f"{t * 1000:.1f} ms" for t in times)
            + f"; {backend_attempts(delta)} backend calls in all",
        )
    ]


async def sigterm() -> list[Row]:
    rows = []
    for bound, delay, label in (
        (25.0, 1.0, "SIGTERM with a 1 s turn in flight"),
        (0.5, 60.0, "SIGTERM with a 60 s turn in flight (drain bound 0.5 s)"),
    ):
        async with FakeLLM(responder=lambda body: reply("Hola.")) as llm:
            llm.script.delay_next(delay)
            result = await _sigterm_once(llm, bound)
        rows.append(Row(label, *result))
    return rows


async def _sigterm_once(llm: FakeLLM, bound: float) -> tuple[str, str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CITAS_", "OPENAI_"))}
    env.update(
        OPENAI_BASE_URL=llm.base_url,
        OPENAI_API_KEY="k",
        CITAS_SHUTDOWN_DRAIN_SECONDS=str(bound),
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        *("-m", "citas", "serve", "--sandbox", "--port", "0"),
        cwd=ROOT,
        env=env,
        stderr=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.DEVNULL,
    )
    assert process.stderr is not None
    logs: list[dict[str, Any]] = []
    port = None
    while port is None:
        entry = json.loads(await process.stderr.readline())
        logs.append(entry)
        port = entry.get("port") if entry["event"] == "citas_listening" else None
    url = f"http://127.0.0.1:{port}"
    collector = asyncio.create_task(_collect(process.stderr, logs))
    async with aiohttp.ClientSession() as http:
        body = {"message": "Hola", "session_id": "1", "context": {"config": {"id_empresa": 12}}}
        in_flight = asyncio.create_task(http.post(f"{url}/api/chat", json=body))
        while not llm.script.requests:  # noqa: ASYNC110 - a measurement script
            await asyncio.sleep(0.002)
        sent = time.perf_counter()
        process.send_signal(signal.SIGTERM)
        await asyncio.sleep(0.2)
        ready = (await http.get(f"{url}/ready")).status
        refused = await http.post(f"{url}/api/chat", json={**body, "session_id": "2"})
        try:
            answer = await in_flight
            got = f"in-flight turn: {answer.status}"
        except aiohttp.ClientError as exc:
            got = f"in-flight turn: connection dropped ({type(exc).__name__})"
        code = await process.wait()
        took = time.perf_counter() - sent
    await collector
    drained = next(e for e in logs if e["event"] == "drain_finished")
    return (
        f"`/ready` {ready}; new turn {refused.status} (`Retry-After: "
        f"{refused.headers.get('Retry-After')}`); {got}",
        f"`drain_started`, `drain_finished` drained={drained['drained']} "
        f"in_flight={drained['in_flight']}, `citas_stopped`; exit code {code}",
        f"drain {drained['duration_ms'] / 1000:.2f} s; process gone {took:.2f} s after SIGTERM",
    )


async def _collect(stream: asyncio.StreamReader, logs: list[dict[str, Any]]) -> None:
    async for line in stream:
        try:
            logs.append(json.loads(line))
        except ValueError:
            continue


SCENARIOS: tuple[Scenario, ...] = (
    baseline,
    latency_short,
    latency_long,
    status_once,
    status_persistent,
    malformed_once,
    malformed_persistent,
    connection_reset,
    commit_then_late,
    cancel_late,
    reschedule_late,
    backend_down,
    backend_hanging,
    stale,
    llm_429,
    llm_500,
    llm_timeout,
    llm_slow_stream,
    llm_stalled_stream,
    deadline,
    tool_raises,
    overload,
    hostile_input,
    unknown_business,
    sigterm,
)


async def main() -> None:
    # Quiet: only the table goes out. Logs of the scenarios are not what is measured.
    configure_logging("json", level=50)
    rows: list[Row] = []
    for scenario in SCENARIOS:
        rows.extend(await scenario())
    print("| fault | the customer gets | logs and metrics | measured |")
    print("|---|---|---|---|")
    for row in rows:
        print(f"| {row.fault} | {row.customer} | {row.signals} | {row.figure} |")


if __name__ == "__main__":
    asyncio.run(main())
