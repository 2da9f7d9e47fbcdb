"""Less friction on WhatsApp: the phone is the WhatsApp number, the email is optional when the
business says so, and a returning customer's data is offered back instead of asked again."""

from __future__ import annotations

import json
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from citas.agent.tools import TOOLS, ToolRegistry
from citas.customer_words import CustomerWords
from citas.domain import Tenant
from citas.sandbox import RunningSandbox
from citas.services.appointments import session_phone
from citas.testing import ModelScript, call, reply
from tests.conftest import ChatFn, tool_results

SLOT = {"date": "2026-12-01", "time": "15:00"}
ANA = {"customer_name": "Ana Pérez", "customer_email": "ana.perez@example.com"}


@pytest.mark.parametrize(
    ("session_id", "phone"),
    [
        ("51987654321", "51987654321"),
        ("+51987654321", "51987654321"),
        ("whatsapp:+56912345678", "56912345678"),
        ("51987654321@s.whatsapp.net", "51987654321"),
        ("web-3f9a", None),
        ("1234", None),  # too short for a phone number
        ("abc51987654321", None),
    ],
)
def test_the_whatsapp_number_is_read_from_the_session_id(
    session_id: str, phone: str | None
) -> None:
    assert session_phone(session_id) == phone


async def test_the_phone_defaults_to_the_whatsapp_number(
    chat: ChatFn, llm: ModelScript, sandbox: RunningSandbox
) -> None:
    llm.add(call("check_availability", SLOT), reply("Libre."))
    await chat("¿El martes a las 3pm?")
    llm.add(call("create_booking", {**SLOT, **ANA}), reply("Listo."))
    await chat("Ana Pérez, ana.perez@example.com")
    [body] = sandbox.backend.calls_of("CREAR_EVENTO")
    assert body["cliente_telefono"] == "51987654321"


async def test_a_phone_the_customer_gave_wins_and_other_ids_give_none(
    chat: ChatFn, llm: ModelScript, sandbox: RunningSandbox
) -> None:
    for session, phone, expected in (
        ("web-1", None, ""),
        ("51911111111", "999 888 777", "999888777"),
    ):
        llm.add(call("check_availability", SLOT), reply("Libre."))
        await chat("¿El martes a las 3pm?", session_id=session)
        args = {**SLOT, **ANA, **({"customer_phone": phone} if phone else {})}
        llm.add(call("create_booking", args), reply("Listo."))
        await chat("Ana Pérez, ana.perez@example.com", session_id=session)
        assert sandbox.backend.calls_of("CREAR_EVENTO")[-1]["cliente_telefono"] == expected
        sandbox.backend.events.clear()


def _create_booking(schemas: list[dict[str, Any]]) -> dict[str, Any]:
    [schema] = [s for s in schemas if s["function"]["name"] == "create_booking"]
    parameters: dict[str, Any] = schema["function"]["parameters"]
    return parameters


def test_the_tool_schema_asks_for_the_email_only_where_it_is_required() -> None:
    registry = ToolRegistry(None, TOOLS)  # type: ignore[arg-type]
    lima = Tenant(12, ZoneInfo("America/Lima"), 30)
    required = _create_booking(registry.schemas_for(lima))
    optional = _create_booking(
        registry.schemas_for(Tenant(12, lima.zone, 30, email_required=False))
    )
    assert required["required"] == ["date", "time", "customer_name", "customer_email"]
    assert "pregúntasela" in required["properties"]["customer_email"]["description"]
    assert optional["required"] == ["date", "time", "customer_name"]
    assert "no se lo pidas" in optional["properties"]["customer_email"]["description"]
    assert registry.schemas_for(lima) is registry.schemas  # one list: a stable prefix


async def test_without_correo_obligatorio_a_booking_needs_no_email(
    chat: ChatFn, llm: ModelScript, sandbox: RunningSandbox
) -> None:
    llm.add(call("check_availability", SLOT), reply("Libre. ¿A nombre de quién?"))
    await chat("¿El martes a las 3pm?", correo_obligatorio=False)
    system = llm.requests[0]["messages"][0]["content"]
    assert "no pide\n  correo" in system or "no pide correo" in system.replace("\n  ", " ")
    assert "customer_email" not in _create_booking(llm.requests[0]["tools"])["required"]
    llm.add(call("create_booking", {**SLOT, "customer_name": "Ana Pérez"}), reply("Listo."))
    await chat("A nombre de Ana Pérez", correo_obligatorio=False)
    assert tool_results(llm.requests[-1])[-1]["reservado"] is True
    [body] = sandbox.backend.calls_of("CREAR_EVENTO")
    assert body["cliente_correo"] == "" and body["cliente_nombre"] == "Ana Pérez"


async def test_by_default_a_booking_without_email_is_refused(
    chat: ChatFn, llm: ModelScript, sandbox: RunningSandbox
) -> None:
    llm.add(call("check_availability", SLOT), reply("Libre."))
    await chat("¿El martes a las 3pm?")
    llm.add(call("create_booking", {**SLOT, "customer_name": "Ana Pérez"}), reply("¿Tu correo?"))
    await chat("A nombre de Ana Pérez")
    result = tool_results(llm.requests[-1])[-1]
    assert result["ok"] is False and result["error"] == "invalid_arguments"
    assert "customer_email: falta este dato" in json.dumps(result, ensure_ascii=False)
    assert sandbox.backend.calls_of("CREAR_EVENTO") == []


async def test_a_returning_customer_is_offered_their_data_back(
    chat: ChatFn, llm: ModelScript
) -> None:
    llm.add(call("check_availability", SLOT), reply("Libre."))
    await chat("¿El martes a las 3pm?")
    llm.add(call("create_booking", {**SLOT, **ANA}), reply("Listo."))
    await chat("Ana Pérez, ana.perez@example.com")
    later = {"date": "2026-12-02", "time": "15:00"}
    llm.add(call("check_availability", later), reply("¿Reservo con tus mismos datos?"))
    await chat("Quiero otra cita el miércoles a las 3pm")
    result = tool_results(llm.requests[-1])[-1]
    assert result["cliente_conocido"] == {"nombre": "Ana Pérez", "correo": ANA["customer_email"]}
    assert "Ana Pérez (ana.perez@example.com)" in result["instruccion"]
    assert "mismos datos" in result["instruccion"]


def test_the_contact_survives_the_store() -> None:
    words = CustomerWords()
    words.add("Ana Pérez")
    words.remember_contact("Ana Pérez", "")
    again = CustomerWords.from_dict(words.to_dict())
    assert again.contact == {"nombre": "Ana Pérez"} and again == words
    assert CustomerWords.from_dict({"words": [], "emails": []}).contact is None
