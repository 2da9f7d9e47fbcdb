"""The turn's note after the clock: the customer data the customer wrote, and the booking
waiting for their yes, with the exact arguments that confirm it."""

from __future__ import annotations

from dataclasses import replace
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from citas.agent.turn_note import conversation_note
from citas.config import Settings
from citas.conversation import Conversation
from citas.domain import Tenant
from citas.sandbox import RunningSandbox
from citas.testing import ModelScript, call, reply
from tests.conftest import ChatFn

TENANT = Tenant(12, ZoneInfo("America/Lima"), 30, 7)
SLOT = {"date": "2026-12-01", "time": "15:00"}
BOOKING = {**SLOT, "customer_name": "Ana Pérez", "customer_email": "ana.perez@example.com"}


def note_of(request: dict[str, Any]) -> str:
    """The turn's note as sent: the system message after the prompt, without the clock."""
    notes = [m["content"] for m in request["messages"][1:] if m["role"] == "system"]
    return str(notes[-1]).split("\n\n", 1)[1]


def test_the_note_says_what_the_customer_wrote_and_what_is_still_missing() -> None:
    conversation = Conversation()
    assert conversation_note(conversation, TENANT) == (
        "El cliente aún no escribió su nombre ni su correo: pídeselo cuando quiera reservar; "
        "nunca lo inventes."
    )
    conversation.customer.add("Me llamo Ana Pérez")
    assert conversation_note(conversation, TENANT) == (
        "Datos que escribió el cliente: nombre «Ana Pérez».\n"
        "El cliente aún no escribió su correo: pídeselo cuando quiera reservar; nunca lo inventes."
    )
    conversation.customer.add("ana.perez@example.com")
    assert conversation_note(conversation, TENANT) == (
        "Datos que escribió el cliente: nombre «Ana Pérez», correo «ana.perez@example.com»."
    )
    no_email = replace(TENANT, email_required=False)
    assert conversation_note(Conversation(), no_email) == (
        "El cliente aún no escribió su nombre: pídeselo cuando quiera reservar; nunca lo inventes."
    )


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.with_updates(confirm_before_booking=True)


async def test_a_proposal_is_told_each_turn_with_its_arguments_until_it_is_made(
    chat: ChatFn, llm: ModelScript, sandbox: RunningSandbox
) -> None:
    llm.add(call("check_availability", SLOT), call("create_booking", BOOKING), reply("¿Confirmas?"))
    await chat("Mañana a las 3 pm. Soy Ana Pérez, ana.perez@example.com")
    llm.add(reply("¿Confirmas la cita?"))
    await chat("Mmm, déjame ver")
    awaiting = note_of(llm.requests[-1])
    proposal = "Reserva propuesta, esperando que el cliente la confirme: martes 1 de diciembre"
    assert awaiting.startswith(f"{proposal} a las 15:00.")
    assert (
        "llama a create_booking con date «2026-12-01», time «15:00», customer_name «Ana Pérez», "
        "customer_email «ana.perez@example.com»." in awaiting
    )
    llm.add(call("create_booking", BOOKING), reply("¡Listo!"))
    await chat("Sí, confírmala")
    assert len(sandbox.backend.calls_of("CREAR_EVENTO")) == 1
    llm.add(reply("De nada."))
    await chat("Gracias")
    assert note_of(llm.requests[-1]) == (
        "Datos que escribió el cliente: nombre «Ana Pérez», correo «ana.perez@example.com»."
    )


def test_the_proposal_outlives_the_store_and_ends_when_booked() -> None:
    conversation = Conversation()
    awaiting = {"slot": "2026-12-01 15:00:00", "name": "Ana Pérez", "email": "a@x.com"}
    conversation.ledger.propose("k1", "turn-1", {**awaiting, "service": None})
    again = Conversation.from_dict(conversation.to_dict())
    assert again.ledger.awaiting == {"key": "k1", **awaiting, "service": None}
    assert again.ledger.copy().awaiting == again.ledger.awaiting
    again.ledger.record_booking("other", {})
    assert again.ledger.awaiting is not None
    again.ledger.record_booking("k1", {})
    assert again.ledger.awaiting is None
    old = conversation.to_dict()
    del old["awaiting"]  # saved before the field existed
    assert Conversation.from_dict(old).ledger.awaiting is None
