"""Guards against a misbehaving model, end to end: a scripted model does what real small models
were seen doing, and the service still books right and tells the truth.

- the customer confirms and the server enforces it (`CITAS_CONFIRM_BEFORE_BOOKING`);
- customer data must come from the customer;
- no reply claims a booking that does not exist; a booking's reply carries date, time and link;
- a bare yes to a proposal books it, and the customer's data for the free slot they asked
  proposes it, when the model does neither;
- an answer that only repeats the last reply is sent back once;
- history holds what the customer was sent; corrective messages are never kept;
- identical calls in a turn are answered from the first result, and the turn ends after two;
- dates and times in the customer's words are resolved by the server, or asked back; a call
  for another day or time than the one the customer's message names is refused.
"""

from __future__ import annotations

import json
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from citas.agent.reply_guard import CORRECTIONS, NOTHING_BOOKED
from citas.agent.tools.availability import customer_when_conflict
from citas.agent.tools.booking import PENDING
from citas.config import Settings
from citas.domain import ConversationKey, Slot, Tenant
from citas.sandbox import RunningSandbox
from citas.services.booking import BookingRequest, Customer, idempotency_key
from citas.testing import ModelScript, call, reply
from citas.testing.harness import MetricsDelta
from citas.tokens import estimate_request_tokens, estimate_tokens
from tests.conftest import ChatFn, MakeClient, chat_body, occupy, tool_results, turn_context

SLOT = {"date": "2026-12-01", "time": "15:00"}
CUSTOMER = {"customer_name": "Ana Pérez", "customer_email": "ana.perez@example.com"}
BOOKING = {**SLOT, **CUSTOMER}
GIVES_DATA = "Soy Ana Pérez, mi correo es ana.perez@example.com"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.with_updates(confirm_before_booking=True)


def events(sandbox: RunningSandbox) -> list[dict[str, Any]]:
    return sandbox.backend.calls_of("CREAR_EVENTO")


def messages_sent(llm: ModelScript, index: int = -1) -> list[dict[str, Any]]:
    return list(llm.requests[index]["messages"])


async def body_of(chat: ChatFn, message: str, **kw: Any) -> dict[str, Any]:
    response = await chat(message, **kw)
    assert response.status == 200
    return dict(await response.json())


# --------------------------------------------------------------------------- confirmation


async def test_a_booking_is_created_only_when_asked_again_in_a_later_turn(
    chat: ChatFn, llm: ModelScript, sandbox: RunningSandbox
) -> None:
    llm.add(
        call("check_availability", SLOT),
        call("create_booking", BOOKING),
        call("create_booking", BOOKING),  # the same turn again: still only a proposal
        reply("¿Confirmas tu cita del martes a las 15:00?"),
    )
    first = await body_of(chat, f"Mañana a las 3 de la tarde. {GIVES_DATA}")
    proposals = tool_results(llm.requests[-1])[1:]
    assert [r["pendiente_confirmacion"] for r in proposals] == [True, True]
    assert proposals[0]["instruccion"] == PENDING
    assert events(sandbox) == [] and first["url"] is None

    llm.add(call("create_booking", BOOKING), reply("¡Listo!"))
    second = await body_of(chat, "Sí, confírmala por favor")
    assert tool_results(llm.requests[-1])[-1]["reservado"] is True
    assert len(events(sandbox)) == 1
    assert second["url"] and second["url"] in second["reply"]
    assert "martes 1 de diciembre a las 15:00" in second["reply"]


async def test_a_proposal_checks_the_slot_itself_so_no_earlier_check_is_needed(
    chat: ChatFn, llm: ModelScript, sandbox: RunningSandbox
) -> None:
    # Small models jump to create_booking; the summary to confirm is what a check would show.
    taken = {**BOOKING, "time": "16:00"}
    occupy(sandbox, "2026-12-01 16:00:00", "2026-12-01 16:30:00")
    llm.add(call("create_booking", taken), call("create_booking", BOOKING), reply("¿Confirmas?"))
    await body_of(chat, f"Mañana a las 4 o 3 de la tarde. {GIVES_DATA}")
    refused, proposed = tool_results(llm.requests[-1])
    assert (refused["reservado"], refused["disponible"]) == (False, False)
    assert refused["alternativas"] and "mensaje" in refused
    assert proposed["pendiente_confirmacion"] is True
    assert len(sandbox.backend.calls_of("CREAR_EVENTO")) == 1  # only the other customer's

    llm.add(call("create_booking", BOOKING), reply("¡Listo!"))
    await body_of(chat, "Sí")
    assert tool_results(llm.requests[-1])[-1]["reservado"] is True


async def test_without_confirmation_the_first_call_books(
    make_client: MakeClient, settings: Settings, llm: ModelScript, sandbox: RunningSandbox
) -> None:
    client = await make_client(settings.with_updates(confirm_before_booking=False))
    llm.add(call("check_availability", SLOT), call("create_booking", BOOKING), reply("Hecho."))
    await client.send(
        f"Mañana 15:00. {GIVES_DATA}", session_id="51987654321", context=chat_body("")["context"]
    )
    assert [e["fecha_inicio"] for e in events(sandbox)] == ["2026-12-01 15:00:00"]


# --------------------------------------------------------------------------- customer data


@pytest.mark.parametrize(
    ("name", "email"),
    [
        ("Cliente", "ana.perez@example.com"),  # invented
        ("Nombre y Apellido", "ana.perez@example.com"),  # an argument description as a value
        ("Ana Pérez", "cliente@example.com"),  # invented
    ],
)
async def test_a_name_or_email_the_customer_never_wrote_is_refused(
    chat: ChatFn, llm: ModelScript, sandbox: RunningSandbox, name: str, email: str
) -> None:
    args = {**SLOT, "customer_name": name, "customer_email": email}
    llm.add(call("check_availability", SLOT), call("create_booking", args), reply("¿Tus datos?"))
    await body_of(chat, f"Mañana a las 15:00. {GIVES_DATA}")
    result = tool_results(llm.requests[-1])[-1]
    assert result["error"] == "customer_data_not_given" and result["ok"] is False
    assert sandbox.backend.calls_of("CREAR_EVENTO") == []


async def test_a_refusal_hands_the_model_the_data_the_customer_did_write(
    chat: ChatFn, llm: ModelScript, sandbox: RunningSandbox
) -> None:
    # Seen with a 1.5B model: "John Doe" with the customer's real name a few lines up.
    invented = {**SLOT, "customer_name": "John Doe", "customer_email": "john.doe@example.com"}
    llm.add(
        call("check_availability", SLOT),
        call("create_booking", invented),
        call("create_booking", BOOKING),
        reply("¿Confirmas?"),
    )
    await body_of(chat, f"Mañana a las 15:00. {GIVES_DATA}")
    refused, proposed = tool_results(llm.requests[-1])[1:]
    assert refused["error"] == "customer_data_not_given" and "mensaje" not in refused
    assert "nombre y apellido «Ana Pérez»" in refused["instruccion"]
    assert "correo electrónico «ana.perez@example.com»" in refused["instruccion"]
    assert proposed["pendiente_confirmacion"] is True
    assert sandbox.backend.calls_of("CREAR_EVENTO") == []


async def test_data_the_customer_never_gave_is_asked_of_the_customer(
    chat: ChatFn, llm: ModelScript
) -> None:
    invented = {**SLOT, "customer_name": "John Doe", "customer_email": "john.doe@example.com"}
    llm.add(
        call("check_availability", SLOT), call("create_booking", invented), reply(""), reply("")
    )
    body = await body_of(chat, "Mañana a las 15:00")
    refused = tool_results(llm.requests[-1])[-1]
    assert "«" not in refused["instruccion"]
    assert refused["mensaje"] == (
        "Para reservar tu cita necesito tu nombre y apellido y tu correo electrónico. "
        "¿Me lo escribes, por favor?"
    )
    # The model said nothing: the customer hears what the check found, then what is missing.
    assert body["reply"] == (
        f"El martes 1 de diciembre a las 15:00 está disponible.\n\n{refused['mensaje']}"
    )


async def test_a_price_asked_is_not_followed_by_a_data_ask_for_a_booking_nobody_asked(
    chat: ChatFn, llm: ModelScript
) -> None:
    # Seen with a 1.5B model: a price looked up, then a booking tried with invented data, then
    # nothing said; the customer only asked the price.
    invented = {**SLOT, "customer_name": "John Doe", "customer_email": "john.doe@example.com"}
    llm.add(
        call("search_products", {"query": "limpieza"}),
        call("create_booking", invented),
        reply(""),
        reply(""),
    )
    body = await body_of(chat, "¿Cuánto cuesta una limpieza dental?")
    found, refused = tool_results(llm.requests[-1])[-2:]
    assert refused["error"] == "customer_data_not_given"
    assert body["reply"] == found["mensaje"] and "Limpieza" in body["reply"]


async def test_what_the_customer_wrote_counts_after_old_turns_are_trimmed(
    make_client: MakeClient, settings: Settings, llm: ModelScript, sandbox: RunningSandbox
) -> None:
    client = await make_client(
        settings.with_updates(confirm_before_booking=False, history_max_messages=4)
    )
    context = chat_body("")["context"]
    llm.add(reply("Gracias, Ana."))
    await client.send(GIVES_DATA, session_id="51911", context=context)
    for text in ("Hola", "¿Qué tal?", "Una pregunta"):
        llm.add(reply("Dime."))
        await client.send(text, session_id="51911", context=context)
    assert GIVES_DATA not in json.dumps(llm.requests[-1]["messages"], ensure_ascii=False)
    llm.add(call("check_availability", SLOT), call("create_booking", BOOKING), reply("Hecho."))
    await client.send("Mañana a las 15:00", session_id="51911", context=context)
    assert len(events(sandbox)) == 1


# --------------------------------------------------------------------------- replies


async def test_a_claimed_booking_gets_one_correction_then_a_reply_from_the_facts(
    chat: ChatFn, llm: ModelScript, sandbox: RunningSandbox
) -> None:
    metrics = MetricsDelta()
    llm.add(reply("¡Listo! Tu cita está confirmada."), reply("Perfecto, quedó agendada."))
    body = await body_of(chat, "Quiero una cita mañana")
    assert body["reply"] == NOTHING_BOOKED
    correction = messages_sent(llm)[-1]
    assert correction == {"role": "user", "content": CORRECTIONS["claim"]}
    assert metrics.of("citas_reply_guard_total", action="retry_claim") == 1
    assert metrics.of("citas_reply_guard_total", action="replaced_claim") == 1

    llm.add(reply("¿A qué hora?"))
    await body_of(chat, "Hola de nuevo")
    history = messages_sent(llm)
    assert CORRECTIONS["claim"] not in json.dumps(history, ensure_ascii=False)
    assert {"role": "assistant", "content": NOTHING_BOOKED} in history
    assert events(sandbox) == []


async def propose(chat: ChatFn, llm: ModelScript) -> None:
    llm.add(call("check_availability", SLOT), call("create_booking", BOOKING), reply("¿Confirmas?"))
    await body_of(chat, f"Mañana a las 3 de la tarde. {GIVES_DATA}")


async def test_a_bare_yes_books_the_proposal_when_the_model_does_not(
    chat: ChatFn, llm: ModelScript, sandbox: RunningSandbox
) -> None:
    # Seen with a 1.5B model: «Sí, confírmala» answered with the summary again, no booking.
    metrics = MetricsDelta()
    await propose(chat, llm)
    llm.add(reply("Tu cita sería el martes 1 de diciembre a las 15:00. ¿Confirmo la reserva?"))
    body = await body_of(chat, "Sí, confírmala por favor")
    [event] = events(sandbox)
    assert event["fecha_inicio"] == "2026-12-01 15:00:00"
    assert event["cliente_correo"] == "ana.perez@example.com"
    assert body["reply"].startswith("¡Listo! Tu cita quedó reservada para el martes 1 de diciembre")
    assert body["url"] and body["url"] in body["reply"]
    assert metrics.of("citas_reply_guard_total", action="booked_on_yes") == 1
    llm.add(reply("De nada."))
    await body_of(chat, "Gracias")  # the history the model gets next is valid for the API
    sent = messages_sent(llm)
    [made] = [m for m in sent if m["role"] == "assistant" and m.get("tool_calls")][-1:]
    assert made["tool_calls"][0]["function"]["name"] == "create_booking"
    assert {"role": "assistant", "content": body["reply"]} in sent


@pytest.mark.parametrize(
    "answer", ["Sí, pero mejor a las 4", "Déjame pensarlo", "no", "Sí, y otra para el viernes"]
)
async def test_anything_but_a_bare_yes_is_left_to_the_model(
    chat: ChatFn, llm: ModelScript, sandbox: RunningSandbox, answer: str
) -> None:
    await propose(chat, llm)
    llm.add(reply("Claro, ¿qué prefieres?"))
    body = await body_of(chat, answer)
    assert body["reply"] == "Claro, ¿qué prefieres?"
    assert events(sandbox) == []


async def test_a_yes_the_model_books_itself_is_booked_once(
    chat: ChatFn, llm: ModelScript, sandbox: RunningSandbox
) -> None:
    await propose(chat, llm)
    llm.add(call("create_booking", BOOKING), reply("¡Listo!"))
    await body_of(chat, "Sí")
    assert len(events(sandbox)) == 1
    llm.add(reply("Tu cita ya está reservada."))
    await body_of(chat, "Ok, gracias")  # a yes with nothing awaiting it books nothing
    assert len(events(sandbox)) == 1


SUMMARY = (
    "Tu cita sería el martes 1 de diciembre a las 15:00, a nombre de Ana Pérez "
    "(ana.perez@example.com). ¿Confirmo la reserva?"
)


async def ask_free_slot(chat: ChatFn, llm: ModelScript) -> None:
    llm.add(call("check_availability", SLOT), reply("Está libre. ¿Tu nombre y tu correo?"))
    await body_of(chat, "¿Tienen algo mañana a las 3 de la tarde?")


async def test_the_data_for_the_slot_asked_proposes_it_when_the_model_does_not(
    chat: ChatFn, llm: ModelScript, sandbox: RunningSandbox
) -> None:
    # Seen with a 1.5B model: the name and email answered with thanks, and nothing proposed.
    metrics = MetricsDelta()
    await ask_free_slot(chat, llm)
    llm.add(reply("¡Gracias, Ana! Tomo nota."))
    body = await body_of(chat, GIVES_DATA)
    assert body["reply"] == SUMMARY
    assert events(sandbox) == []  # a proposal: the customer still has to say yes
    assert metrics.of("citas_reply_guard_total", action="proposed_on_data") == 1
    llm.add(reply("Perfecto."))
    body = await body_of(chat, "Sí, confírmala")
    [event] = events(sandbox)
    assert event["fecha_inicio"] == "2026-12-01 15:00:00"
    assert event["cliente_nombre"] == "Ana Pérez"
    assert body["reply"].startswith("¡Listo! Tu cita quedó reservada")


async def test_the_slot_a_refusal_of_invented_data_was_for_is_proposed_with_the_real_data(
    chat: ChatFn, llm: ModelScript, sandbox: RunningSandbox
) -> None:
    invented = {**SLOT, "customer_name": "John Doe", "customer_email": "john@example.com"}
    llm.add(
        call("check_availability", {"date": SLOT["date"]}),
        call("create_booking", invented),
        reply("¿Me das tu nombre y correo?"),
    )
    await body_of(chat, "Quiero una cita mañana, ¿qué horarios hay?")
    llm.add(reply("Gracias."))
    body = await body_of(chat, GIVES_DATA)
    assert body["reply"] == SUMMARY
    assert events(sandbox) == []


@pytest.mark.parametrize(
    ("asked", "proposed"),
    [("Quiero una cita mañana a las 3 de la tarde", True), ("Quiero una cita mañana", False)],
)
async def test_a_refusal_before_any_check_keeps_the_slot_only_if_the_customer_named_it(
    chat: ChatFn, llm: ModelScript, sandbox: RunningSandbox, asked: str, proposed: bool
) -> None:
    # The small model's habit: create_booking at once, with "John Doe", and the time made up
    # when the customer gave none.
    invented = {**SLOT, "customer_name": "John Doe", "customer_email": "john@example.com"}
    llm.add(call("create_booking", invented), reply("¿Me das tu nombre y correo?"))
    if proposed:  # the refusal established nothing: the loop checks the slot named, asks again
        llm.add(reply("Está libre. ¿Me das tu nombre y correo?"))
    await body_of(chat, asked)
    llm.add(reply("Gracias."))
    body = await body_of(chat, GIVES_DATA)
    assert body["reply"] == (SUMMARY if proposed else "Gracias.")
    assert events(sandbox) == []


@pytest.mark.parametrize(
    "said",
    [
        "Soy Ana Pérez, ana.perez@example.com, pero mejor el viernes",  # another day
        "Soy Ana Pérez, ana.perez@example.com, a las 5",  # another time
        "Soy Ana Pérez",  # no email yet, and the business needs it
        "¿Cuánto cuesta?",  # no data
    ],
)
async def test_data_with_another_day_or_time_or_incomplete_is_left_to_the_model(
    chat: ChatFn, llm: ModelScript, sandbox: RunningSandbox, said: str
) -> None:
    await ask_free_slot(chat, llm)
    llm.add(reply("Claro, cuéntame."))
    body = await body_of(chat, said)
    assert body["reply"] == "Claro, cuéntame."


@pytest.mark.parametrize(
    ("said", "proposed"),
    [
        # Seen with a 1.5B model: the day and hour answered «no puedo ayudarte con eso».
        (["Ya, quiero una el miércoles a las 6 de la tarde."], "2026-12-02 18:00:00"),
        # Sunday is closed; the customer moves to Saturday «a la misma hora».
        (
            ["¿Puedo el domingo a las 10 de la mañana?", "Entonces el sábado a la misma hora"],
            "2026-12-05 10:00:00",
        ),
        (["Mañana a las 5 de la tarde no puedo"], None),  # named, but not asked for
        # Case 34: a no about something else, in another sentence, denies nothing.
        (
            ["¿Puedo el domingo a las 11?", "Ah, no sabía. Entonces el sábado a la misma hora."],
            "2026-12-05 11:00:00",
        ),
        # One thing per message, as on WhatsApp (case 32): the day, then the hour.
        (["una cita porfa", "para mañana", "a las 10"], "2026-12-01 10:00:00"),
        (["para mañana", "Ok", "a las 10"], None),  # the day was not the message before
    ],
)
async def test_a_day_and_time_the_customer_names_are_proposed_on_their_data(
    chat: ChatFn, llm: ModelScript, sandbox: RunningSandbox, said: list[str], proposed: str | None
) -> None:
    for n, message in enumerate(said):
        # Each answer without a tool: the loop checks the slot named, and asks the model again.
        llm.add(reply(f"Lo siento, no puedo ayudarte con eso ({n})."), reply(f"Entendido ({n})."))
        await body_of(chat, message)
    llm.add(reply("Gracias."))
    body = await body_of(chat, GIVES_DATA)
    checked = [b["fecha_inicio"] for b in sandbox.backend.calls_of("CONSULTAR_DISPONIBILIDAD")]
    assert checked[-1:] == ([proposed] if proposed else [])
    assert body["reply"].endswith("¿Confirmo la reserva?") is (proposed is not None)
    assert sandbox.backend.events == []


async def test_a_day_and_time_answered_without_a_tool_are_checked_and_answered_again(
    chat: ChatFn, llm: ModelScript, sandbox: RunningSandbox
) -> None:
    # Seen with a 1.5B model: «¿tienen algo hoy a las 4 de la tarde?» answered «no tengo
    # información suficiente», no tool called.
    metrics = MetricsDelta()
    occupy(sandbox, "2026-12-01 15:00:00", "2026-12-01 15:30:00")
    llm.add(reply("No tengo información suficiente."), reply("A las 15:00 no; ¿15:30?"))
    body = await body_of(chat, "¿Tienen algo mañana a las 3 de la tarde?")
    assert body["reply"] == "A las 15:00 no; ¿15:30?"
    [result] = tool_results(llm.requests[-1])  # the second call knows what the check found
    assert (result["disponible"], result["motivo"]) == (False, "ese horario ya está ocupado")
    assert metrics.of("citas_reply_guard_total", action="checked_on_ask") == 1
    # Once a turn, and never when the model used a tool or the message names no whole slot.
    llm.add(reply("Con gusto."))
    await body_of(chat, "¿Y mañana en la tarde?")
    llm.add(call("search_products", {"query": "limpieza"}), reply("Cuesta S/ 80."))
    await body_of(chat, "¿Cuánto cuesta una limpieza el viernes a las 10?")
    assert metrics.of("citas_reply_guard_total", action="checked_on_ask") == 1
    assert len(sandbox.backend.calls_of("CONSULTAR_DISPONIBILIDAD")) == 1


async def test_a_slot_named_is_checked_when_the_model_s_own_check_was_refused(
    chat: ChatFn, llm: ModelScript
) -> None:
    # Case 04 with a 1.5B model: the first reply to «pasado mañana al mediodía» was «no logré
    # completar tu solicitud», after a check whose arguments were refused.
    metrics = MetricsDelta()
    llm.add(
        call("check_availability", {"date": "2026-12-02", "time": "25:99"}),
        reply(""),
        reply("Sí, el miércoles a las 12:00 está libre. ¿Tu nombre y correo?"),
    )
    body = await body_of(chat, "Hola! ¿Me pueden atender pasado mañana al mediodía?")
    assert body["reply"] == "Sí, el miércoles a las 12:00 está libre. ¿Tu nombre y correo?"
    refused, checked = tool_results(llm.requests[-1])
    assert refused["ok"] is False
    assert (checked["disponible"], checked["fecha"], checked["hora"]) == (
        True,
        "2026-12-02",
        "12:00",
    )
    assert metrics.of("citas_reply_guard_total", action="checked_on_ask") == 1


async def test_a_turn_stopped_on_repeated_refused_calls_checks_the_slot_named_and_tells_it(
    chat: ChatFn, llm: ModelScript, sandbox: RunningSandbox
) -> None:
    # Case 04 at 7f6b96a with a 1.5B model: «pasado mañana al mediodía» checked three times for
    # the wrong day (each refused as date_mismatch), then «no logré completar tu solicitud».
    metrics = MetricsDelta()
    wrong_day = call("check_availability", {"date": "2026-12-01", "time": "12:00"})
    llm.add(wrong_day, wrong_day, wrong_day, reply("never asked"))
    body = await body_of(chat, "Hola! ¿Me pueden atender pasado mañana al mediodía?")
    assert [b["fecha_inicio"] for b in sandbox.backend.calls_of("CONSULTAR_DISPONIBILIDAD")] == [
        "2026-12-02 12:00:00"
    ]
    assert body["reply"] == (
        "El miércoles 2 de diciembre a las 12:00 está disponible.\n\nPara reservar tu cita "
        "necesito tu nombre y apellido y tu correo electrónico. ¿Me lo escribes, por favor?"
    )
    assert llm.pending == 1
    assert metrics.of("citas_reply_guard_total", action="checked_on_ask") == 1


async def test_a_proposal_for_another_slot_than_the_one_asked_is_refused(
    chat: ChatFn, llm: ModelScript, sandbox: RunningSandbox
) -> None:
    # Case 08 with a 1.5B model: 15:00 asked and found free, then with the customer's data a
    # proposal for another day and hour, which a customer saying yes would have booked.
    await ask_free_slot(chat, llm)
    elsewhere = {**BOOKING, "date": "2026-12-02", "time": "10:00"}
    llm.add(call("create_booking", elsewhere), reply("Confirma la reserva."))
    body = await body_of(chat, GIVES_DATA)
    refused = tool_results(llm.requests[-1])[-1]
    assert refused["error"] == "slot_mismatch" and "2026-12-01" in refused["instruccion"]
    assert body["reply"] == SUMMARY  # the customer's own slot, proposed on their data
    assert events(sandbox) == []
    # A message that names another day or hour is the customer's choice, judged elsewhere.
    llm.add(call("create_booking", elsewhere), reply("¿Confirmas?"))
    await body_of(chat, "Mejor el miércoles a las 10")
    assert tool_results(llm.requests[-1])[-1]["pendiente_confirmacion"] is True


async def test_a_refusal_after_a_search_that_found_the_answer_gives_the_answer(
    chat: ChatFn, llm: ModelScript
) -> None:
    # Case 22 with a 1.5B model: the parking answer found, then «no tengo información».
    llm.add(
        call("search_products", {"query": "estacionamiento"}),
        reply("No tengo información sobre estacionamiento."),
    )
    body = await body_of(chat, "Buenas, ¿tienen estacionamiento?")
    found = tool_results(llm.requests[-1])[-1]
    assert found["informacion"] and body["reply"] == found["mensaje"]


async def test_a_booking_refused_for_a_slot_nobody_asked_for_keeps_the_customer_s(
    chat: ChatFn, llm: ModelScript, sandbox: RunningSandbox
) -> None:
    # Seen with a 1.5B model: «el 15 a las 5 de la tarde» asked, then with the customer's data
    # a booking tried for a past hour nobody named; the customer's slot must still be proposed.
    await ask_free_slot(chat, llm)
    past = {**BOOKING, "date": "2026-11-30", "time": "08:00"}
    llm.add(call("create_booking", past), reply(GIVES_DATA))
    body = await body_of(chat, GIVES_DATA)
    assert body["reply"] == SUMMARY
    assert sandbox.backend.events == []


async def test_a_day_listed_after_the_check_is_a_new_choice_and_proposes_nothing(
    chat: ChatFn, llm: ModelScript
) -> None:
    await ask_free_slot(chat, llm)
    llm.add(call("check_availability", {"date": "2026-12-04"}), reply("El viernes hay 10:00."))
    await body_of(chat, "¿Y el viernes qué hay?")
    llm.add(reply("¿Qué hora prefieres?"))
    body = await body_of(chat, GIVES_DATA)
    assert body["reply"] == "¿Qué hora prefieres?"


async def offer_alternatives(chat: ChatFn, llm: ModelScript, sandbox: RunningSandbox) -> None:
    occupy(sandbox, "2026-12-01 15:00:00", "2026-12-01 16:00:00")
    llm.add(call("check_availability", SLOT), reply("A las 3 no hay. ¿Te sirve otra hora?"))
    await body_of(chat, "¿Tienen algo mañana a las 3 de la tarde?")
    [offered] = tool_results(llm.requests[-1])
    assert "16:00" in json.dumps(offered["alternativas"])


@pytest.mark.parametrize(
    "chosen", ["Ya, entonces la de las 4 de la tarde.", "Mañana a las 16:00 mejor"]
)
async def test_an_offered_time_chosen_is_proposed_on_the_data_when_the_model_never_checked_it(
    chat: ChatFn, llm: ModelScript, sandbox: RunningSandbox, chosen: str
) -> None:
    # Seen with a 1.5B model (eval case 12): «la de las 4» answered by asking for the data, no
    # check of 16:00, and the data then answered with thanks: the customer left unbooked.
    await offer_alternatives(chat, llm, sandbox)
    llm.add(reply("Perfecto, ¿me das tu nombre y correo?"))
    await body_of(chat, chosen)
    llm.add(reply("¡Gracias, Ana!"))
    body = await body_of(chat, GIVES_DATA)
    assert body["reply"] == SUMMARY.replace("15:00", "16:00")
    llm.add(reply("Listo."))
    await body_of(chat, "Sí, confírmala")
    mine = [e for e in events(sandbox) if e["cliente_nombre"] == "Ana Pérez"]
    assert [e["fecha_inicio"] for e in mine] == ["2026-12-01 16:00:00"]


async def test_an_offered_time_chosen_with_the_data_in_one_message_is_proposed(
    chat: ChatFn, llm: ModelScript, sandbox: RunningSandbox
) -> None:
    await offer_alternatives(chat, llm, sandbox)
    llm.add(reply("¡Gracias, Ana!"))
    body = await body_of(chat, f"Entonces la de las 4 de la tarde. {GIVES_DATA}")
    assert body["reply"] == SUMMARY.replace("15:00", "16:00")


@pytest.mark.parametrize(
    "chosen",
    [
        "Entonces a las 6 de la mañana",  # offered nowhere
        "La de las 4",  # morning or afternoon?
    ],
)
async def test_a_time_not_offered_or_unclear_wants_nothing(
    chat: ChatFn, llm: ModelScript, sandbox: RunningSandbox, chosen: str
) -> None:
    await offer_alternatives(chat, llm, sandbox)
    llm.add(reply("¿Me das tu nombre y correo?"))
    await body_of(chat, chosen)
    llm.add(reply("Gracias, ¿a qué hora te acomoda?"))
    body = await body_of(chat, GIVES_DATA)
    assert body["reply"] == "Gracias, ¿a qué hora te acomoda?"


async def test_a_time_offered_on_two_days_is_left_to_the_model(
    chat: ChatFn, llm: ModelScript
) -> None:
    llm.add(
        call("check_availability", {"date": "2026-12-01"}),
        call("check_availability", {"date": "2026-12-02"}),
        reply("Hay varias horas mañana y el miércoles."),
    )
    await body_of(chat, "¿Qué tienen mañana o el miércoles?")
    llm.add(reply("¿Tu nombre y correo?"))
    await body_of(chat, "A las 4 de la tarde")
    llm.add(reply("Gracias, ¿qué día?"))
    body = await body_of(chat, GIVES_DATA)
    assert body["reply"] == "Gracias, ¿qué día?"


async def test_another_day_asked_in_an_earlier_turn_drops_the_wanted_slot(
    chat: ChatFn, llm: ModelScript
) -> None:
    # The model never checked the Friday: the data must not propose Tuesday's slot instead.
    await ask_free_slot(chat, llm)
    llm.add(reply("Claro. ¿Tu nombre y correo?"))
    await body_of(chat, "Mejor el viernes")
    llm.add(reply("Gracias, ¿a qué hora el viernes?"))
    body = await body_of(chat, GIVES_DATA)
    assert body["reply"] == "Gracias, ¿a qué hora el viernes?"


async def test_without_confirmation_the_loop_never_books_for_the_model(
    make_client: MakeClient, settings: Settings, llm: ModelScript, sandbox: RunningSandbox
) -> None:
    client = await make_client(settings.with_updates(confirm_before_booking=False))
    context = chat_body("")["context"]
    llm.add(call("check_availability", SLOT), reply("Está libre. ¿Tu nombre y tu correo?"))
    await client.send("¿Mañana a las 3 de la tarde?", session_id="519", context=context)
    llm.add(reply("Gracias, Ana."))
    outcome = await client.send(GIVES_DATA, session_id="519", context=context)
    assert outcome.reply == "Gracias, Ana."
    assert events(sandbox) == []


async def test_an_empty_answer_after_a_booking_tells_the_booking_and_history_keeps_it(
    make_client: MakeClient, settings: Settings, llm: ModelScript
) -> None:
    client = await make_client(settings.with_updates(confirm_before_booking=False))
    context = chat_body("")["context"]
    llm.add(call("check_availability", SLOT), call("create_booking", BOOKING), reply(""), reply(""))
    outcome = await client.send(f"Mañana 15:00. {GIVES_DATA}", session_id="519", context=context)
    assert outcome.url and outcome.url in outcome.reply
    assert outcome.reply.startswith("¡Listo! Tu cita quedó reservada")
    llm.add(reply("De nada."))
    await client.send("Gracias", session_id="519", context=context)
    answers = [m["content"] for m in messages_sent(llm) if m["role"] == "assistant"]
    assert "" not in answers and outcome.reply in answers


async def test_an_instruction_echoed_by_the_model_is_removed(
    chat: ChatFn, llm: ModelScript
) -> None:
    # The audit of a real model: it repeated the tool's instruction to the customer word for word.
    llm.add(
        call("create_booking", BOOKING),
        reply(
            "Muestra este resumen al cliente y pregúntale si confirma. ¿Te parece bien el martes "
            "a las 15:00?"
        ),
    )
    body = await body_of(chat, f"Mañana 15:00. {GIVES_DATA}")
    assert body["reply"] == "¿Te parece bien el martes a las 15:00?"


async def test_tool_markup_in_the_answer_never_reaches_the_customer(
    chat: ChatFn, llm: ModelScript
) -> None:
    llm.add(reply('<tool_response>{"ok":true}</tool_response> Hola, ¿en qué te ayudo?'))
    assert (await body_of(chat, "Hola"))["reply"] == "Hola, ¿en qué te ayudo?"


async def test_an_answer_that_repeats_the_last_reply_is_sent_back_and_not_kept(
    chat: ChatFn, llm: ModelScript
) -> None:
    # Seen with a 1.5B model: from its second turn on it repeats its first answer word for word.
    asked = "¡Hola! ¿Para qué día y hora quieres tu cita?"
    llm.add(reply(asked))
    await body_of(chat, "Hola, quiero una cita")
    llm.add(reply(asked), call("check_availability", SLOT), reply("Mañana a las 15:00 está libre."))
    body = await body_of(chat, "Mañana, en la tarde")
    assert body["reply"] == "Mañana a las 15:00 está libre."
    correction = {"role": "user", "content": CORRECTIONS["repeat"]}
    assert correction in messages_sent(llm, 2)  # the call after the repeat
    llm.add(reply("De nada."))
    await body_of(chat, "Gracias")
    history = messages_sent(llm)
    assert correction not in history
    assert [m["content"] for m in history if m["role"] == "assistant" and m["content"]] == [
        asked,
        "Mañana a las 15:00 está libre.",
    ]


# --------------------------------------------------------------------------- repeated calls


async def test_identical_calls_are_answered_from_the_first_and_end_the_turn(
    chat: ChatFn, llm: ModelScript, sandbox: RunningSandbox
) -> None:
    llm.add(*[call("check_availability", SLOT)] * 3, reply("never asked"))
    body = await body_of(chat, "¿Tienen mañana a las 15:00?")
    assert len(sandbox.backend.calls_of("CONSULTAR_DISPONIBILIDAD")) == 1
    first, second = tool_results(llm.requests[-1])
    assert second["instruccion"].endswith("Responde al cliente con lo que ya sabes.")
    assert {**second, "instruccion": first["instruccion"]} == first
    # The third call (the second repeat) ended the turn with what the first one found, and the
    # step that books it.
    assert len(llm.requests) == 3 and llm.pending == 1
    assert first["mensaje"] == "El martes 1 de diciembre a las 15:00 está disponible."
    assert body["reply"] == (
        f"{first['mensaje']}\n\nPara reservar tu cita necesito tu nombre y apellido y tu correo "
        "electrónico. ¿Me lo escribes, por favor?"
    )


# --------------------------------------------------------------------------- dates in words


async def test_dates_and_times_in_words_are_resolved_in_the_business_zone(
    chat: ChatFn, llm: ModelScript
) -> None:
    llm.add(
        call("check_availability", {"date": "el próximo viernes", "time": "3 de la tarde"}),
        reply("ok"),
    )
    await body_of(chat, "El próximo viernes a las 3 de la tarde")
    result = tool_results(llm.requests[-1])[-1]
    assert (result["fecha"], result["hora"]) == ("2026-12-04", "15:00")
    assert result["cuando"] == "viernes 4 de diciembre a las 15:00"


async def test_an_ambiguous_hour_comes_back_as_a_question_for_the_customer(
    chat: ChatFn, llm: ModelScript, sandbox: RunningSandbox
) -> None:
    llm.add(call("check_availability", {"date": "mañana", "time": "a las 3"}), reply(""), reply(""))
    body = await body_of(chat, "Mañana a las 3")
    result = tool_results(llm.requests[-1])[-1]
    assert result["error"] == "unclear_when" and "?" in result["mensaje"]
    assert sandbox.backend.calls_of("CONSULTAR_DISPONIBILIDAD") == []
    assert body["reply"] == result["mensaje"]  # the empty answer fell back to the question


# --------------------------------------------------------------------------- the clock note


@pytest.mark.parametrize("role", ["system", "user"])
async def test_the_clock_note_goes_where_the_template_accepts_it(
    make_client: MakeClient, settings: Settings, llm: ModelScript, role: str
) -> None:
    llm.system_message_first_only = role == "user"  # as Llama 3, Mistral and Gemma templates
    client = await make_client(settings.with_updates(clock_role=role))
    context = chat_body("")["context"]
    for text in ("Hola", "¿Atienden el sábado?"):
        llm.add(reply("Claro."))
        await client.send(text, session_id="51922", context=context)
    first, second = (list(r["messages"]) for r in llm.requests)
    systems = [m for m in second if m["role"] == "system"]
    assert len(systems) == (1 if role == "user" else 2)
    latest = second[-1]["content"]
    assert latest.startswith("Fecha y hora actuales: lunes 2026-11-30 10:00") == (role == "user")
    assert "viernes 4 de diciembre (2026-12-04)" in json.dumps(second, ensure_ascii=False)
    # The prefix is stable: the second request begins with the first one's prompt and the
    # customer's first message as it is kept (without the clock note).
    assert second[0] == first[0]
    assert {"role": "user", "content": "Hola"} in second


# --------------------------------------------------------------------------- context and length


async def test_a_cut_off_answer_is_asked_again_and_never_kept(
    chat: ChatFn, llm: ModelScript
) -> None:
    llm.add(reply("¡" * 3000, finish_reason="length"), reply("¿Para qué día quieres tu cita?"))
    assert (await body_of(chat, "Hola"))["reply"] == "¿Para qué día quieres tu cita?"
    assert messages_sent(llm)[-1] == {"role": "user", "content": CORRECTIONS["length"]}
    llm.add(reply("Perfecto."))
    await body_of(chat, "El lunes")
    assert "¡¡¡" not in json.dumps(messages_sent(llm), ensure_ascii=False)


async def test_a_context_refusal_shrinks_history_once_and_the_turn_goes_on(
    make_client: MakeClient, settings: Settings, llm: ModelScript
) -> None:
    client = await make_client(settings)
    context = chat_body("")["context"]
    for number in range(6):
        llm.add(reply(f"Respuesta número {number}: " + "bla " * 150))
        await client.send(f"Mensaje {number}", session_id="51933", context=context)
    first, latest = (estimate_request_tokens(r["messages"], r["tools"]) for r in llm.requests[::5])
    # The endpoint now holds less than the history the budget allows (a small local model):
    # room for the prompt and 60% of the six turns' history, so half of it fits again.
    per_turn = (latest - first) // 5
    llm.context_limit_tokens = first + per_turn * 6 * 6 // 10
    llm.add(reply("Sigo aquí."))
    outcome = await client.send("¿Sigues ahí?", session_id="51933", context=context)
    assert (outcome.status, outcome.reply, outcome.error) == (200, "Sigo aquí.", None)
    assert len(llm.context_refusals) == 1
    # The shorter history was saved: the next turn is not refused again.
    llm.add(reply("Claro."))
    assert (await client.send("Ok", session_id="51933", context=context)).reply == "Claro."
    assert len(llm.context_refusals) == 1


async def test_a_context_refusal_that_shrinking_cannot_fix_is_an_apology(
    make_client: MakeClient, settings: Settings, llm: ModelScript
) -> None:
    client = await make_client(settings)
    llm.context_limit_tokens = 50  # less than the prompt alone
    outcome = await client.send("Hola", session_id="51944", context=chat_body("")["context"])
    assert (outcome.status, outcome.error) == (200, "llm_unavailable")
    assert len(llm.context_refusals) == 1  # no history to drop: not retried


async def test_history_is_kept_within_its_token_budget(
    make_client: MakeClient, settings: Settings, llm: ModelScript
) -> None:
    client = await make_client(settings.with_updates(history_max_tokens=600))
    context = chat_body("")["context"]
    for number in range(12):
        llm.add(reply(f"Respuesta {number}: " + "texto " * 60))
        await client.send(f"Mensaje {number}", session_id="51955", context=context)
    history = messages_sent(llm)[1:-2]  # without the prompt, the clock note and the new message
    assert estimate_tokens(history) <= 600
    assert {"role": "user", "content": "Mensaje 0"} not in history


async def test_a_proposed_slot_taken_by_this_very_booking_is_confirmed_not_called_taken(
    chat: ChatFn, llm: ModelScript, sandbox: RunningSandbox
) -> None:
    llm.add(call("create_booking", BOOKING), reply("¿Confirmas?"))
    await body_of(chat, f"Mañana a las 3 de la tarde. {GIVES_DATA}")
    # The event exists under this booking's key, but nothing of ours says so (its turn never
    # ended, and no intent record is left): the key derived again finds it.
    lima = ZoneInfo("America/Lima")
    slot = Slot(datetime(2026, 12, 1, 15, 0, tzinfo=lima), timedelta(minutes=30))
    request = BookingRequest(slot, Customer("Ana Pérez", "ana.perez@example.com"))
    key = idempotency_key(
        Tenant(12, lima, 30, usuario_id=7), ConversationKey(12, "51987654321"), request
    )
    answer = sandbox.backend.handle(
        "calendar",
        {
            "codOpe": "CREAR_EVENTO",
            "id_empresa": 12,
            "usuario_id": 7,
            "titulo": "Cita - Ana Pérez",
            "fecha_inicio": slot.local_start,
            "fecha_fin": slot.local_end,
            "cliente_nombre": "Ana Pérez",
            "cliente_correo": "ana.perez@example.com",
            "idempotency_key": key,
        },
    )
    assert answer["success"] is True
    [event] = sandbox.backend.events

    llm.add(call("create_booking", BOOKING), reply("¡Listo!"))
    second = await body_of(chat, "Sí, confírmala por favor")
    assert tool_results(llm.requests[-1])[-1]["reservado"] is True
    assert sandbox.backend.events == [event]
    assert second["url"] == event.url


# ---------------------------------------------------------------------- the customer's day and time


@pytest.mark.parametrize("tool", ["check_availability", "create_booking"])
@pytest.mark.parametrize(
    "case",
    [
        # Seen with a real small model: «mañana» passed as today's date.
        ("mañana a las 3 de la tarde", {"date": "2026-11-30"}, {}, "date_mismatch"),
        # Seen too: «a las 5 de la tarde» checked as 15:00, which was free, and the summary the
        # customer said yes to named 15:00.
        ("mañana a las 5 de la tarde", {}, {"time": "17:00"}, "time_mismatch"),
    ],
)
async def test_a_day_or_time_other_than_the_one_the_customer_named_is_refused(
    chat: ChatFn,
    llm: ModelScript,
    sandbox: RunningSandbox,
    tool: str,
    case: tuple[str, dict[str, str], dict[str, str], str],
) -> None:
    said, wrong, right, error = case
    wrong, right = {**BOOKING, **wrong}, {**BOOKING, **right}
    llm.add(call(tool, wrong), call(tool, right), reply("¿Confirmas?"))
    await body_of(chat, f"Quiero una cita {said}. {GIVES_DATA}")
    refused, answered = tool_results(llm.requests[-1])
    assert refused["error"] == error
    assert (right["date"] if error == "date_mismatch" else right["time"]) in refused["instruccion"]
    assert answered["ok"] is True and answered["hora"] == right["time"]
    checked = [b["fecha_inicio"] for b in sandbox.backend.calls_of("CONSULTAR_DISPONIBILIDAD")]
    assert f"{wrong['date']} {wrong['time']}:00" not in checked


async def test_a_message_naming_no_single_day_leaves_the_model_s_date_alone(
    chat: ChatFn, llm: ModelScript
) -> None:
    llm.add(call("check_availability", SLOT), reply("Libre."))
    await body_of(chat, "Mañana no puedo, ¿y el martes?")  # two days: not the guard's to judge
    assert tool_results(llm.requests[-1])[-1]["ok"] is True


async def test_the_customer_s_data_proposes_their_hour_not_the_one_refused(
    chat: ChatFn, llm: ModelScript, sandbox: RunningSandbox
) -> None:
    metrics = MetricsDelta()
    # 15:00 is refused (another hour than the message's); the loop then checks 17:00 itself.
    llm.add(call("check_availability", SLOT), reply("¿Me das tus datos?"), reply("Libre."))
    await body_of(chat, "Para mañana a las 5 de la tarde")
    # The data must not turn the refused 15:00 into the proposal the customer says yes to.
    llm.add(reply("¡Gracias, Ana! Tomo nota."))
    body = await body_of(chat, GIVES_DATA)
    assert "17:00" in body["reply"] and "15:00" not in body["reply"]
    assert metrics.of("citas_reply_guard_total", action="proposed_on_data") == 1
    checked = {b["fecha_inicio"] for b in sandbox.backend.calls_of("CONSULTAR_DISPONIBILIDAD")}
    assert checked == {"2026-12-01 17:00:00"}
    assert sandbox.backend.events == []


@pytest.mark.parametrize(
    "said",
    [
        "Mañana a las 5",  # 5:00 or 17:00: a question for the customer, not a refusal
        "Mañana, ¿a las 3 o a las 4 de la tarde?",  # two times
        "Mañana por favor",  # no time
    ],
)
async def test_a_message_naming_no_single_time_leaves_the_model_s_time_alone(
    chat: ChatFn, llm: ModelScript, said: str
) -> None:
    llm.add(call("check_availability", SLOT), reply("Libre."))
    await body_of(chat, said)
    assert tool_results(llm.requests[-1])[-1]["ok"] is True


@pytest.mark.parametrize(
    ("said", "refused"),
    [
        (("Mañana a las 3pm", "mejor a las 4pm"), None),  # a change of mind: 16:00 counts now
        (("mejor a las 4pm", "Mañana a las 3pm"), "time_mismatch"),
        (("Mañana a las 4pm", "¿se puede?"), None),  # the latest message naming a time counts
        (("El lunes a las 4pm",), "date_mismatch"),  # the day is judged first
    ],
)
def test_the_latest_message_of_the_turn_naming_a_time_is_the_one_that_counts(
    said: tuple[str, ...], refused: str | None
) -> None:
    conflict = customer_when_conflict(turn_context(said=said), date(2026, 12, 1), time(16, 0))
    assert (conflict and conflict.error) == refused
