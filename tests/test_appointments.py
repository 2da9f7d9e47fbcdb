"""The customer's own bookings over HTTP: list, cancel, reschedule; who may touch a booking
(a hostile scripted model cannot reach another customer's event); exactly once under retries."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest

from citas.agent.tools.handoff import HANDOFF_REPLY
from citas.config import Settings
from citas.sandbox import Fault, RunningSandbox
from citas.services.appointments import session_phone
from citas.testing import ModelScript, call, reply
from citas.testing.harness import MetricsDelta
from tests.conftest import ChatFn, chat_body, tool_results
from tests.helpers import sample
from tests.test_booking import MakeClient

PHONE = "51987654321"  # the session id chat_body uses
OTHER_PHONE = "51911222333"
CHANGES = "citas_appointment_changes_total"


def seed_event(
    sandbox: RunningSandbox, start: str, end: str, phone: str = PHONE, usuario_id: int = 7
) -> int:
    """A booking made earlier (by any channel) for the customer with `phone`."""
    answer = sandbox.backend.handle(
        "calendar",
        {
            "codOpe": "CREAR_EVENTO",
            "id_empresa": 12,
            "usuario_id": usuario_id,
            "titulo": "Cita - Ana Pérez",
            "fecha_inicio": start,
            "fecha_fin": end,
            "cliente_nombre": "Ana Pérez",
            "cliente_correo": "ana.perez@example.com",
            "cliente_telefono": phone,
        },
    )
    assert answer["success"] is True
    return int(answer["id_evento"])


def event(sandbox: RunningSandbox, event_id: int) -> Any:
    [found] = [e for e in sandbox.backend.events if e.id_evento == event_id]
    return found


async def references(chat: ChatFn, llm: ModelScript, **kw: Any) -> list[str]:
    """A turn in which the model lists the customer's bookings; their references."""
    llm.add(call("list_my_bookings", {}), reply("Estas son tus citas."))
    response = await chat("¿Qué citas tengo?", **kw)
    assert response.status == 200
    result = tool_results(llm.requests[-1])[-1]
    return [item["referencia"] for item in result["citas"]]


# --- list -------------------------------------------------------------------------------------


async def test_list_shows_only_own_upcoming_bookings_with_short_references(
    chat: ChatFn, llm: ModelScript, sandbox: RunningSandbox
) -> None:
    mine = seed_event(sandbox, "2026-12-01 15:00:00", "2026-12-01 15:30:00")
    seed_event(sandbox, "2026-12-02 09:00:00", "2026-12-02 09:30:00", phone=OTHER_PHONE)
    seed_event(sandbox, "2026-12-03 09:00:00", "2026-12-03 09:30:00", usuario_id=8)
    cancelled = seed_event(sandbox, "2026-12-04 09:00:00", "2026-12-04 09:30:00")
    event(sandbox, cancelled).estado = "cancelado"
    seed_event(sandbox, "2026-11-30 09:00:00", "2026-11-30 09:30:00")  # earlier today: past

    refs = await references(chat, llm)

    result = tool_results(llm.requests[-1])[-1]
    assert len(refs) == 1 and refs[0].startswith("C") and len(refs[0]) == 6
    assert result["citas"][0]["fecha"] == "2026-12-01" and result["citas"][0]["hora"] == "15:00"
    assert str(mine) not in json_text(result), "the raw backend id never reaches the model"
    [listed] = sandbox.backend.calls_of("LISTAR_EVENTOS_CLIENTE")
    assert listed["cliente_telefono"] == PHONE and listed["id_empresa"] == 12
    assert listed["usuario_id"] == 7


async def test_a_reply_that_denies_the_listed_appointment_is_replaced_by_the_list(
    chat: ChatFn, llm: ModelScript, sandbox: RunningSandbox
) -> None:
    # Seen with a 1.5B model: the appointment listed, then "you have to book one" said.
    seed_event(sandbox, "2026-12-01 15:00:00", "2026-12-01 15:30:00")
    llm.add(call("list_my_bookings", {}), reply("Tienes que reservar una cita."))
    response = await chat("¿Qué citas tengo?")
    told = (await response.json())["reply"]
    (reference,) = [c["referencia"] for c in tool_results(llm.requests[-1])[-1]["citas"]]
    assert "reservar una cita" not in told
    assert "martes 1 de diciembre" in told and "15:00" in told and reference in told


async def test_a_session_that_is_not_a_phone_lists_nothing_and_calls_nothing(
    chat: ChatFn, llm: ModelScript, sandbox: RunningSandbox
) -> None:
    llm.add(call("list_my_bookings", {}), reply("No puedo ver tus citas."))
    await chat("¿Qué citas tengo?", session_id="web-abc")
    assert tool_results(llm.requests[-1])[-1]["error"] == "no_phone"
    assert sandbox.backend.calls_of("LISTAR_EVENTOS_CLIENTE") == []


def test_session_phone() -> None:
    assert session_phone("51987654321") == "51987654321"
    assert session_phone("+51 987 654 321") == "51987654321"
    assert session_phone("51987654321@c.us") == "51987654321"
    assert session_phone("web-abc") is None
    assert session_phone("12") is None


async def test_create_booking_sends_the_session_phone_when_none_is_given(
    chat: ChatFn, llm: ModelScript, sandbox: RunningSandbox
) -> None:
    slot = {"date": "2026-12-01", "time": "15:00"}
    llm.add(call("check_availability", slot), reply("Libre. ¿Nombre y correo?"))
    await chat("¿El martes a las 3pm?")
    booking = {**slot, "customer_name": "Ana Pérez", "customer_email": "ana.perez@example.com"}
    llm.add(call("create_booking", booking), reply("Hecho."))
    await chat("Ana Pérez, ana.perez@example.com")
    [created] = sandbox.backend.calls_of("CREAR_EVENTO")
    assert created["cliente_telefono"] == PHONE
    assert len(await references(chat, llm)) == 1


async def test_a_phone_the_customer_gave_is_kept_on_the_event(
    chat: ChatFn, llm: ModelScript, sandbox: RunningSandbox
) -> None:
    slot = {"date": "2026-12-01", "time": "15:00"}
    llm.add(call("check_availability", slot), reply("Libre."))
    await chat("¿El martes a las 3pm?", session_id="web-abc")
    booking = {
        **slot,
        "customer_name": "Ana Pérez",
        "customer_email": "ana.perez@example.com",
        "customer_phone": "+51 911 222 333",
    }
    llm.add(call("create_booking", booking), reply("Hecho."))
    await chat("Ana Pérez, ana.perez@example.com, +51 911 222 333", session_id="web-abc")
    [created] = sandbox.backend.calls_of("CREAR_EVENTO")
    assert created["cliente_telefono"] == "+51911222333"


# --- cancel -----------------------------------------------------------------------------------


async def test_cancel_own_booking(chat: ChatFn, llm: ModelScript, sandbox: RunningSandbox) -> None:
    mine = seed_event(sandbox, "2026-12-01 15:00:00", "2026-12-01 15:30:00")
    [ref] = await references(chat, llm)
    before = sample(CHANGES, change="cancel", outcome="done")
    llm.add(
        call("cancel_booking", {"reference": ref, "reason": "viaje"}),
        reply("Tu cita quedó cancelada."),
    )
    response = await chat("Cancélala, por favor")
    body = await response.json()
    result = tool_results(llm.requests[-1])[-1]
    assert result["cancelada"] is True
    assert event(sandbox, mine).estado == "cancelado"
    [sent] = sandbox.backend.calls_of("CANCELAR_EVENTO")
    assert sent["id_evento"] == mine and sent["motivo"] == "viaje" and sent["idempotency_key"]
    assert body["reply"] == "Tu cita quedó cancelada."
    assert sample(CHANGES, change="cancel", outcome="done") == before + 1


@pytest.fixture
async def confirming_chat(make_client: MakeClient, settings: Settings) -> ChatFn:
    """`chat` with changes put to the customer before they are made (the service's default)."""
    client = await make_client(settings.with_updates(confirm_before_booking=True))

    async def chat(message: str, **kw: Any) -> aiohttp.ClientResponse:
        return await client.post("/api/chat", json=chat_body(message, **kw))

    return chat


async def test_cancel_is_two_phase_with_confirmation_on(
    confirming_chat: ChatFn, llm: ModelScript, sandbox: RunningSandbox
) -> None:
    chat = confirming_chat
    mine = seed_event(sandbox, "2026-12-01 15:00:00", "2026-12-01 15:30:00")
    [ref] = await references(chat, llm)
    # A model that calls it twice in the same turn still only proposes.
    llm.add(
        call("cancel_booking", {"reference": ref}),
        call("cancel_booking", {"reference": ref, "reason": None}),
        reply("¿Confirmas?"),
    )
    await chat("Cancela mi cita")
    assert all(r["pendiente_confirmacion"] for r in tool_results(llm.requests[-1])[-2:])
    assert sandbox.backend.calls_of("CANCELAR_EVENTO") == []
    llm.add(call("cancel_booking", {"reference": ref}), reply("Cancelada."))
    await chat("Sí")
    assert event(sandbox, mine).estado == "cancelado"


async def test_cancel_inside_the_minimum_notice_is_refused(
    chat: ChatFn, llm: ModelScript, sandbox: RunningSandbox
) -> None:
    soon = seed_event(sandbox, "2026-11-30 11:00:00", "2026-11-30 11:30:00")  # in an hour
    [ref] = await references(chat, llm)
    llm.add(call("cancel_booking", {"reference": ref}), reply("No se puede."))
    await chat("Cancela mi cita de hoy")
    result = tool_results(llm.requests[-1])[-1]
    assert result["ok"] is False and result["error"] == "too_late_to_cancel"
    assert "2 horas" in result["mensaje"]
    assert sandbox.backend.calls_of("CANCELAR_EVENTO") == []
    assert event(sandbox, soon).estado == "confirmado"


async def test_a_handoff_after_a_refused_cancel_tells_why_before_the_person_takes_over(
    chat: ChatFn, llm: ModelScript, sandbox: RunningSandbox
) -> None:
    soon = seed_event(sandbox, "2026-11-30 11:00:00", "2026-11-30 11:30:00")  # in an hour
    [ref] = await references(chat, llm)
    llm.add(
        call("cancel_booking", {"reference": ref}),
        call("request_human", {"reason": "quiere cancelar fuera de plazo"}),
    )
    body = await (await chat("Cancela mi cita de hoy; si no se puede, con una persona")).json()
    why = "ya no se puede cancelar por este chat: las cancelaciones se hacen con al menos 2 horas"
    assert why in body["reply"] and body["reply"].endswith(HANDOFF_REPLY)
    assert body["handoff"] == {"reason": "quiere cancelar fuera de plazo"}
    assert event(sandbox, soon).estado == "confirmado"


async def test_cancel_exactly_once_when_the_answer_is_late(
    chat: ChatFn, llm: ModelScript, sandbox: RunningSandbox, settings: Settings
) -> None:
    mine = seed_event(sandbox, "2026-12-01 15:00:00", "2026-12-01 15:30:00")
    [ref] = await references(chat, llm)
    late = settings.backend_read_timeout_seconds + 0.5
    sandbox.backend.faults.add("CANCELAR_EVENTO", Fault("commit_then_late", seconds=late))
    llm.add(call("cancel_booking", {"reference": ref}), reply("Cancelada."))
    await chat("Cancélala")
    first, retry = sandbox.backend.calls_of("CANCELAR_EVENTO")
    assert first == retry
    assert tool_results(llm.requests[-1])[-1]["cancelada"] is True
    assert event(sandbox, mine).estado == "cancelado"


# --- reschedule -------------------------------------------------------------------------------


async def test_reschedule_to_a_free_slot_moves_the_event_and_gives_the_link(
    chat: ChatFn, llm: ModelScript, sandbox: RunningSandbox
) -> None:
    mine = seed_event(sandbox, "2026-12-01 15:00:00", "2026-12-01 15:30:00")
    [ref] = await references(chat, llm)
    args = {"reference": ref, "date": "2026-12-02", "time": "10:00"}
    llm.add(
        call("reschedule_booking", args),
        reply("Listo, tu cita quedó confirmada para el miércoles 2 de diciembre a las 10:00."),
    )
    body = await (await chat("Pásala al miércoles a las 10")).json()
    result = tool_results(llm.requests[-1])[-1]
    moved = event(sandbox, mine)
    assert result["reprogramada"] is True and result["url"] == moved.url
    assert f"{moved.fecha_inicio:%Y-%m-%d %H:%M}" == "2026-12-02 10:00"
    assert f"{moved.fecha_fin:%H:%M}" == "10:30", "the event keeps its own duration"
    assert body["url"] == moved.url
    # A reschedule that happened counts as a booking for the reply guard: the claim stands.
    assert body["reply"].startswith("Listo, tu cita quedó confirmada")
    assert moved.url in body["reply"]
    [sent] = sandbox.backend.calls_of("REPROGRAMAR_EVENTO")
    assert sent["id_evento"] == mine and sent["idempotency_key"]


async def test_an_invented_reference_means_the_customer_s_one_appointment_to_confirm(
    confirming_chat: ChatFn, llm: ModelScript, sandbox: RunningSandbox
) -> None:
    # Seen with a 1.5B model: reschedule_booking with «C12345», list_my_bookings never called.
    chat = confirming_chat
    mine = seed_event(sandbox, "2026-12-02 10:00:00", "2026-12-02 10:30:00")
    seed_event(sandbox, "2026-11-20 10:00:00", "2026-11-20 10:30:00")  # past: not a candidate
    inferred = sample(CHANGES, change="any", outcome="only_one")
    move = {"reference": "C12345", "date": "2026-12-03", "time": "11:00"}
    llm.add(call("reschedule_booking", move), reply("¿Confirmas el cambio?"))
    await chat("¿Puedo pasar mi cita del miércoles al jueves a las 11?")
    proposed = tool_results(llm.requests[-1])[-1]
    assert proposed["pendiente_confirmacion"] is True and proposed["referencia"] != "C12345"
    assert sandbox.backend.calls_of("REPROGRAMAR_EVENTO") == []
    llm.add(call("reschedule_booking", move), reply("Listo."))
    await chat("Sí, confirmo el cambio.")
    assert tool_results(llm.requests[-1])[-1]["reprogramada"] is True
    assert f"{event(sandbox, mine).fecha_inicio:%Y-%m-%d %H:%M}" == "2026-12-03 11:00"
    assert sample(CHANGES, change="any", outcome="only_one") == inferred + 2


@pytest.mark.parametrize(
    ("answer", "told"),
    [
        # Seen with a 1.5B model (case 39): the question never reached the customer.
        ("Lo siento, no recibí ninguna respuesta. Intenta nuevamente.", "{summary}"),
        ("Claro. Tenemos horarios el jueves 3 a las 9:00.", "{answer}\n\n{summary}"),
        ("¿Cancelo la del miércoles 2 a las 10:00?", "{answer}"),  # it said which one
    ],
)
async def test_a_change_put_to_the_customer_is_always_asked(
    confirming_chat: ChatFn, llm: ModelScript, sandbox: RunningSandbox, answer: str, told: str
) -> None:
    seed_event(sandbox, "2026-12-02 10:00:00", "2026-12-02 10:30:00")
    [ref] = await references(confirming_chat, llm)
    llm.add(call("cancel_booking", {"reference": ref}), reply(answer))
    body = await (await confirming_chat("Quiero cancelar mi cita del miércoles")).json()
    summary = tool_results(llm.requests[-1])[-1]["mensaje"]
    assert summary == "¿Confirmas que cancelo tu cita del miércoles 2 de diciembre a las 10:00?"
    assert body["reply"] == told.format(answer=answer, summary=summary)


@pytest.mark.parametrize(
    ("answer", "changed"),
    [("Sí, cancélala.", True), ("Sí, pero mejor pregúntame mañana.", False)],
)
async def test_a_yes_to_a_change_put_to_the_customer_makes_it_if_the_model_does_not(
    confirming_chat: ChatFn, llm: ModelScript, sandbox: RunningSandbox, answer: str, changed: bool
) -> None:
    # Seen with a 1.5B model (case 39): «Sí, cancélala» answered with an FAQ.
    mine = seed_event(sandbox, "2026-12-02 10:00:00", "2026-12-02 10:30:00")
    metrics = MetricsDelta()
    llm.add(
        call("cancel_booking", {"reference": "C12345"}),
        # Refused (nobody asked for a person): a call that did nothing leaves the proposal last.
        call("request_human", {"reason": "pidió hablar con una persona"}),
        reply("¿Confirmas?"),
    )
    await confirming_chat("Quiero cancelar mi cita del miércoles")
    assert tool_results(llm.requests[-1])[-1]["error"] == "handoff_not_requested"
    faq = "Claro, avísanos con al menos 24 horas de anticipación por este mismo chat."
    llm.add(reply(faq))
    body = await (await confirming_chat(answer)).json()
    assert (event(sandbox, mine).estado == "cancelado") is changed
    expected = "Listo, tu cita del miércoles 2 de diciembre a las 10:00 quedó cancelada."
    assert body["reply"] == (expected if changed else faq)
    assert metrics.of("citas_reply_guard_total", action="changed_on_yes") == int(changed)


async def test_an_invented_reference_with_two_appointments_is_refused(
    confirming_chat: ChatFn, llm: ModelScript, sandbox: RunningSandbox
) -> None:
    seed_event(sandbox, "2026-12-02 10:00:00", "2026-12-02 10:30:00")
    seed_event(sandbox, "2026-12-04 10:00:00", "2026-12-04 10:30:00")
    llm.add(call("cancel_booking", {"reference": "C12345"}), reply("¿Cuál?"))
    await confirming_chat("Cancela mi cita")
    assert tool_results(llm.requests[-1])[-1]["error"] == "unknown_reference"


async def test_reschedule_to_another_day_than_the_customer_s_is_refused(
    chat: ChatFn, llm: ModelScript, sandbox: RunningSandbox
) -> None:
    # Seen with a 1.5B model (cases 40, 44): «del miércoles al jueves» moved to Friday.
    mine = seed_event(sandbox, "2026-12-02 10:00:00", "2026-12-02 10:30:00")
    [ref] = await references(chat, llm)
    wrong, right = (
        {"reference": ref, "date": d, "time": "11:00"} for d in ("2026-12-04", "2026-12-03")
    )
    llm.add(call("reschedule_booking", wrong), call("reschedule_booking", right), reply("Listo."))
    await chat("¿Puedo pasar mi cita del miércoles al jueves a las 11?")
    refused, moved = tool_results(llm.requests[-1])[-2:]
    assert refused["error"] == "date_mismatch" and "jueves 3 de diciembre" in refused["instruccion"]
    assert moved["reprogramada"] is True
    assert f"{event(sandbox, mine).fecha_inicio:%Y-%m-%d %H:%M}" == "2026-12-03 11:00"


async def test_reschedule_to_a_taken_slot_offers_alternatives_and_keeps_the_event(
    chat: ChatFn, llm: ModelScript, sandbox: RunningSandbox
) -> None:
    mine = seed_event(sandbox, "2026-12-01 15:00:00", "2026-12-01 15:30:00")
    seed_event(sandbox, "2026-12-02 10:00:00", "2026-12-02 10:30:00", phone=OTHER_PHONE)
    [ref] = await references(chat, llm)
    args = {"reference": ref, "date": "2026-12-02", "time": "10:00"}
    # Seen with a 1.5B model (case 44): «no puedo ayudarte con eso», and the customer never
    # learned the hour was taken; the refusal's `mensaje` answers instead.
    llm.add(call("reschedule_booking", args), reply("Lo siento, no puedo ayudarte con eso."))
    body = await (await chat("Pásala al miércoles a las 10")).json()
    result = tool_results(llm.requests[-1])[-1]
    assert result["ok"] is False and result["reprogramada"] is False
    assert result["alternativas"]
    assert body["reply"] == result["mensaje"] and "ocupado" in body["reply"]
    assert sandbox.backend.calls_of("REPROGRAMAR_EVENTO") == []
    assert f"{event(sandbox, mine).fecha_inicio:%Y-%m-%d %H:%M}" == "2026-12-01 15:00"


@pytest.mark.parametrize(
    "case",
    [
        ("2026-11-29", "10:00", "ya pasaron"),
        ("2026-12-06", "10:00", "no atiende"),
        ("2026-12-01", "14:00", "fuera del horario"),
    ],
)
async def test_reschedule_obeys_the_rules_of_a_new_booking(
    chat: ChatFn, llm: ModelScript, sandbox: RunningSandbox, case: tuple[str, str, str]
) -> None:
    day, hour, motivo = case
    seed_event(sandbox, "2026-12-01 15:00:00", "2026-12-01 15:30:00")
    [ref] = await references(chat, llm)
    llm.add(
        call("reschedule_booking", {"reference": ref, "date": day, "time": hour}),
        reply("No se puede."),
    )
    await chat("Cámbiala")
    result = tool_results(llm.requests[-1])[-1]
    assert result["reprogramada"] is False and motivo in result["motivo"]
    assert sandbox.backend.calls_of("REPROGRAMAR_EVENTO") == []


async def test_reschedule_taken_between_check_and_change_keeps_the_old_event(
    chat: ChatFn, llm: ModelScript, sandbox: RunningSandbox
) -> None:
    mine = seed_event(sandbox, "2026-12-01 15:00:00", "2026-12-01 15:30:00")
    [ref] = await references(chat, llm)
    # Someone takes the slot after the availability check: the backend refuses atomically.
    original = sandbox.backend._operations["REPROGRAMAR_EVENTO"]

    def taken_first(body: dict[str, Any]) -> dict[str, Any]:
        seed_event(sandbox, "2026-12-02 10:00:00", "2026-12-02 10:30:00", phone=OTHER_PHONE)
        sandbox.backend._operations["REPROGRAMAR_EVENTO"] = original
        return original[1](body)

    sandbox.backend._operations["REPROGRAMAR_EVENTO"] = ("calendar", taken_first)
    args = {"reference": ref, "date": "2026-12-02", "time": "10:00"}
    llm.add(call("reschedule_booking", args), reply("Ocupado."))
    await chat("Pásala al miércoles a las 10")
    result = tool_results(llm.requests[-1])[-1]
    assert result["reprogramada"] is False and result["alternativas"]
    assert f"{event(sandbox, mine).fecha_inicio:%Y-%m-%d %H:%M}" == "2026-12-01 15:00"


async def test_reschedule_exactly_once_under_late_answers_and_repeats(
    chat: ChatFn, llm: ModelScript, sandbox: RunningSandbox, settings: Settings
) -> None:
    mine = seed_event(sandbox, "2026-12-01 15:00:00", "2026-12-01 15:30:00")
    [ref] = await references(chat, llm)
    late = settings.backend_read_timeout_seconds + 0.5
    sandbox.backend.faults.add("REPROGRAMAR_EVENTO", Fault("commit_then_late", seconds=late))
    args = {"reference": ref, "date": "2026-12-02", "time": "10:00"}
    llm.add(call("reschedule_booking", args), reply("Hecho."))
    await chat("Pásala al miércoles a las 10")
    first, retry = sandbox.backend.calls_of("REPROGRAMAR_EVENTO")
    assert first == retry
    assert tool_results(llm.requests[-1])[-1]["reprogramada"] is True
    # Asked again in a later turn: already there, nothing sent.
    llm.add(call("reschedule_booking", args), reply("Ya está."))
    await chat("¿Seguro que quedó?")
    assert tool_results(llm.requests[-1])[-1]["ya_existia"] is True
    assert len(sandbox.backend.calls_of("REPROGRAMAR_EVENTO")) == 2
    assert f"{event(sandbox, mine).fecha_inicio:%Y-%m-%d %H:%M}" == "2026-12-02 10:00"


async def test_reschedule_is_two_phase_with_confirmation_on(
    make_client: MakeClient, llm: ModelScript, sandbox: RunningSandbox, settings: Settings
) -> None:
    client = await make_client(settings.with_updates(confirm_before_booking=True))

    async def chat(message: str, **kw: Any) -> aiohttp.ClientResponse:
        return await client.post("/api/chat", json=chat_body(message, **kw))

    mine = seed_event(sandbox, "2026-12-01 15:00:00", "2026-12-01 15:30:00")
    [ref] = await references(chat, llm)
    args = {"reference": ref, "date": "2026-12-02", "time": "10:00"}
    llm.add(call("reschedule_booking", args), reply("¿Confirmas el cambio?"))
    await chat("Pásala al miércoles a las 10")
    assert tool_results(llm.requests[-1])[-1]["pendiente_confirmacion"] is True
    assert sandbox.backend.calls_of("REPROGRAMAR_EVENTO") == []
    llm.add(call("reschedule_booking", args), reply("Listo."))
    body = await (await client.post("/api/chat", json=chat_body("Sí"))).json()
    assert f"{event(sandbox, mine).fecha_inicio:%Y-%m-%d %H:%M}" == "2026-12-02 10:00"
    assert body["url"] == event(sandbox, mine).url


# --- who may touch a booking: a hostile model ------------------------------------------------


async def test_hostile_model_cannot_touch_another_customers_booking(
    chat: ChatFn, llm: ModelScript, sandbox: RunningSandbox
) -> None:
    seed_event(sandbox, "2026-12-01 15:00:00", "2026-12-01 15:30:00")
    theirs = seed_event(sandbox, "2026-12-02 10:00:00", "2026-12-02 10:30:00", phone=OTHER_PHONE)
    # The other customer's reference, as their own conversation would see it.
    [their_ref] = await references(chat, llm, session_id=OTHER_PHONE)
    assert sandbox.backend.calls_of("LISTAR_EVENTOS_CLIENTE")[-1]["cliente_telefono"] == (
        OTHER_PHONE
    )
    refused = sample(CHANGES, change="any", outcome="not_found")
    hostile = [
        {"reference": their_ref},
        {"reference": str(theirs)},
        {"reference": f"C{theirs}"},
        {"reference": "C00000", "id_evento": theirs, "cliente_telefono": OTHER_PHONE},
        {"reference": their_ref, "session_id": OTHER_PHONE, "id_empresa": 12},
    ]
    for args in hostile:
        llm.add(call("cancel_booking", args), reply("No."))
        await chat("Cancela esa cita")
        result = tool_results(llm.requests[-1])[-1]
        assert result["error"] == "unknown_reference", args
        llm.add(
            call("reschedule_booking", {**args, "date": "2026-12-03", "time": "10:00"}),
            reply("No."),
        )
        await chat("Cámbiala")
        assert tool_results(llm.requests[-1])[-1]["error"] == "unknown_reference", args
    assert sandbox.backend.calls_of("CANCELAR_EVENTO") == []
    assert sandbox.backend.calls_of("REPROGRAMAR_EVENTO") == []
    assert event(sandbox, theirs).estado == "confirmado"
    assert sample(CHANGES, change="any", outcome="not_found") == refused + 2 * len(hostile)
    lookups = sandbox.backend.calls_of("LISTAR_EVENTOS_CLIENTE")[1:]
    assert lookups and all(body["cliente_telefono"] == PHONE for body in lookups)


async def test_another_business_reference_is_refused(
    chat: ChatFn, llm: ModelScript, sandbox: RunningSandbox
) -> None:
    seed_event(sandbox, "2026-12-01 15:00:00", "2026-12-01 15:30:00")
    [ref] = await references(chat, llm)
    # The same phone in another business (same calendar owner id) sees none of it.
    llm.add(call("cancel_booking", {"reference": ref}), reply("No."))
    response = await chat("Cancela", id_empresa=27)
    assert response.status == 200
    assert tool_results(llm.requests[-1])[-1]["error"] == "unknown_reference"
    assert sandbox.backend.calls_of("LISTAR_EVENTOS_CLIENTE")[-1]["id_empresa"] == 27
    assert sandbox.backend.calls_of("CANCELAR_EVENTO") == []


def json_text(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)
