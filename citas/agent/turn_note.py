"""What the model is told each turn about where the conversation stands, after the clock: the
customer data the customer wrote, and the booking waiting for their yes.

Both are in the history already, but small models lose them there: they invent "John Doe" with
the customer's name a few lines up, and answer "Sí, confírmala" with the summary again instead of
the second `create_booking`. Said plainly in the turn's note, with the exact arguments, the right
call is the easy one. The note sits after the history, so the cached prompt prefix is unchanged.
"""

from __future__ import annotations

from typing import Any

from citas.agent.follow_through import confirming_arguments
from citas.conversation import Conversation
from citas.datetext import describe_slot
from citas.domain import Tenant, local_time


def conversation_note(conversation: Conversation, tenant: Tenant) -> str:
    awaiting = conversation.ledger.awaiting
    if awaiting is not None:
        return _awaiting_note(awaiting)
    customer = conversation.customer
    written = {"nombre": customer.latest_name(), "correo": customer.latest_email()}
    if not tenant.email_required:
        del written["correo"]
    known = [f"{what} «{value}»" for what, value in written.items() if value]
    missing = [what for what, value in written.items() if not value]
    lines = []
    if known:
        lines.append(f"Datos que escribió el cliente: {', '.join(known)}.")
    if missing:
        lines.append(
            f"El cliente aún no escribió su {' ni su '.join(missing)}: pídeselo cuando quiera "
            "reservar; nunca lo inventes."
        )
    return "\n".join(lines)


def _awaiting_note(awaiting: dict[str, Any]) -> str:
    arguments = confirming_arguments(awaiting)
    call = ", ".join(f"{name} «{value}»" for name, value in arguments.items())
    start = local_time(str(awaiting["slot"]))
    return (
        f"Reserva propuesta, esperando que el cliente la confirme: {describe_slot(start)}. Si el "
        f"cliente dice que sí, llama a create_booking con {call}. Si pide otro día u hora, "
        "consúltalo primero con check_availability."
    )
