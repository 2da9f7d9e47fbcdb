"""The reply guard on its own: what counts as claiming a booking, and how a reply is cleaned,
retried, replaced and completed from the turn's facts."""

from __future__ import annotations

from datetime import date, time
from zoneinfo import ZoneInfo

import pytest

from citas.agent.reply_guard import (
    CORRECTIONS,
    EMPTY_REPLY,
    NOT_DONE,
    NOTHING_BOOKED,
    NOTHING_CHANGED,
    ReplyGuard,
    claims_booking,
    claims_change,
)
from citas.agent.tools import TurnContext
from citas.agent.tools.availability import verdict_result
from citas.agent.tools.context import Booked
from citas.agent.tools.result import ToolResult
from citas.domain import Slot, SlotProblem
from citas.services.availability import SlotVerdict
from tests.conftest import turn_context

LINK = "https://meet.example.com/abc"
CONFIRMATION = (
    "¡Listo! Tu cita quedó reservada para el martes 1 de diciembre a las 15:00, a nombre de "
    f"Ana Pérez. Enlace de la reunión: {LINK}"
)


def context(
    *results: ToolResult, booked: bool = False, last_reply: str | None = None
) -> TurnContext:
    ctx = turn_context(last_reply=last_reply)
    ctx.results.extend(results)
    if booked:
        ctx.ledger.record_booking("k", {"event_id": "1"})
        ctx.booked.append(Booked("martes 1 de diciembre", "15:00", LINK, CONFIRMATION))
    return ctx


@pytest.mark.parametrize(
    "reply",
    [
        "¡Listo! Tu cita está confirmada para mañana a las 3.",
        "Perfecto, te agendé para el martes a las 15:00.",
        "Tu reserva quedó registrada, Ana.",
        "He reservado tu cita para el lunes.",
        "Cita confirmada: martes 1 de diciembre, 15:00.",
        "Listo. La cita ha quedado agendada para el viernes.",
        "Ya reservé tu cita, te llegará un correo.",
        "Sí, tu cita está confirmada.",
        "Perfecto, quedó agendada.",
    ],
)
def test_these_replies_claim_a_booking(reply: str) -> None:
    assert claims_booking(reply)


@pytest.mark.parametrize(
    "reply",
    [
        "¿Confirmo tu cita para el martes a las 15:00?",
        "Tu cita aún no está confirmada: ¿me das tu correo?",
        "Todavía no está reservada. ¿Quieres que la reserve?",
        "No pude reservar tu cita porque ese horario está ocupado.",
        "El martes a las 15:00 está disponible. ¿Tu nombre y correo?",
        "Tu cita sería el martes 1 de diciembre a las 15:00. ¿Confirmo la reserva?",
        "Hola, ¿en qué te puedo ayudar?",
        "Necesito tu correo para que te confirme la cita.",
    ],
)
def test_these_replies_do_not_claim_a_booking(reply: str) -> None:
    assert not claims_booking(reply)


def test_a_claim_without_a_booking_is_sent_back_once_then_replaced() -> None:
    guard, ctx = ReplyGuard(1500), context()
    first = guard.check("¡Listo, tu cita está confirmada!", "stop", ctx, may_retry=True)
    assert first.correction == CORRECTIONS["claim"]
    second = guard.check("Tu cita quedó reservada.", "stop", ctx, may_retry=False)
    assert second.correction is None
    assert second.text == NOTHING_BOOKED
    assert "replaced_claim" in second.actions


def test_a_claim_after_a_proposal_is_replaced_by_the_summary_to_confirm() -> None:
    summary = "Tu cita sería el martes 1 de diciembre a las 15:00. ¿Confirmo la reserva?"
    pending = ToolResult(True, {"pendiente_confirmacion": True}, summary, "AÚN NO ESTÁ RESERVADA.")
    ctx = context(pending)
    ctx.pending = pending
    checked = ReplyGuard(1500).check("Tu cita está confirmada.", None, ctx, may_retry=False)
    assert checked.text == summary


def test_a_claim_is_fine_once_the_conversation_has_a_booking() -> None:
    checked = ReplyGuard(1500).check(
        f"Tu cita está confirmada para el martes 1 de diciembre a las 15:00. {LINK}",
        "stop",
        context(booked=True),
        may_retry=True,
    )
    assert checked.correction is None
    assert checked.actions == []


def test_a_booking_made_in_the_turn_is_told_with_date_time_and_link() -> None:
    checked = ReplyGuard(1500).check("¡Hecho!", "stop", context(booked=True), may_retry=True)
    assert checked.text == f"¡Hecho!\n\n{CONFIRMATION}"
    assert checked.actions == ["added_booking_details"]


@pytest.mark.parametrize(
    "reply",
    [
        f"Listo: martes 1 de diciembre a las 15:00. {LINK}",
        f"Tu cita es el Martes 1 de Diciembre, 15:00 h ({LINK}).",
    ],
)
def test_a_booking_told_in_other_words_is_left_as_the_model_wrote_it(reply: str) -> None:
    checked = ReplyGuard(1500).check(reply, "stop", context(booked=True), may_retry=True)
    assert (checked.text, checked.actions) == (reply, [])


def test_markup_is_stripped_and_a_reply_of_markup_only_is_retried() -> None:
    guard, ctx = ReplyGuard(1500), context()
    raw = 'El martes está libre. <tool_response>{"ok":true,"disponible":true}</tool_response>'
    assert guard.check(raw, "stop", ctx, may_retry=True).text == "El martes está libre."
    only_markup = '{"name": "check_availability", "arguments": {"date": "2026-12-01"}}'
    assert guard.check(only_markup, "stop", ctx, may_retry=True).correction == CORRECTIONS["empty"]


def test_repeated_sentences_and_character_runs_are_collapsed() -> None:
    text = "Con gusto te ayudo con tu cita. " * 6 + "¿Qué día prefieres?¡¡¡¡¡¡¡¡¡¡"
    checked = ReplyGuard(1500).check(text, "stop", context(), may_retry=True)
    assert checked.text == "Con gusto te ayudo con tu cita. ¿Qué día prefieres?¡"
    assert {"removed_repeats", "collapsed_runs"} <= set(checked.actions)


PREVIOUS = "Con gusto. ¿Para qué día y hora quieres tu cita?"
DATA_REQUEST = (
    "Para reservar tu cita necesito tu nombre y apellido y tu correo electrónico. "
    "¿Me lo escribes, por favor?"
)


@pytest.mark.parametrize(
    "answer",
    [
        PREVIOUS,
        "con gusto, ¿para que dia y hora quieres tu cita",
        "*Con gusto.* ¿Para qué día y hora quieres tu cita?",
    ],
)
def test_an_answer_that_repeats_the_last_reply_is_sent_back_once(answer: str) -> None:
    ctx = context(last_reply=PREVIOUS)
    checked = ReplyGuard(1500).check(answer, "stop", ctx, may_retry=True)
    assert checked.correction == CORRECTIONS["repeat"]
    assert checked.actions == ["retry_repeat"]


def test_a_repeat_after_the_retry_is_kept_unless_the_turn_has_something_to_tell() -> None:
    guard = ReplyGuard(1500)
    kept = guard.check(PREVIOUS, "stop", context(last_reply=PREVIOUS), may_retry=False)
    assert (kept.text, kept.correction, kept.actions) == (PREVIOUS, None, ["kept_repeat"])
    told = "El martes 1 de diciembre a las 15:00 está disponible."
    ctx = context(ToolResult(True, {"disponible": True}, told), last_reply=PREVIOUS)
    replaced = guard.check(PREVIOUS, "stop", ctx, may_retry=False)
    # A slot found free is told with the step that books it.
    assert (replaced.text, replaced.actions) == (f"{told}\n\n{DATA_REQUEST}", ["replaced_repeat"])


@pytest.mark.parametrize(
    ("reply", "claims"),
    [
        ("Cita cancelada.", True),  # seen with a 1.5B model, no cancel_booking made
        ("Cita cambiada a 2026-12-03 11:00.", True),  # seen too, no reschedule_booking made
        ("Listo, tu cita del miércoles quedó cancelada.", True),
        ("Te cambié la cita al jueves.", True),
        ("¿Confirmas que cancelo tu cita?", False),
        ("No he cancelado tu cita.", False),
        ("Si quieres, la cita puede ser cancelada hasta 2 horas antes.", False),
    ],
)
def test_what_counts_as_claiming_a_cancel_or_a_change(reply: str, claims: bool) -> None:
    assert claims_change(reply) is claims


def test_a_change_claimed_without_one_is_retried_then_replaced_unless_a_tool_made_it() -> None:
    guard = ReplyGuard(1500)
    retried = guard.check("Cita cancelada.", "stop", context(), may_retry=True)
    assert (retried.correction, retried.actions) == (CORRECTIONS["change"], ["retry_change"])
    replaced = guard.check("Cita cancelada.", "stop", context(), may_retry=False)
    assert (replaced.text, replaced.actions) == (NOTHING_CHANGED, ["replaced_change"])
    cancelled = ToolResult(True, {"cancelada": True}, "Listo, tu cita quedó cancelada.")
    kept = guard.check("Cita cancelada.", "stop", context(cancelled), may_retry=True)
    assert (kept.text, kept.actions) == ("Cita cancelada.", [])


DATA = "Soy Andrés Huamán y mi correo es andres.huaman@gmail.com"


def test_an_answer_that_echoes_the_customer_is_sent_back_once_then_replaced() -> None:
    # Seen with a 1.5B model: the customer's name and email sent back to them as the reply.
    guard = ReplyGuard(1500)
    ctx = context()
    ctx.said = ("hola", DATA)
    retried = guard.check(f"{DATA}.", "stop", ctx, may_retry=True)
    assert (retried.correction, retried.actions) == (CORRECTIONS["echo"], ["retry_echo"])
    replaced = guard.check(DATA, "stop", ctx, may_retry=False)
    assert (replaced.text, replaced.actions) == (NOT_DONE, ["replaced_echo"])
    ctx.said = ("hola",)  # too short to count as an echo
    assert guard.check("Hola", "stop", ctx, may_retry=True).actions == []


@pytest.mark.parametrize(
    "answer", ["Con gusto. ¿Para qué hora quieres tu cita?", "¡Gracias!", "Con gusto."]
)
def test_a_different_or_short_answer_is_not_a_repeat(answer: str) -> None:
    previous = answer if len(answer) < 12 else PREVIOUS
    ctx = context(last_reply=previous)
    checked = ReplyGuard(1500).check(answer, "stop", ctx, may_retry=True)
    assert (checked.correction, checked.actions) == (None, [])


@pytest.mark.parametrize(
    ("answer", "sent"),
    [
        # Seen with a 1.5B model.
        (
            "Tienes razón. Si quieres cambiarla, puedes hacerlo con reschedule_booking.",
            "Tienes razón.",
        ),
        ("Listo. Usa `create_booking` cuando quieras.\nTe espero.", "Listo.\nTe espero."),
        ("Tu correo es ana_perez@gmail.com.", "Tu correo es ana_perez@gmail.com."),
        (
            "Entra a https://meet.example.com/a_b?utm_source=x.",
            "Entra a https://meet.example.com/a_b?utm_source=x.",
        ),
    ],
)
def test_a_sentence_naming_a_tool_or_field_never_reaches_the_customer(
    answer: str, sent: str
) -> None:
    checked = ReplyGuard(1500).check(answer, "stop", context(), may_retry=True)
    assert checked.text == sent
    assert ("removed_internal_names" in checked.actions) is (answer != sent)


def test_an_instruction_for_the_model_never_reaches_the_reply() -> None:
    result = ToolResult(
        False,
        customer_text=None,
        instruction="No se reservó: ese horario no se consultó en esta conversación. "
        "Consúltalo primero con check_availability.",
    )
    reply = (
        "No se reservó: ese horario no se consultó en esta conversación. "
        "Déjame revisar la disponibilidad."
    )
    checked = ReplyGuard(1500).check(reply, "stop", context(result), may_retry=True)
    assert checked.text == "Déjame revisar la disponibilidad."
    assert "removed_instruction" in checked.actions


def test_a_correction_echoed_back_is_removed_and_the_facts_answer_instead() -> None:
    # Seen with a 1.5B model, after an empty answer and its correction.
    told = ToolResult(True, {}, "Aceite para barba (producto): S/ 50.00.")
    echoed = "Responde al cliente en español, en pocas frases."
    checked = ReplyGuard(1500).check(echoed, "stop", context(told), may_retry=False)
    assert checked.text == told.customer_text
    assert checked.actions == ["removed_instruction", "replaced_empty"]


PRICE = ToolResult(True, {}, "Encontré: Limpieza dental (servicio): S/ 80.00.", answers=True)
ASK_DATA = ToolResult(
    False,
    {"reservado": False},
    "Para reservar tu cita necesito tu nombre y apellido y tu correo electrónico.",
    error="customer_data_not_given",
)
TAKEN = ToolResult(False, {}, "No se pudo reservar: ese horario ya está ocupado.", error="taken")


@pytest.mark.parametrize(
    ("results", "slot_in_play", "told"),
    [
        # Seen with a 1.5B model: the price found, then a booking with invented data refused.
        ((PRICE, ASK_DATA), True, [PRICE, ASK_DATA]),
        ((PRICE, ASK_DATA), False, [PRICE]),  # only a price was asked: no data to ask for
        ((ASK_DATA, PRICE), True, [PRICE]),  # the failed call came before: the price answers
        ((PRICE, PRICE), False, [PRICE]),  # the same call twice is told once
        ((TAKEN, ASK_DATA), False, [ASK_DATA]),  # only failures: the last one's ask
        ((PRICE, TAKEN), False, [PRICE, TAKEN]),  # a failure other than the data's is told
    ],
)
def test_a_reply_replaced_tells_what_the_tools_found_then_the_last_failures_ask(
    results: tuple[ToolResult, ...], slot_in_play: bool, told: list[ToolResult]
) -> None:
    ctx = context(*results)
    if slot_in_play:
        ctx.ledger.mark_verified("2026-12-01 15:00:00")
    checked = ReplyGuard(1500).check("", "stop", ctx, may_retry=False)
    assert checked.text == "\n\n".join(r.customer_text or "" for r in told)
    assert checked.actions == ["replaced_empty"]


MY_BOOKINGS = ToolResult(
    True,
    {"citas": [{"fecha": "2026-12-07", "hora": "10:00"}]},
    "Tus próximas citas:\n- lunes 7 de diciembre, 10:00 (ref C279CC)",
    answers=True,
)


def test_a_reply_that_leaves_out_what_the_customer_asked_for_gets_the_facts() -> None:
    # Seen with a 1.5B model: the customer's appointment listed, and this said to them.
    checked = ReplyGuard(1500).check(
        "Tienes que reservar una cita.", "stop", context(MY_BOOKINGS), may_retry=True
    )
    assert (checked.text, checked.correction) == (MY_BOOKINGS.customer_text, None)
    assert checked.actions == ["replaced_untold"]


@pytest.mark.parametrize(
    "reply",
    [
        "Tienes una cita el lunes 7 de diciembre a las 10:00.",
        "Tu cita es el 7 a las 10 de la mañana.",
    ],
)
def test_a_reply_that_carries_the_figures_found_is_kept(reply: str) -> None:
    checked = ReplyGuard(1500).check(reply, "stop", context(MY_BOOKINGS), may_retry=True)
    assert (checked.text, checked.actions) == (reply, [])


def test_only_answering_results_with_figures_must_be_told() -> None:
    reply = "Claro, ¿para qué día quieres tu cita?"
    not_asked = ToolResult(True, {}, "El martes 1 de diciembre a las 15:00 está disponible.")
    no_figures = ToolResult(True, {}, "Encontré: Corte de cabello.", answers=True)
    checked = ReplyGuard(1500).check(reply, "stop", context(not_asked, no_figures), may_retry=True)
    assert (checked.text, checked.actions) == (reply, [])


def _taken_at_three() -> ToolResult:
    slot = Slot.at(date(2026, 12, 1), time(15, 0), ZoneInfo("America/Lima"), 30)
    alternative = Slot.at(date(2026, 12, 1), time(9, 0), ZoneInfo("America/Lima"), 30)
    return verdict_result(SlotVerdict(slot, SlotProblem.TAKEN, (alternative,)))


def test_a_reply_that_does_not_tell_the_hour_asked_is_taken_gets_the_alternatives() -> None:
    # Seen with a 1.5B model: 15:00 was taken, and the customer was only asked for their data.
    taken = _taken_at_three()
    checked = ReplyGuard(1500).check(
        "¡Perfecto! ¿Me das tu nombre y correo?", "stop", context(taken), may_retry=True
    )
    assert checked.text == taken.customer_text
    assert checked.actions == ["replaced_untold"]


@pytest.mark.parametrize(
    "reply", ["A las 3 está ocupado; ¿te sirve a las 9?", "Tengo libre a las 09:00, ¿te sirve?"]
)
def test_a_reply_offering_an_alternative_found_is_kept(reply: str) -> None:
    checked = ReplyGuard(1500).check(reply, "stop", context(_taken_at_three()), may_retry=True)
    assert (checked.text, checked.actions) == (reply, [])


def test_facts_left_out_of_a_reply_that_told_something_else_are_added() -> None:
    reply = "El martes a las 15:00 está libre."
    price = ToolResult(True, {}, "Encontré: Limpieza dental (servicio): S/ 80.00.", answers=True)
    checked = ReplyGuard(1500).check(reply, "stop", context(price), may_retry=True)
    assert checked.text == f"{reply}\n\n{price.customer_text}"
    assert checked.actions == ["added_untold"]


def test_a_reference_code_is_not_a_figure_the_reply_carries() -> None:
    # "279" inside "C279CC" is not the day or the hour of the appointment.
    checked = ReplyGuard(1500).check(
        "Tu referencia es C279CC.", "stop", context(MY_BOOKINGS), may_retry=True
    )
    assert checked.actions == ["replaced_untold"]


def test_an_empty_answer_is_retried_once_then_replaced_from_the_facts() -> None:
    guard = ReplyGuard(1500)
    told = ToolResult(True, {}, "El martes 1 de diciembre a las 15:00 está disponible.")
    assert guard.check("  ", "stop", context(told), may_retry=True).correction is not None
    assert guard.check("", "stop", context(told), may_retry=False).text == told.customer_text
    assert guard.check(None, "stop", context(), may_retry=False).text == EMPTY_REPLY
    after_booking = guard.check("", "stop", context(booked=True), may_retry=False)
    assert after_booking.text == CONFIRMATION


def test_a_cut_off_answer_is_retried_then_kept_bounded() -> None:
    guard, ctx = ReplyGuard(200), context()
    cut = " ".join(f"El martes a las {9 + i % 8}:{i:02d} está libre." for i in range(20))
    assert guard.check(cut, "length", ctx, may_retry=True).correction == CORRECTIONS["length"]
    kept = guard.check(cut, "length", ctx, may_retry=False)
    assert kept.correction is None and len(kept.text) <= 200
    assert kept.text.endswith(".")


def test_a_long_reply_is_cut_after_a_sentence_and_keeps_the_booking_link() -> None:
    long_text = " ".join(f"Esta es la frase número {i} de una respuesta larga." for i in range(40))
    checked = ReplyGuard(400).check(long_text, "stop", context(booked=True), may_retry=True)
    assert len(checked.text) <= 400 + 2  # the separator before the details
    assert checked.text.endswith(CONFIRMATION)
    assert "truncated" in checked.actions


FREE = ToolResult(
    True,
    {"disponible": True, "fecha": "2026-12-04", "hora": "15:00"},
    "El viernes 4 de diciembre a las 15:00 está disponible.",
)


@pytest.mark.parametrize(
    "refusal",
    [
        # Seen with a 1.5B model at 7f6b96a (cases 02, 06, 09), each after a check that found
        # the slot the customer asked for free.
        "Lo siento, pero no puedo ayudarte con eso.",
        "Lo siento, no puedo ayudar con eso.",
        "Lo siento, pero no tengo una respuesta para esa solicitud.",
        "Lo siento, pero no recibí ninguna respuesta. Por favor, intenta de nuevo.",
    ],
)
def test_a_refusal_after_a_slot_found_free_tells_the_slot_and_the_step_that_books_it(
    refusal: str,
) -> None:
    checked = ReplyGuard(1500).check(refusal, "stop", context(FREE), may_retry=False)
    assert checked.text == f"{FREE.customer_text}\n\n{DATA_REQUEST}"
    assert checked.actions == ["answered_free_slot"]


def test_a_slot_found_free_asks_only_for_the_data_the_customer_has_not_written() -> None:
    ctx = context(FREE)
    ctx.customer.add("Soy Andrés Huamán")
    checked = ReplyGuard(1500).check("No puedo ayudarte con eso.", "stop", ctx, may_retry=False)
    assert checked.text == (
        f"{FREE.customer_text}\n\nPara reservar tu cita necesito tu correo electrónico. "
        "¿Me lo escribes, por favor?"
    )
    ctx.customer.add("andres.huaman@gmail.com")
    checked = ReplyGuard(1500).check("No puedo ayudarte con eso.", "stop", ctx, may_retry=False)
    assert checked.text == FREE.customer_text


def test_a_reply_that_tells_the_free_slot_is_kept() -> None:
    told = "¡Sí! El viernes a las 15:00 está libre. ¿Me das tu nombre y correo?"
    checked = ReplyGuard(1500).check(told, "stop", context(FREE), may_retry=False)
    assert (checked.text, checked.actions) == (told, [])
