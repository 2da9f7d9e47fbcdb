"""`list_my_bookings`, `cancel_booking`, `reschedule_booking`: the customer's own appointments.

The model names an appointment by the short reference `list_my_bookings` showed; the service
resolves it against this customer's own list only (see `citas/services/appointments.py`).
"""

from __future__ import annotations

from pydantic import Field

from citas.agent.tools.arguments import Arguments, LocalDate, LocalTime
from citas.agent.tools.availability import customer_when_conflict, slot_facts, verdict_result
from citas.agent.tools.context import Booked, ToolServices, TurnContext
from citas.agent.tools.result import ToolResult, failure
from citas.datetext import describe_day, describe_slot
from citas.domain import Slot
from citas.services.appointments import Appointment, ChangeOutcome, ChangeProblem

LIST_DESCRIPTION = (
    "Muestra las próximas citas del cliente de esta conversación, con una referencia corta "
    "para cada una. Úsala cuando el cliente pregunte por sus citas o quiera cancelar o "
    "cambiar una."
)
CANCEL_DESCRIPTION = (
    "Cancela una cita del cliente, con la referencia que dio list_my_bookings. La primera vez "
    "devuelve un resumen para que el cliente confirme; cuando confirme, llámala de nuevo igual."
)
RESCHEDULE_DESCRIPTION = (
    "Cambia una cita del cliente (referencia de list_my_bookings) a otra fecha y hora. La "
    "primera vez devuelve un resumen para que el cliente confirme; cuando confirme, llámala de "
    "nuevo con los mismos datos."
)
USE_REFERENCE = (
    "Para cancelar o cambiar una de estas citas usa su referencia exacta con cancel_booking o "
    "reschedule_booking. Nunca inventes una referencia."
)
UNKNOWN_REFERENCE = (
    "Esa referencia no es de ninguna cita de este cliente: no se cambió nada. Llama a "
    "list_my_bookings y usa una referencia de su resultado; nunca inventes una."
)
NO_PHONE = (
    "Esta conversación no tiene un número de teléfono con el que buscar las citas del cliente. "
    "Ofrécele comunicarlo con una persona (request_human)."
)
CANCEL_PENDING = (
    "AÚN NO ESTÁ CANCELADA. Muestra este resumen al cliente y pregúntale si confirma. Solo si "
    "responde que sí, vuelve a llamar a cancel_booking con la misma referencia."
)
RESCHEDULE_PENDING = (
    "AÚN NO SE CAMBIÓ. Muestra este resumen al cliente y pregúntale si confirma. Solo si "
    "responde que sí, vuelve a llamar a reschedule_booking con los mismos datos."
)
CANCELLED = "La cita quedó cancelada: díselo al cliente con la fecha y la hora."
RESCHEDULED = "La cita quedó cambiada: díselo al cliente con la nueva fecha, la hora y el enlace."
TOO_LATE = (
    "No la canceles ni digas que se canceló. Explica el motivo; si el cliente insiste, ofrece "
    "comunicarlo con una persona (request_human)."
)


class ListMyBookingsArgs(Arguments):
    pass


Reference = Field(
    min_length=1,
    max_length=40,
    description="La referencia de la cita tal como la dio list_my_bookings (por ejemplo C1A2B3).",
)


class CancelBookingArgs(Arguments):
    reference: str = Reference
    reason: str | None = Field(
        None, max_length=300, description="El motivo que dio el cliente; omítelo si no lo dijo."
    )


class RescheduleBookingArgs(Arguments):
    reference: str = Reference
    date: LocalDate
    time: LocalTime


def appointment_facts(appointment: Appointment) -> dict[str, str]:
    return {"referencia": appointment.reference, **slot_facts(appointment.slot)}


async def list_my_bookings(
    services: ToolServices, ctx: TurnContext, args: ListMyBookingsArgs
) -> ToolResult:
    found = await services.appointments.upcoming(ctx.tenant, ctx.key)
    if found is None:
        return failure("no_phone", NO_PHONE, "No puedo ver tus citas desde este chat.")
    if not found:
        return ToolResult(
            True,
            {"citas": []},
            customer_text="No encontré citas próximas a tu nombre en este número.",
        )
    lines = [f"• {describe_slot(a.slot.start)} (referencia {a.reference})" for a in found]
    return ToolResult(
        True,
        {"citas": [{**appointment_facts(a), "titulo": a.title} for a in found]},
        customer_text="Tus próximas citas:\n" + "\n".join(lines),
        instruction=USE_REFERENCE,
        answers=True,
    )


async def cancel_booking(
    services: ToolServices, ctx: TurnContext, args: CancelBookingArgs
) -> ToolResult:
    outcome = await services.appointments.cancel(
        ctx.tenant, ctx.key, ctx.ledger, args.reference, args.reason, turn_id=ctx.turn_id
    )
    refused = _refused(services, outcome, "cancelar")
    if refused is not None:
        return refused
    assert outcome.appointment is not None
    when = describe_slot(outcome.appointment.slot.start)
    facts = appointment_facts(outcome.appointment)
    if outcome.pending:
        pending = ToolResult(
            True,
            {"cancelada": False, "pendiente_confirmacion": True, **facts},
            customer_text=f"¿Confirmas que cancelo tu cita del {when}?",
            instruction=CANCEL_PENDING,
        )
        ctx.pending = pending
        return pending
    text = (
        f"Tu cita del {when} ya estaba cancelada."
        if outcome.deduplicated
        else f"Listo, tu cita del {when} quedó cancelada."
    )
    return ToolResult(
        True,
        {"cancelada": True, "ya_existia": outcome.deduplicated, **facts},
        customer_text=text,
        instruction=CANCELLED,
    )


async def reschedule_booking(
    services: ToolServices, ctx: TurnContext, args: RescheduleBookingArgs
) -> ToolResult:
    conflict = customer_when_conflict(ctx, args.date, args.time, moving=True)
    if conflict is not None:
        return conflict
    tenant = ctx.tenant
    new = Slot.at(args.date, args.time, tenant.zone, tenant.duration_minutes)
    outcome = await services.appointments.reschedule(
        tenant, ctx.key, ctx.ledger, args.reference, new.start, turn_id=ctx.turn_id
    )
    refused = _refused(services, outcome, "cambiar")
    if refused is not None:
        return refused
    assert outcome.appointment is not None and outcome.new_slot is not None
    old = describe_slot(outcome.appointment.slot.start)
    slot = outcome.new_slot
    if outcome.refusal is not None:
        verdict = verdict_result(outcome.refusal)
        return ToolResult(
            False,
            {**verdict.facts, "reprogramada": False, "referencia": outcome.appointment.reference},
            verdict.customer_text,
            verdict.instruction,
            error="not_bookable",
            answers=True,  # why not, and the alternatives: what the customer asked to know
        )
    if outcome.pending:
        pending = ToolResult(
            True,
            {
                "reprogramada": False,
                "pendiente_confirmacion": True,
                "referencia": outcome.appointment.reference,
                **slot_facts(slot),
            },
            customer_text=f"Tu cita del {old} pasaría al {describe_slot(slot.start)}. "
            "¿Confirmo el cambio?",
            instruction=RESCHEDULE_PENDING,
        )
        ctx.pending = pending
        return pending
    when = describe_slot(slot.start)
    link = f" Enlace de la reunión: {outcome.url}" if outcome.url else ""
    text = (
        f"Tu cita ya estaba en el {when}.{link}"
        if outcome.deduplicated
        else f"¡Listo! Tu cita quedó reprogramada para el {when}.{link}"
    )
    ctx.booking_url = outcome.url
    start = slot.start
    ctx.booked.append(Booked(describe_day(start.date()), f"{start:%H:%M}", outcome.url, text))
    return ToolResult(
        True,
        {
            "reprogramada": True,
            "ya_existia": outcome.deduplicated,
            "referencia": outcome.appointment.reference,
            "url": outcome.url,
            **slot_facts(slot),
        },
        customer_text=text,
        instruction=RESCHEDULED,
    )


def _refused(services: ToolServices, outcome: ChangeOutcome, verb: str) -> ToolResult | None:
    problem = outcome.problem
    if problem is None:
        return None
    if problem == ChangeProblem.NO_PHONE:
        return failure("no_phone", NO_PHONE, "No puedo ver tus citas desde este chat.")
    if problem == ChangeProblem.NOT_FOUND:
        return failure(
            "unknown_reference", UNKNOWN_REFERENCE, "No encontré esa cita entre las tuyas."
        )
    assert outcome.appointment is not None
    when = describe_slot(outcome.appointment.slot.start)
    facts = appointment_facts(outcome.appointment)
    if problem == ChangeProblem.PAST:
        text = f"Tu cita del {when} ya pasó, así que no se puede {verb}."
    elif problem == ChangeProblem.TOO_LATE:
        notice = _notice_words(int(services.appointments.cancel_min_notice.total_seconds() // 60))
        text = (
            f"Tu cita del {when} ya no se puede cancelar por este chat: las cancelaciones se "
            f"hacen con al menos {notice} de anticipación."
        )
    else:
        text = f"Tu cita del {when} está cancelada, así que no se puede {verb}."
    return ToolResult(False, facts, text, TOO_LATE, error=problem)


def _notice_words(minutes: int) -> str:
    if minutes % 60 == 0 and minutes >= 60:
        hours = minutes // 60
        return "1 hora" if hours == 1 else f"{hours} horas"
    return f"{minutes} minutos"
