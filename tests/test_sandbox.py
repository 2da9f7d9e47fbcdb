"""The sandbox backend: each operation, its business rules, and each fault seen over real HTTP."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import pytest
from aiohttp.test_utils import TestClient
from aiohttp.web import Application
from pydantic import ValidationError

from citas.clock import frozen_clock
from citas.sandbox import (
    ANY_OPERATION,
    SANDBOX_BACKEND,
    Fault,
    RunningSandbox,
    SandboxBackend,
    SandboxSeed,
    create_sandbox_app,
    start_sandbox,
)

LIMA = ZoneInfo("America/Lima")
SANTIAGO = ZoneInfo("America/Santiago")
CLINIC, BARBER, PHYSIO = 12, 27, 41
# Monday 2026-11-30 08:00 in Lima: everything from Tuesday 2026-12-01 on is in the future.
BEFORE_TUESDAY = datetime(2026, 11, 30, 8, 0, tzinfo=LIMA)

AiohttpClient = Callable[[Application], Awaitable[TestClient[Any, Any]]]


def make_backend(now: datetime = BEFORE_TUESDAY, seed: SandboxSeed | None = None) -> SandboxBackend:
    return SandboxBackend(seed or SandboxSeed.load(), clock=frozen_clock(now))


def booking(**overrides: Any) -> dict[str, Any]:
    """The body of CREAR_EVENTO in backend-examples, with `overrides` applied."""
    body: dict[str, Any] = {
        "codOpe": "CREAR_EVENTO",
        "id_empresa": CLINIC,
        "usuario_id": 7,
        "titulo": "Cita: Limpieza dental - Ana Pérez",
        "descripcion": "Reservada por el asistente. Notas: primera visita",
        "fecha_inicio": "2026-12-01 15:00:00",
        "fecha_fin": "2026-12-01 15:30:00",
        "cliente_nombre": "Ana Pérez",
        "cliente_correo": "ana.perez@example.com",
        "cliente_telefono": "+51987654321",
        "idempotency_key": "c1d7a0a4e2f94b1e9f3b0c6a2d8e4f10",
    }
    body.update(overrides)
    return body


def availability(start: str, end: str, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "codOpe": "CONSULTAR_DISPONIBILIDAD",
        "id_empresa": CLINIC,
        "usuario_id": 7,
        "fecha_inicio": start,
        "fecha_fin": end,
    }
    body.update(overrides)
    return body


def suggestions(fecha: str, duracion: int = 30, cantidad: int = 5, **overrides: Any) -> Any:
    body: dict[str, Any] = {
        "codOpe": "SUGERIR_HORARIOS",
        "id_empresa": CLINIC,
        "usuario_id": 7,
        "fecha": fecha,
        "duracion_minutos": duracion,
        "cantidad": cantidad,
    }
    body.update(overrides)
    return body


def starts(answer: dict[str, Any]) -> list[str]:
    return [slot["fecha_inicio"] for slot in answer["horarios"]]


# --------------------------------------------------------------------------- seed


def test_bundled_seed_has_the_demo_businesses() -> None:
    seed = SandboxSeed.load()
    assert {CLINIC, BARBER, PHYSIO} <= set(seed.empresas)
    assert seed.empresas[CLINIC].nombre == "Clínica Sonrisas"
    assert seed.empresas[BARBER].zona_horaria == "America/Lima"
    assert seed.empresas[PHYSIO].zona_horaria == "America/Santiago"
    assert all(not business.eventos for business in seed.empresas.values())


def test_inline_seed_validates_and_rejects_accented_day_keys() -> None:
    fixture: dict[str, Any] = {"empresas": {"5": {"nombre": "Spa", "zona_horaria": "America/Lima"}}}
    assert SandboxSeed.model_validate(fixture).empresas[5].horario.domingo == []
    fixture["empresas"]["5"]["horario"] = {"miércoles": [{"inicio": "09:00", "fin": "10:00"}]}
    with pytest.raises(ValidationError):
        SandboxSeed.model_validate(fixture)


@pytest.mark.parametrize(
    "business",
    [
        {"nombre": "X", "zona_horaria": "America/Atlantida"},
        {
            "nombre": "X",
            "zona_horaria": "UTC",
            "horario": {"lunes": [{"inicio": "10:00", "fin": "09:00"}]},
        },
    ],
    ids=["unknown-zone", "range-ends-before-start"],
)
def test_seed_rejects_invalid_businesses(business: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        SandboxSeed.model_validate({"empresas": {"1": business}})


# --------------------------------------------------------------------------- information


def test_opening_hours_match_the_backend_example() -> None:
    answer = make_backend().handle(
        "info", {"codOpe": "OBTENER_HORARIO_REUNIONES", "id_empresa": 12}
    )
    weekday = [{"inicio": "09:00", "fin": "13:00"}, {"inicio": "15:00", "fin": "19:00"}]
    assert answer == {
        "success": True,
        "horario": {
            "lunes": weekday,
            "martes": weekday,
            "miercoles": weekday,
            "jueves": weekday,
            "viernes": [{"inicio": "09:00", "fin": "17:00"}],
            "sabado": [{"inicio": "09:00", "fin": "13:00"}],
            "domingo": [],
        },
    }


def test_context_faqs_services_and_products_have_the_example_shapes() -> None:
    backend = make_backend()

    def ask(op: str) -> dict[str, Any]:
        return backend.handle("info", {"codOpe": op, "id_empresa": CLINIC})

    assert ask("OBTENER_CONTEXTO_NEGOCIO") == {
        "success": True,
        "contexto": "Clínica Sonrisas es una clínica dental en Miraflores, Lima. Atendemos niños y "
        "adultos. Dirección: Av. Larco 123. Estacionamiento gratuito.",
    }
    faqs = ask("OBTENER_PREGUNTAS_FRECUENTES")
    assert faqs["success"] is True
    assert faqs["preguntas"][:2] == [
        {"pregunta": "¿Aceptan seguros?", "respuesta": "Sí, trabajamos con Pacífico y Rímac."},
        {"pregunta": "¿Cuánto dura una limpieza?", "respuesta": "Unos 30 minutos."},
    ]
    services = ask("OBTENER_SERVICIOS_CITAS")
    assert services["servicios"][:2] == [
        {
            "id": 1,
            "nombre": "Limpieza dental",
            "precio": 80.0,
            "descripcion": "Profilaxis completa",
        },
        {
            "id": 2,
            "nombre": "Blanqueamiento",
            "precio": 350.0,
            "descripcion": "Blanqueamiento LED en consultorio",
        },
    ]
    products = ask("OBTENER_PRODUCTOS_CITAS")
    assert products["productos"][0] == {
        "id": 31,
        "nombre": "Kit de ortodoncia",
        "precio": 45.0,
        "descripcion": "Cepillo, hilo y cera",
    }


def search(backend: SandboxBackend, busqueda: str, limite: int = 10, empresa: int = CLINIC) -> Any:
    body = {
        "codOpe": "BUSCAR_PRODUCTOS_SERVICIOS_CITAS",
        "id_empresa": empresa,
        "busqueda": busqueda,
        "limite": limite,
    }
    return backend.handle("info", body)


def test_search_matches_the_backend_example() -> None:
    assert search(make_backend(), "blanqueamiento") == {
        "success": True,
        "resultados": [
            {
                "id": 2,
                "tipo": "servicio",
                "nombre": "Blanqueamiento",
                "precio": 350.0,
                "descripcion": "Blanqueamiento LED en consultorio",
            }
        ],
    }


@pytest.mark.parametrize(
    "query", ["radiografia panoramica", "RADIOGRAFÍA PANORÁMICA", "Radiografía panorámica"]
)
def test_search_ignores_case_and_accents(query: str) -> None:
    results = search(make_backend(), query)["resultados"]
    assert [item["nombre"] for item in results] == ["Consulta de ortodoncia"]


def test_search_needs_every_word_and_covers_products_and_descriptions() -> None:
    backend = make_backend()
    # "cera" is only in the kit's description; "kit cera" needs both words.
    assert [(r["tipo"], r["id"]) for r in search(backend, "kit cera")["resultados"]] == [
        ("producto", 31)
    ]
    assert search(backend, "kit blanqueamiento")["resultados"] == []
    barber = search(backend, "barba", empresa=BARBER)["resultados"]
    assert {r["tipo"] for r in barber} == {"servicio", "producto"}
    assert len(search(backend, "barba", limite=2, empresa=BARBER)["resultados"]) == 2


# --------------------------------------------------------------------------- availability


def test_availability_follows_the_calendar_with_half_open_slots() -> None:
    backend = make_backend()
    assert backend.handle("calendar", booking())["success"] is True

    def free(start: str, end: str, **overrides: Any) -> bool:
        answer = backend.handle("calendar", availability(start, end, **overrides))
        assert answer["success"] is True
        return bool(answer["disponible"])

    assert not free("2026-12-01 15:00:00", "2026-12-01 15:30:00")
    assert not free("2026-12-01 15:15:00", "2026-12-01 16:00:00")
    assert free("2026-12-01 15:30:00", "2026-12-01 16:00:00")
    assert free("2026-12-01 14:30:00", "2026-12-01 15:00:00")
    # Another owner's calendar, and the business's default calendar, are separate.
    assert free("2026-12-01 15:00:00", "2026-12-01 15:30:00", usuario_id=8)
    assert free("2026-12-01 15:00:00", "2026-12-01 15:30:00", usuario_id=None)


def test_availability_ignores_opening_hours() -> None:
    # Sunday 03:00 is closed, but opening hours are citas's job, not the calendar's.
    answer = make_backend().handle(
        "calendar", availability("2026-12-06 03:00:00", "2026-12-06 03:30:00")
    )
    assert answer == {"success": True, "disponible": True}


def test_default_calendar_when_usuario_id_is_absent() -> None:
    backend = make_backend()
    body = booking()
    del body["usuario_id"]
    assert backend.handle("calendar", body)["success"] is True
    assert backend.events[0].usuario_id is None
    check = availability("2026-12-01 15:00:00", "2026-12-01 15:30:00", usuario_id=None)
    assert backend.handle("calendar", check)["disponible"] is False


# --------------------------------------------------------------------------- booking


def test_create_event_stores_it_and_answers_id_and_url() -> None:
    backend = make_backend()
    answer = backend.handle("calendar", booking())
    assert answer == {
        "success": True,
        "id_evento": 1000,
        "url": "https://meet.sandbox.citas.local/1000",
    }
    event = backend.events[0]
    assert (event.id_empresa, event.usuario_id, event.cliente_correo) == (
        CLINIC,
        7,
        "ana.perez@example.com",
    )
    assert event.fecha_inicio == datetime(2026, 12, 1, 15, 0)
    second = backend.handle(
        "calendar",
        booking(
            fecha_inicio="2026-12-01 16:00:00",
            fecha_fin="2026-12-01 16:30:00",
            idempotency_key="other",
        ),
    )
    assert second["id_evento"] == 1001


def test_same_idempotency_key_returns_the_first_event() -> None:
    backend = make_backend()
    first = backend.handle("calendar", booking())
    again = backend.handle(
        "calendar", booking(fecha_inicio="2026-12-02 09:00:00", fecha_fin="2026-12-02 09:30:00")
    )
    assert again == first
    assert len(backend.events) == 1


def test_idempotency_keys_are_scoped_per_business() -> None:
    backend = make_backend()
    backend.handle("calendar", booking())
    other = backend.handle("calendar", booking(id_empresa=BARBER))
    assert other["success"] is True
    assert len(backend.events) == 2


def test_taken_slot_is_refused() -> None:
    backend = make_backend()
    backend.handle("calendar", booking())
    answer = backend.handle(
        "calendar",
        booking(
            fecha_inicio="2026-12-01 15:15:00",
            fecha_fin="2026-12-01 15:45:00",
            idempotency_key="another-customer",
        ),
    )
    assert answer == {"success": False, "error": "El horario ya no está disponible"}
    assert len(backend.events) == 1


def test_seeded_busy_slots_block_bookings() -> None:
    busy = {
        "usuario_id": 7,
        "fecha_inicio": "2026-12-01 15:00:00",
        "fecha_fin": "2026-12-01 16:00:00",
    }
    seed = SandboxSeed.model_validate(
        {
            "empresas": {
                "12": {"nombre": "Clínica", "zona_horaria": "America/Lima", "eventos": [busy]}
            }
        }
    )
    backend = make_backend(seed=seed)
    assert [(e.id_evento, e.titulo) for e in backend.events] == [(1000, "Ocupado")]
    assert backend.handle("calendar", booking()) == {
        "success": False,
        "error": "El horario ya no está disponible",
    }


def test_seed_round_trips_through_json() -> None:
    seed = SandboxSeed.model_validate(
        {
            "empresas": {
                "3": {
                    "nombre": "x",
                    "zona_horaria": "UTC",
                    "eventos": [
                        {"fecha_inicio": "2026-12-01 15:00:00", "fecha_fin": "2026-12-01 16:00:00"}
                    ],
                }
            }
        }
    )
    assert SandboxSeed.model_validate_json(seed.model_dump_json()) == seed


# --------------------------------------------------------------------------- suggestions


def test_suggestions_respect_opening_hours_and_step() -> None:
    answer = make_backend().handle("calendar", suggestions("2026-12-01", duracion=60, cantidad=12))
    assert answer["success"] is True
    assert answer["horarios"][0] == {
        "fecha_inicio": "2026-12-01 09:00:00",
        "fecha_fin": "2026-12-01 10:00:00",
    }
    # 60-minute slots every 30 minutes, none crossing the 13:00 lunch break.
    assert starts(answer) == [
        "2026-12-01 09:00:00", "2026-12-01 09:30:00", "2026-12-01 10:00:00",
        "2026-12-01 10:30:00", "2026-12-01 11:00:00", "2026-12-01 11:30:00",
        "2026-12-01 12:00:00", "2026-12-01 15:00:00", "2026-12-01 15:30:00",
        "2026-12-01 16:00:00", "2026-12-01 16:30:00", "2026-12-01 17:00:00",
    ]  # fmt: skip


def test_short_durations_step_by_their_own_length() -> None:
    answer = make_backend().handle("calendar", suggestions("2026-12-01", duracion=20, cantidad=3))
    assert starts(answer) == ["2026-12-01 09:00:00", "2026-12-01 09:20:00", "2026-12-01 09:40:00"]


def test_suggestions_skip_the_past_with_a_frozen_clock() -> None:
    now = datetime(2026, 12, 1, 10, 10, tzinfo=LIMA)
    answer = make_backend(now).handle("calendar", suggestions("2026-12-01", cantidad=2))
    assert starts(answer) == ["2026-12-01 10:30:00", "2026-12-01 11:00:00"]


def test_suggestions_use_the_business_zone_not_the_clock_zone() -> None:
    # 15:00 UTC is 10:00 in Lima; a clock given in UTC must not shift the cut-off.
    now = datetime(2026, 12, 1, 15, 0, tzinfo=UTC)
    answer = make_backend(now).handle("calendar", suggestions("2026-12-01", cantidad=1))
    assert starts(answer) == ["2026-12-01 10:00:00"]


@pytest.mark.parametrize(
    ("utc_now", "first_slot"),
    [
        # Santiago is UTC-3 in summer (DST) and UTC-4 in winter.
        (datetime(2026, 12, 1, 12, 0, tzinfo=UTC), "2026-12-01 09:00:00"),
        (datetime(2026, 7, 1, 12, 0, tzinfo=UTC), "2026-07-01 08:00:00"),
    ],
    ids=["summer", "winter"],
)
def test_suggestions_follow_santiago_daylight_saving(utc_now: datetime, first_slot: str) -> None:
    body = suggestions(first_slot[:10], cantidad=1, id_empresa=PHYSIO)
    assert starts(make_backend(utc_now).handle("calendar", body)) == [first_slot]


def test_suggestions_skip_wall_times_that_do_not_exist() -> None:
    # Chile springs forward at 00:00 on 2026-09-06: 00:00-00:59 never happens that night.
    seed = SandboxSeed.model_validate(
        {
            "empresas": {
                "9": {
                    "nombre": "Guardia",
                    "zona_horaria": "America/Santiago",
                    "horario": {"domingo": [{"inicio": "00:00", "fin": "02:00"}]},
                }
            }
        }
    )
    backend = make_backend(datetime(2026, 9, 1, tzinfo=SANTIAGO), seed)
    answer = backend.handle("calendar", suggestions("2026-09-06", cantidad=4, id_empresa=9))
    assert starts(answer) == [
        "2026-09-06 01:00:00",
        "2026-09-06 01:30:00",
        "2026-09-13 00:00:00",
        "2026-09-13 00:30:00",
    ]


def test_suggestions_skip_busy_slots_and_continue_on_following_days() -> None:
    backend = make_backend()
    # Saturday morning is the clinic's last opening before the closed Sunday.
    backend.handle(
        "calendar", booking(fecha_inicio="2026-12-05 09:00:00", fecha_fin="2026-12-05 12:30:00")
    )
    answer = backend.handle("calendar", suggestions("2026-12-05", duracion=30, cantidad=3))
    assert starts(answer) == ["2026-12-05 12:30:00", "2026-12-07 09:00:00", "2026-12-07 09:30:00"]


def test_suggestions_stop_after_fourteen_days() -> None:
    seed = SandboxSeed.model_validate(
        {"empresas": {"9": {"nombre": "Cerrado", "zona_horaria": "America/Lima"}}}
    )
    answer = make_backend(seed=seed).handle("calendar", suggestions("2026-12-01", id_empresa=9))
    assert answer == {"success": True, "horarios": []}


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("url_kind", "body"),
    [
        ("calendar", availability("2026-12-01 15:00:00", "2026-12-01 15:30:00")),
        ("calendar", suggestions("2026-12-01")),
        ("calendar", booking()),
        ("info", {"codOpe": "OBTENER_HORARIO_REUNIONES"}),
        ("info", {"codOpe": "OBTENER_CONTEXTO_NEGOCIO"}),
        ("info", {"codOpe": "OBTENER_PREGUNTAS_FRECUENTES"}),
        ("info", {"codOpe": "OBTENER_SERVICIOS_CITAS"}),
        ("info", {"codOpe": "OBTENER_PRODUCTOS_CITAS"}),
        ("info", {"codOpe": "BUSCAR_PRODUCTOS_SERVICIOS_CITAS", "busqueda": "x"}),
    ],
)
def test_unknown_business_is_refused(url_kind: Any, body: dict[str, Any]) -> None:
    answer = make_backend().handle(url_kind, {**body, "id_empresa": 999})
    assert answer == {"success": False, "error": "Empresa no encontrada"}


@pytest.mark.parametrize(
    ("url_kind", "body", "fragment"),
    [
        ("calendar", {"id_empresa": CLINIC}, "codOpe"),
        ("calendar", {"codOpe": "BORRAR_TODO", "id_empresa": CLINIC}, "BORRAR_TODO"),
        ("info", booking(), "ws_informacion_ia.php"),
        ("calendar", {"codOpe": "OBTENER_HORARIO_REUNIONES", "id_empresa": 12}, "ws_calendario"),
        ("info", {"codOpe": "OBTENER_CONTEXTO_NEGOCIO"}, "id_empresa"),
        ("calendar", booking(fecha_inicio="01/12/2026 15:00"), "fecha_inicio"),
        ("calendar", booking(fecha_fin="2026-12-01 14:00:00"), "fecha_fin"),
        (
            "calendar",
            {k: v for k, v in booking().items() if k != "cliente_nombre"},
            "cliente_nombre",
        ),
        ("calendar", suggestions("2026-12-01", cantidad=0), "cantidad"),
    ],
)
def test_bad_requests_answer_a_clear_error(
    url_kind: Any, body: dict[str, Any], fragment: str
) -> None:
    answer = make_backend().handle(url_kind, body)
    assert answer["success"] is False
    assert fragment in answer["error"]


def test_every_request_is_recorded_as_received() -> None:
    backend = make_backend()
    body = booking()
    backend.handle("calendar", body)
    backend.handle("info", {"id_empresa": 1})
    body["titulo"] = "changed later by the caller"
    assert [op for op, _ in backend.calls] == ["CREAR_EVENTO", ""]
    assert backend.calls_of("CREAR_EVENTO")[0]["titulo"] == "Cita: Limpieza dental - Ana Pérez"


# --------------------------------------------------------------------------- HTTP app


async def test_app_serves_both_endpoints(aiohttp_client: AiohttpClient) -> None:
    backend = make_backend()
    app = create_sandbox_app(backend)
    assert app[SANDBOX_BACKEND] is backend
    client = await aiohttp_client(app)
    created = await client.post("/ws_calendario.php", json=booking())
    assert (created.status, await created.json()) == (
        200,
        {"success": True, "id_evento": 1000, "url": "https://meet.sandbox.citas.local/1000"},
    )
    info = await client.post(
        "/ws_informacion_ia.php", json={"codOpe": "OBTENER_CONTEXTO_NEGOCIO", "id_empresa": PHYSIO}
    )
    assert "Providencia" in (await info.json())["contexto"]


@pytest.mark.parametrize("raw", [b"{not json", b"[1, 2]", b"\xff\xfe", b""])
async def test_invalid_json_body_answers_like_php(
    aiohttp_client: AiohttpClient, raw: bytes
) -> None:
    client = await aiohttp_client(create_sandbox_app(make_backend()))
    response = await client.post("/ws_calendario.php", data=raw)
    assert response.status == 200
    answer = await response.json()
    assert answer["success"] is False
    assert answer["error"]


# --------------------------------------------------------------------------- faults over HTTP


@pytest.fixture
async def sandbox() -> AsyncIterator[RunningSandbox]:
    running = await start_sandbox(make_backend())
    try:
        yield running
    finally:
        await running.close()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


CONTEXT = {"codOpe": "OBTENER_CONTEXTO_NEGOCIO", "id_empresa": CLINIC}


async def post_json(
    session: aiohttp.ClientSession, url: str, body: dict[str, Any], seconds: float = 5.0
) -> Any:
    async with session.post(url, json=body, timeout=aiohttp.ClientTimeout(total=seconds)) as resp:
        assert resp.status == 200
        return await resp.json()


async def test_start_sandbox_listens_on_a_free_loopback_port(
    sandbox: RunningSandbox, session: aiohttp.ClientSession
) -> None:
    assert sandbox.calendar_url.startswith("http://127.0.0.1:")
    assert sandbox.calendar_url.endswith("/ws_calendario.php")
    assert sandbox.info_url.endswith("/ws_informacion_ia.php")
    assert ":0/" not in sandbox.info_url
    assert (await post_json(session, sandbox.info_url, CONTEXT))["success"] is True


async def test_latency_fault_delays_the_answer(
    sandbox: RunningSandbox, session: aiohttp.ClientSession
) -> None:
    sandbox.backend.faults.add("OBTENER_CONTEXTO_NEGOCIO", Fault("latency", seconds=0.3))
    started = time.monotonic()
    assert (await post_json(session, sandbox.info_url, CONTEXT))["success"] is True
    assert time.monotonic() - started >= 0.3
    started = time.monotonic()
    await post_json(session, sandbox.info_url, CONTEXT)
    assert time.monotonic() - started < 0.3
    assert sandbox.backend.faults.triggered == ["OBTENER_CONTEXTO_NEGOCIO"]


async def test_status_fault_answers_5xx_text_then_recovers(
    sandbox: RunningSandbox, session: aiohttp.ClientSession
) -> None:
    sandbox.backend.faults.add(
        "OBTENER_CONTEXTO_NEGOCIO", Fault("status", http_status=502), times=2
    )
    for _ in range(2):
        async with session.post(sandbox.info_url, json=CONTEXT) as response:
            assert response.status == 502
            assert await response.text() == "Service Unavailable"
    assert (await post_json(session, sandbox.info_url, CONTEXT))["success"] is True
    assert [op for op, _ in sandbox.backend.calls] == ["OBTENER_CONTEXTO_NEGOCIO"] * 3
    assert sandbox.backend.faults.triggered == ["OBTENER_CONTEXTO_NEGOCIO"] * 2


async def test_malformed_json_fault(
    sandbox: RunningSandbox, session: aiohttp.ClientSession
) -> None:
    sandbox.backend.faults.add("SUGERIR_HORARIOS", Fault("malformed_json"))
    async with session.post(sandbox.calendar_url, json=suggestions("2026-12-01")) as response:
        assert response.status == 200
        with pytest.raises(json.JSONDecodeError):
            await response.json()


async def test_connection_reset_fault_disconnects_without_committing(
    sandbox: RunningSandbox, session: aiohttp.ClientSession
) -> None:
    sandbox.backend.faults.add("CREAR_EVENTO", Fault("connection_reset"))
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await post_json(session, sandbox.calendar_url, booking())
    assert sandbox.backend.events == []
    assert len(sandbox.backend.calls_of("CREAR_EVENTO")) == 1
    assert (await post_json(session, sandbox.calendar_url, booking()))["success"] is True


async def test_commit_then_late_times_out_but_books_once(
    sandbox: RunningSandbox, session: aiohttp.ClientSession
) -> None:
    sandbox.backend.faults.add("CREAR_EVENTO", Fault("commit_then_late", seconds=5))
    with pytest.raises(TimeoutError):
        await post_json(session, sandbox.calendar_url, booking(), seconds=0.2)
    assert len(sandbox.backend.events) == 1
    # The client's retry with the same key gets the first event back, not a second booking.
    retry = await post_json(session, sandbox.calendar_url, booking())
    assert retry["id_evento"] == sandbox.backend.events[0].id_evento
    assert len(sandbox.backend.events) == 1


async def test_permanent_fault_until_cleared_and_wildcard(
    sandbox: RunningSandbox, session: aiohttp.ClientSession
) -> None:
    faults = sandbox.backend.faults
    faults.add(ANY_OPERATION, Fault("status", http_status=503), times=None)
    for body in (CONTEXT, {"codOpe": "OBTENER_SERVICIOS_CITAS", "id_empresa": CLINIC}) * 2:
        async with session.post(sandbox.info_url, json=body) as response:
            assert response.status == 503
    assert faults.pending() == 1
    faults.clear(ANY_OPERATION)
    assert (await post_json(session, sandbox.info_url, CONTEXT))["success"] is True
    assert len(faults.triggered) == 4


async def test_close_answers_late_faults_at_once(session: aiohttp.ClientSession) -> None:
    running = await start_sandbox(make_backend())
    running.backend.faults.add("CREAR_EVENTO", Fault("commit_then_late", seconds=60))
    request = asyncio.create_task(post_json(session, running.calendar_url, booking()))
    # The backend offers no hook to await, and the commit is the moment the handler sleeps.
    while not running.backend.events:  # noqa: ASYNC110
        await asyncio.sleep(0.01)
    started = time.monotonic()
    await running.close()
    assert time.monotonic() - started < 5
    assert (await request)["success"] is True


def test_fault_times_must_be_positive() -> None:
    with pytest.raises(ValueError, match="times"):
        make_backend().faults.add("CREAR_EVENTO", Fault("latency"), times=0)


def test_a_long_running_sandbox_can_keep_no_call_log() -> None:
    backend = SandboxBackend(SandboxSeed.load(), record_calls=False)
    answer = backend.handle("info", {"codOpe": "OBTENER_CONTEXTO_NEGOCIO", "id_empresa": 12})
    assert answer["success"] is True
    assert backend.calls == []
