"""A service with its own `duracion_minutos` is checked and booked for that long; any other
appointment keeps the request's `duracion_cita_minutos`."""

from __future__ import annotations

import pytest

from citas.agent.tools import TurnContext
from citas.domain import Offering
from citas.sandbox import RunningSandbox
from citas.services.products import parse_offerings
from citas.testing import ModelScript, call, reply
from tests.conftest import ChatFn, tool_results, turn_context

CUSTOMER = {"customer_name": "Ana Pérez", "customer_email": "ana.perez@example.com"}


def long_whitening(sandbox: RunningSandbox, minutes: int = 90) -> None:
    """The clinic's whitening lasts `minutes` (the request's default is 30)."""
    businesses = sandbox.backend.seed.empresas
    services = [
        item.model_copy(update={"duracion_minutos": minutes})
        if item.nombre == "Blanqueamiento"
        else item
        for item in businesses[12].servicios
    ]
    businesses[12] = businesses[12].model_copy(update={"servicios": services})


async def test_a_long_service_is_checked_for_its_own_length(
    chat: ChatFn, llm: ModelScript, sandbox: RunningSandbox
) -> None:
    long_whitening(sandbox)
    # Tuesday's morning range ends at 13:00: 30 minutes from 12:00 fit, 90 do not.
    noon = {"date": "2026-12-01", "time": "12:00"}
    llm.add(
        call("check_availability", {**noon, "service": "blanqueamiento"}),
        call("check_availability", noon, id="plain"),
        reply("..."),
    )
    await chat("¿Un blanqueamiento el martes a mediodía?")
    whitening, default = tool_results(llm.requests[-1])
    assert whitening["disponible"] is False and whitening["duracion_minutos"] == 90
    assert default["disponible"] is True and "duracion_minutos" not in default
    assert "Blanqueamiento: S/ 350.00 (90 min)" in llm.requests[0]["messages"][0]["content"]


async def test_a_long_service_is_booked_for_its_own_length(
    chat: ChatFn, llm: ModelScript, sandbox: RunningSandbox
) -> None:
    long_whitening(sandbox)
    slot = {"date": "2026-12-01", "time": "15:00", "service": "Blanqueamiento"}
    llm.add(call("check_availability", slot), reply("Libre. ¿Nombre y correo?"))
    await chat("¿Blanqueamiento el martes a las 3pm?")
    llm.add(call("create_booking", {**slot, **CUSTOMER}), reply("Listo."))
    await chat("Ana Pérez, ana.perez@example.com")
    assert tool_results(llm.requests[-1])[-1]["reservado"] is True
    [body] = sandbox.backend.calls_of("CREAR_EVENTO")
    assert (body["fecha_inicio"], body["fecha_fin"]) == (
        "2026-12-01 15:00:00",
        "2026-12-01 16:30:00",
    )
    assert body["titulo"] == "Cita: Blanqueamiento - Ana Pérez"


async def test_a_service_without_a_length_or_unknown_keeps_the_default(
    chat: ChatFn, llm: ModelScript, sandbox: RunningSandbox
) -> None:
    slot = {"date": "2026-12-01", "time": "15:00", "service": "masaje relajante"}
    llm.add(call("check_availability", slot), reply("Libre."))
    await chat("¿Masaje el martes a las 3pm?")
    llm.add(call("create_booking", {**slot, **CUSTOMER}), reply("Listo."))
    await chat("Ana Pérez, ana.perez@example.com")
    [body] = sandbox.backend.calls_of("CREAR_EVENTO")
    assert body["fecha_fin"] == "2026-12-01 15:30:00"


def _context(*services: Offering) -> TurnContext:
    return turn_context(offerings=services)


def test_the_service_is_found_by_its_name_as_people_write_it() -> None:
    cut = Offering(1, "servicio", "Corte de cabello", 30.0, "", 45)
    beard = Offering(2, "servicio", "Perfilado de barba", 20.0, "", 20)
    both = Offering(3, "servicio", "Corte y barba", 45.0, "")
    ctx = _context(cut, beard, both)
    assert ctx.find_service("corte de  CABELLO") is cut
    assert ctx.find_service("barba") is None  # two services fit: none is guessed
    assert ctx.find_service("el perfilado de barba") is beard
    assert ctx.tenant_for("Corte de cabello").duration_minutes == 45
    assert ctx.tenant_for("Corte y barba") is ctx.tenant  # no length of its own
    assert ctx.tenant_for(None) is ctx.tenant


@pytest.mark.parametrize(
    ("raw", "minutes"),
    [(45, 45), (90.0, 90), ("60", 60), (None, None), (0, None), (4, None), (601, None),
     (True, None), ("una hora", None), (30.5, None), ([], None)],
)  # fmt: skip
def test_only_a_sane_duracion_minutos_is_kept(raw: object, minutes: int | None) -> None:
    [service] = parse_offerings(
        [{"id": 1, "nombre": "Corte", "precio": 30, "duracion_minutos": raw}], "servicio"
    )
    assert service.duration_minutes == minutes
