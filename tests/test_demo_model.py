"""The sandbox's rule-based demo model: parsing, decisions, and a booking through the real app."""

from __future__ import annotations

import json
from datetime import date
from typing import Any

import pytest

from citas.agent.model import ModelReply
from citas.config import Settings
from citas.sandbox import RunningSandbox
from citas.sandbox.demo_model import (
    DEMO_NOTICE,
    Facts,
    collect_facts,
    demo_model,
    demo_reply,
    parse_date,
    parse_email,
    parse_name,
    parse_phone,
    parse_time,
    product_query,
    wants_products,
)
from tests.conftest import MakeClient

FRIDAY = date(2026, 11, 20)
SYSTEM = [
    {"role": "system", "content": "Eres Sofía, recepcionista de la Clínica Sonrisas."},
    {"role": "system", "content": "Fecha y hora actuales: viernes 2026-11-20 10:00 (America/Lima)"},
]


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


def said(text: str) -> dict[str, Any]:
    return {"role": "assistant", "content": text}


def asked(call_id: str, name: str, arguments: dict[str, Any], *more: Any) -> dict[str, Any]:
    """An assistant tool-call message; `more` continues with (id, name, arguments) triples."""
    triples = [(call_id, name, arguments), *zip(more[::3], more[1::3], more[2::3], strict=True)]
    calls = [
        {"id": i, "type": "function", "function": {"name": n, "arguments": json.dumps(a)}}
        for i, n, a in triples
    ]
    return {"role": "assistant", "content": None, "tool_calls": calls}


def answered(call_id: str, **result: Any) -> dict[str, Any]:
    return {"role": "tool", "tool_call_id": call_id, "content": json.dumps(result)}


def respond(*messages: dict[str, Any]) -> ModelReply:
    return demo_reply([*SYSTEM, *messages])


def only_call(step: ModelReply) -> tuple[str, dict[str, Any]]:
    assert step.text is None
    (tool_call,) = step.tool_calls
    return tool_call.name, json.loads(tool_call.arguments)


# --------------------------------------------------------------------------- parsing


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("para hoy", date(2026, 11, 20)),
        ("mañana", date(2026, 11, 21)),
        ("manana sin tilde", date(2026, 11, 21)),
        ("pasado mañana", date(2026, 11, 22)),
        ("el lunes", date(2026, 11, 23)),
        ("el miércoles", date(2026, 11, 25)),
        ("el viernes", date(2026, 11, 27)),  # said on a Friday: next week's
        ("2026-12-01", date(2026, 12, 1)),
        ("el 5/12", date(2026, 12, 5)),
        ("15/01", date(2027, 1, 15)),  # already past this year
        ("3/2/2027", date(2027, 2, 3)),
        ("1 de diciembre", date(2026, 12, 1)),
        ("el 2 de setiembre de 2027", date(2027, 9, 2)),
        ("mañana a las 10 de la mañana", date(2026, 11, 21)),
        ("a las 10 de la mañana", None),
        ("por la mañana", None),
        ("31/02", None),
        ("hola", None),
    ],
)
def test_parse_date(text: str, expected: date | None) -> None:
    assert parse_date(text, FRIDAY) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("3pm", "15:00"),
        ("a las 3 pm", "15:00"),
        ("3 p.m.", "15:00"),
        ("9am", "09:00"),
        ("12 am", "00:00"),
        ("15:00", "15:00"),
        ("10:30", "10:30"),
        ("a las 10", "10:00"),  # 9 to 11 alone are morning hours
        ("a las 4", None),  # morning or afternoon? the service asks rather than guess
        ("10 de la mañana", "10:00"),
        ("4 de la tarde", "16:00"),
        ("4:30 de la tarde", "16:30"),
        ("al mediodía", "12:00"),
        ("tengo 3 amigos", None),
        ("25:00", None),
        ("mañana", None),
    ],
)
def test_parse_time(text: str, expected: str | None) -> None:
    assert parse_time(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Me llamo Ana García", "Ana García"),
        ("mi nombre es juan pérez y mi correo es j@x.pe", "Juan Pérez"),
        ("Hola, soy María José Rojas Díaz", "María José Rojas"),
        ("Soy Ana, ana@example.com", "Ana"),
        ("soy de Lima", None),
        ("quiero una cita", None),
    ],
)
def test_parse_name(text: str, expected: str | None) -> None:
    assert parse_name(text) == expected


def test_parse_email_and_phone() -> None:
    assert parse_email("mi correo es Ana.Garcia+citas@mail.example.pe.") == (
        "Ana.Garcia+citas@mail.example.pe"
    )
    assert parse_email("sin correo") is None
    assert parse_phone("mi cel es 987 654 321") == "987654321"
    assert parse_phone("+51 987-654-321") == "+51987654321"
    assert parse_phone("ana987654321@x.com") is None
    assert parse_phone("12345") is None


@pytest.mark.parametrize(
    ("text", "query"),
    [
        ("¿Cuánto cuesta una limpieza dental?", "limpieza dental"),
        ("precio del corte de cabello", "corte cabello"),
        ("¿Venden shampoo?", "shampoo"),
        ("¿Qué servicios tienen?", "servicios"),
    ],
)
def test_product_questions(text: str, query: str) -> None:
    assert wants_products(text)
    assert product_query(text) == query


def test_booking_request_is_not_a_product_question() -> None:
    assert not wants_products("Quiero una cita mañana a las 3pm")


def test_collect_facts_latest_wins() -> None:
    facts = collect_facts(
        ["mañana a las 3pm", "soy Ana", "mejor a las 5pm, ana@example.com 987654321"], FRIDAY
    )
    assert facts == Facts("2026-11-21", "17:00", "Ana", "ana@example.com", "987654321")
    assert facts.bookable
    assert not Facts(date="2026-11-21", time="17:00", name="Ana").bookable


# --------------------------------------------------------------------------- decisions


def test_first_greeting_mentions_the_demo_model_once() -> None:
    first = respond(user("Hola"))
    assert first.text is not None
    assert first.text.startswith(DEMO_NOTICE)
    assert "fecha y hora" in first.text
    later = respond(user("Hola"), said(first.text), user("buenas"))
    assert later.text is not None
    assert DEMO_NOTICE not in later.text


def test_date_and_time_check_availability() -> None:
    step = respond(user("Hola, quiero una cita para mañana a las 3pm"))
    assert only_call(step) == ("check_availability", {"date": "2026-11-21", "time": "15:00"})


def test_date_alone_asks_for_the_free_slots() -> None:
    step = respond(user("¿Tienen algo el lunes?"))
    assert only_call(step) == ("check_availability", {"date": "2026-11-23"})


def test_everything_known_checks_the_slot_first() -> None:
    step = respond(
        user("Quiero cita el 1 de diciembre a las 10 de la mañana"),
        said("¿Tu nombre y correo?"),
        user("Me llamo Ana García, ana@example.com, cel 987654321"),
    )
    assert only_call(step) == ("check_availability", {"date": "2026-12-01", "time": "10:00"})


def test_everything_known_and_a_free_slot_creates_the_booking() -> None:
    step = respond(
        user("Quiero cita el 1 de diciembre a las 10 de la mañana"),
        asked("c1", "check_availability", {"date": "2026-12-01", "time": "10:00"}),
        answered("c1", ok=True, disponible=True, mensaje="Está libre."),
        said("Está libre. ¿Tu nombre y correo?"),
        user("Me llamo Ana García, ana@example.com, cel 987654321"),
    )
    assert only_call(step) == (
        "create_booking",
        {
            "date": "2026-12-01",
            "time": "10:00",
            "customer_name": "Ana García",
            "customer_email": "ana@example.com",
            "customer_phone": "987654321",
        },
    )


def test_product_question_wins_over_booking() -> None:
    step = respond(user("mañana a las 3pm"), said("..."), user("¿Cuánto cuesta la limpieza?"))
    assert only_call(step) == ("search_products", {"query": "limpieza"})


def test_tool_results_are_relayed_and_contact_is_asked() -> None:
    step = respond(
        user("mañana a las 3pm"),
        asked("c1", "check_availability", {"date": "2026-11-21", "time": "15:00"}),
        answered("c1", ok=True, disponible=True, mensaje="El 2026-11-21 a las 15:00 está libre."),
    )
    assert step.tool_calls == ()
    assert step.text == (
        f"{DEMO_NOTICE} El 2026-11-21 a las 15:00 está libre. "
        "Para reservarla, ¿me das tu nombre y correo?"
    )


def test_taken_slot_is_relayed_without_asking_contact() -> None:
    step = respond(
        user("mañana a las 3pm"),
        asked("c1", "check_availability", {"date": "2026-11-21", "time": "15:00"}),
        answered("c1", ok=True, disponible=False, mensaje="Ocupado; tengo 16:00 o 17:00."),
    )
    assert step.text == f"{DEMO_NOTICE} Ocupado; tengo 16:00 o 17:00."


def test_several_results_are_joined_and_only_the_last_round_counts() -> None:
    step = respond(
        user("¿precio del corte?"),
        asked("c0", "search_products", {"query": "corte"}),
        answered("c0", ok=True, mensaje="Corte: S/ 30."),
        said("Corte: S/ 30."),
        user("mañana a las 3pm, soy Ana, ana@example.com"),
        asked(
            "c1",
            "check_availability",
            {"date": "2026-11-21", "time": "15:00"},
            *("c2", "search_products", {"query": "tinte"}),
        ),
        answered("c2", ok=True, mensaje="Tinte: S/ 80."),
        {"role": "tool", "tool_call_id": "c1", "content": "texto sin JSON"},
    )
    assert step.text == "Tinte: S/ 80. texto sin JSON"


def test_missing_pieces_are_asked_without_rechecking() -> None:
    step = respond(
        user("mañana a las 3pm"),
        said("Está libre. ¿Tu nombre y correo?"),
        user("Me llamo Ana"),
    )
    assert (
        step.text == "Tu cita sería el 2026-11-21 a las 15:00. Para reservarla, ¿me das tu correo?"
    )


def test_a_booking_already_made_is_not_repeated() -> None:
    booking = {
        "date": "2026-11-21",
        "time": "15:00",
        "customer_name": "Ana",
        "customer_email": "ana@example.com",
    }
    step = respond(
        user("mañana a las 3pm, soy Ana, ana@example.com"),
        asked("c1", "create_booking", booking),
        answered("c1", ok=True, reservado=True, mensaje="¡Listo! Reservado."),
        said("¡Listo! Reservado."),
        user("gracias"),
    )
    assert step.text == "Tu cita del 2026-11-21 a las 15:00 ya está registrada. ¿Algo más?"


def test_name_without_date_is_thanked() -> None:
    step = respond(user("me llamo ana"))
    assert step.text == f"{DEMO_NOTICE} Gracias, Ana. ¿Para qué fecha y hora quieres tu cita?"


def test_no_user_message_greets() -> None:
    step = demo_reply(SYSTEM)
    assert step.text is not None
    assert step.text.startswith(DEMO_NOTICE)


# --------------------------------------------------------------------------- through the app


async def test_a_booking_conversation_through_the_app(
    make_client: MakeClient, settings: Settings, sandbox: RunningSandbox
) -> None:
    citas = await make_client(
        settings.with_updates(confirm_before_booking=True), model=demo_model()
    )
    assert citas.runtime.agent.model.name == "demo"
    context = {"config": {"id_empresa": 12, "usuario_id": 7, "duracion_cita_minutos": 30}}
    asked = await citas.send("Quiero una cita mañana a las 3pm", session_id="s", context=context)
    assert [c.name for c in asked.tool_calls] == ["check_availability"]
    assert asked.reply.startswith(DEMO_NOTICE) and "martes 1 de diciembre" in asked.reply
    proposed = await citas.send("Soy Ana Pérez, ana@example.com", session_id="s", context=context)
    assert [c.name for c in proposed.tool_calls] == ["create_booking"]
    assert proposed.reply.endswith("¿Confirmo la reserva?") and not sandbox.backend.events
    booked = await citas.send("Sí", session_id="s", context=context)
    [event] = sandbox.backend.events
    assert [c.name for c in booked.tool_calls] == ["create_booking"]
    assert booked.url == event.url and event.cliente_correo == "ana@example.com"


def test_a_proposal_is_confirmed_only_by_a_yes() -> None:
    booking = {
        "date": "2026-11-21",
        "time": "15:00",
        "customer_name": "Ana",
        "customer_email": "ana@example.com",
    }
    before = (
        user("mañana a las 3pm, soy Ana, ana@example.com"),
        asked("c0", "check_availability", {"date": "2026-11-21", "time": "15:00"}),
        answered("c0", ok=True, disponible=True, mensaje="Libre."),
        asked("c1", "create_booking", booking),
        answered("c1", ok=True, reservado=False, pendiente_confirmacion=True, mensaje="¿Confirmo?"),
        said("¿Confirmo?"),
    )
    wait = respond(*before, user("Déjame pensarlo, te escribo más tarde"))
    assert wait.tool_calls == () and wait.text is not None and "«sí»" in wait.text
    assert only_call(respond(*before, user("Sí, confírmala")))[0] == "create_booking"
