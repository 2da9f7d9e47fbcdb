"""`create_booking`: book a verified slot exactly once, with data the customer gave, after the
customer confirmed it; and say what happened."""

from __future__ import annotations

from pydantic import Field, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from citas.agent.follow_through import named_when
from citas.agent.tools.arguments import (
    Arguments,
    LocalDate,
    LocalTime,
    OptionalEmail,
    PersonName,
    Phone,
)
from citas.agent.tools.availability import (
    SERVICE_FIELD,
    customer_when_conflict,
    slot_facts,
    verdict_result,
)
from citas.agent.tools.context import Booked, ToolServices, TurnContext
from citas.agent.tools.result import ToolResult
from citas.datetext import UnclearWhen, describe_day, describe_slot, resolve_date, resolve_time
from citas.domain import Slot, local_time
from citas.services.booking import BookingRequest, Confirmation, Customer

DESCRIPTION = (
    "Reserva la cita en un horario ya consultado con check_availability, con el nombre y el "
    "correo que el cliente escribió. La primera vez devuelve un resumen para que el cliente lo "
    "confirme; cuando el cliente confirme, llámala de nuevo con los mismos datos para reservar."
)
UNVERIFIED = (
    "No se reservó: ese horario no se consultó en esta conversación. Consúltalo primero con "
    "check_availability."
)
PENDING = (
    "AÚN NO ESTÁ RESERVADA. Muestra este resumen al cliente y pregúntale si confirma. Solo si "
    "responde que sí, vuelve a llamar a create_booking con los mismos datos."
)
BOOKED = "La cita quedó reservada: díselo al cliente con la fecha, la hora y el enlace."


class CreateBookingArgs(Arguments):
    date: LocalDate
    time: LocalTime
    customer_name: PersonName
    customer_email: OptionalEmail = Field(None, validate_default=True)
    customer_phone: Phone = None
    service: str | None = SERVICE_FIELD
    notes: str | None = Field(
        None,
        max_length=500,
        description="Algo que el cliente pidió anotar para el negocio; omítelo si no pidió nada.",
    )

    @field_validator("customer_email")
    @classmethod
    def _email_unless_optional(cls, value: str | None, info: ValidationInfo) -> str | None:
        # Required unless the business does not need it (`correo_obligatorio: false`, passed by
        # the registry as the validation context `email_optional`).
        if value is None and not (info.context or {}).get("email_optional"):
            raise PydanticCustomError("missing", "Field required")
        return value


async def create_booking(
    services: ToolServices, ctx: TurnContext, args: CreateBookingArgs
) -> ToolResult:
    conflict = customer_when_conflict(ctx, args.date, args.time)
    if conflict is not None:
        return conflict
    tenant = ctx.tenant_for(args.service)
    slot = Slot.at(args.date, args.time, tenant.zone, tenant.duration_minutes)
    elsewhere = _another_than_wanted(ctx, slot)
    if elsewhere is not None:
        return elsewhere
    not_given = _not_given_by_customer(ctx, args)
    if not_given is not None:
        # The model meant to book this slot: the customer's data, when it comes, is for it.
        services.booking.want(ctx.ledger, slot, args.service, asked=_asked_by_customer(ctx, slot))
        return not_given
    request = BookingRequest(
        slot=slot,
        customer=Customer(
            args.customer_name,
            args.customer_email or "",
            # Without one, the booking service puts the session's WhatsApp number.
            args.customer_phone,
        ),
        service=args.service,
        notes=args.notes,
    )
    outcome = await services.booking.book(tenant, ctx.key, ctx.ledger, request, turn_id=ctx.turn_id)
    if outcome.unverified:
        return _not_booked("unverified_slot", UNVERIFIED)
    if outcome.refusal is not None:
        refused = verdict_result(outcome.refusal)
        return ToolResult(
            False,
            {**refused.facts, "reservado": False},
            refused.customer_text,
            refused.instruction,
            error="not_bookable",
        )
    # Offered back in a later check instead of asked again (see check_availability).
    ctx.customer.remember_contact(request.customer.name, request.customer.email)
    if outcome.pending:
        pending = _pending_result(request)
        ctx.pending = pending
        return pending
    assert outcome.confirmation is not None
    return _booked_result(ctx, request, outcome.confirmation, outcome.deduplicated)


def _not_given_by_customer(ctx: TurnContext, args: CreateBookingArgs) -> ToolResult | None:
    """A refusal when the name or email is not something the customer wrote (a model's guess,
    a placeholder, an argument description copied as a value). When the customer did write
    them ("me llamo …", an email), the refusal hands them to the model: small models invent
    data even with the right one a few lines up."""
    email = args.customer_email
    email_given = (
        ctx.customer.wrote_email(email)
        if email is not None
        else not ctx.tenant.email_required  # a business that does not need it
    )
    missing = [
        (what, written)
        for what, given, written in (
            (
                "su nombre y apellido",
                ctx.customer.wrote_name(args.customer_name),
                ctx.customer.latest_name(),
            ),
            ("su correo electrónico", email_given, ctx.customer.latest_email()),
        )
        if not given
    ]
    if not missing:
        return None
    refused = f"No se reservó: el cliente no escribió {' ni '.join(w for w, _ in missing)}. "
    if all(written for _, written in missing):
        found = ", ".join(f"{what.removeprefix('su ')} «{written}»" for what, written in missing)
        return _not_booked(
            "customer_data_not_given",
            f"{refused}Lo que el cliente sí escribió: {found}. Vuelve a llamar a create_booking "
            "con esos datos exactos; nunca inventes datos.",
        )
    return _not_booked(
        "customer_data_not_given",
        f"{refused}Pídeselo al cliente y usa exactamente lo que escriba; nunca inventes datos.",
        _data_request([what for what, _ in missing]),
    )


def data_request(ctx: TurnContext) -> str | None:
    """What the customer must still write to book (their name, their email where the business
    needs it), asked in their words; None when they wrote both."""
    missing = [
        what
        for what, written in (
            ("su nombre y apellido", ctx.customer.latest_name()),
            ("su correo electrónico", ctx.customer.latest_email() or not ctx.tenant.email_required),
        )
        if not written
    ]
    return _data_request(missing) if missing else None


def _data_request(missing: list[str]) -> str:
    asked = " y ".join(what.replace("su ", "tu ", 1) for what in missing)
    return f"Para reservar tu cita necesito {asked}. ¿Me lo escribes, por favor?"


def _another_than_wanted(ctx: TurnContext, slot: Slot) -> ToolResult | None:
    """A refusal of a booking for another slot than the one the customer asked for
    (`BookingLedger.wanted`) in a turn whose messages name no day or time. Seen with a 1.5B
    model (case 08): «en dos semanas, a las 9» found free, then, with the customer's name and
    email, a proposal for tomorrow at 10:00, which a customer answering «sí» would have
    booked."""
    wanted = ctx.ledger.wanted
    if wanted is None or wanted["slot"] == slot.local_start:
        return None
    if named_when(ctx.said, ctx.today) != (None, None):
        return None  # the customer may be naming another slot: `customer_when_conflict` judges
    start = local_time(str(wanted["slot"]))
    return _not_booked(
        "slot_mismatch",
        f"El cliente pidió el {describe_slot(start)}, no el {describe_slot(slot.start)}. "
        f"Vuelve a llamar a create_booking con la fecha {start:%Y-%m-%d} y la hora "
        f"{start:%H:%M}.",
    )


def _asked_by_customer(ctx: TurnContext, slot: Slot) -> bool:
    """Whether a message of this turn names exactly this day and time («mañana a las 3pm»)."""
    for text in ctx.said:
        try:
            if (resolve_date(text, ctx.today), resolve_time(text)) == (
                slot.start.date(),
                slot.start.time(),
            ):
                return True
        except UnclearWhen:
            continue
    return False


def _not_booked(error: str, instruction: str, customer_text: str | None = None) -> ToolResult:
    return ToolResult(False, {"reservado": False}, customer_text, instruction, error)


def _pending_result(request: BookingRequest) -> ToolResult:
    customer, slot = request.customer, request.slot
    service = f" para {request.service}" if request.service else ""
    return ToolResult(
        True,
        {
            "reservado": False,
            "pendiente_confirmacion": True,
            **slot_facts(slot),
            "nombre": customer.name,
            "correo": customer.email,
        },
        customer_text=f"Tu cita{service} sería el {describe_slot(slot.start)}, a nombre de "
        f"{customer.name}{f' ({customer.email})' if customer.email else ''}. ¿Confirmo la reserva?",
        instruction=PENDING,
    )


def _booked_result(
    ctx: TurnContext, request: BookingRequest, confirmation: Confirmation, deduplicated: bool
) -> ToolResult:
    when = describe_slot(request.slot.start)
    link = f" Enlace de la reunión: {confirmation.url}" if confirmation.url else ""
    what = "Esta cita ya estaba reservada" if deduplicated else "¡Listo! Tu cita quedó reservada"
    text = f"{what} para el {when}, a nombre de {confirmation.customer_name}.{link}"
    ctx.booking_url = confirmation.url
    start = request.slot.start
    ctx.booked.append(Booked(describe_day(start.date()), f"{start:%H:%M}", confirmation.url, text))
    return ToolResult(
        True,
        {
            "reservado": True,
            "ya_existia": deduplicated,
            "id_evento": confirmation.event_id,
            "url": confirmation.url,
            **slot_facts(request.slot),
        },
        customer_text=text,
        instruction=BOOKED,
    )
