"""`create_booking`: book a verified slot exactly once, and say what happened."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from citas.agent.tools.arguments import Arguments, Email, LocalDate, LocalTime, PersonName, Phone
from citas.agent.tools.availability import slot_brief, verdict_result
from citas.agent.tools.context import ToolServices, TurnContext
from citas.domain import Slot
from citas.services.booking import BookingRequest, Customer

DESCRIPTION = (
    "Reserva la cita en un horario ya verificado con check_availability. Requiere nombre y "
    "correo del cliente. Devuelve la confirmación y el enlace."
)


class CreateBookingArgs(Arguments):
    date: LocalDate
    time: LocalTime
    customer_name: PersonName
    customer_email: Email
    customer_phone: Phone = None
    service: str | None = Field(None, max_length=120, description="Servicio solicitado")
    notes: str | None = Field(None, max_length=500, description="Notas para el negocio")


async def create_booking(
    services: ToolServices, ctx: TurnContext, args: CreateBookingArgs
) -> dict[str, Any]:
    tenant = ctx.tenant
    request = BookingRequest(
        slot=Slot.at(args.date, args.time, tenant.zone, tenant.duration_minutes),
        customer=Customer(args.customer_name, args.customer_email, args.customer_phone),
        service=args.service,
        notes=args.notes,
    )
    outcome = await services.booking.book(tenant, ctx.key, ctx.ledger, request)
    if outcome.unverified:
        return {
            "ok": False,
            "reservado": False,
            "mensaje": "No se reservó: ese horario no se verificó en esta conversación. Antes "
            "de reservar, consulta ese horario con check_availability y confírmalo con el cliente.",
        }
    if outcome.refusal is not None:
        return {**verdict_result(outcome.refusal), "reservado": False}
    confirmation = outcome.confirmation
    assert confirmation is not None
    ctx.booking_url = confirmation.url
    what = "Esta cita ya estaba registrada" if outcome.deduplicated else "Cita confirmada"
    link = f" Enlace de la reunión: {confirmation.url}" if confirmation.url else ""
    return {
        "ok": True,
        "reservado": True,
        "ya_existia": outcome.deduplicated,
        "id_evento": confirmation.event_id,
        "url": confirmation.url,
        **slot_brief(request.slot),
        "mensaje": f"{what} para {confirmation.customer_name} el {request.slot.describe()}.{link}",
    }
