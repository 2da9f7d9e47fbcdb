"""`check_availability`: whether a slot can be booked, or a day's free slots, in words."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from datetime import date, time
from typing import Any

from pydantic import Field

from citas.agent.follow_through import day_moved_to, named_when
from citas.agent.tools.arguments import Arguments, LocalDate, LocalTime
from citas.agent.tools.context import ToolServices, TurnContext
from citas.agent.tools.result import ToolResult, failure
from citas.datetext import describe_day, describe_slot
from citas.domain import Slot
from citas.services.availability import DayListing, SlotVerdict

DESCRIPTION = (
    "Consulta si una fecha y hora se puede reservar (en el futuro, dentro del horario de "
    "atención y libre en el calendario) y ofrece alternativas; sin hora, lista los horarios "
    "libres de ese día."
)
OFFER_ONLY_THESE = "Ofrece al cliente solo estos horarios; no propongas otros."
NEXT_STEP = (
    "Si el cliente quiere este horario y ya escribió su nombre y apellido y su correo, llama a "
    "create_booking; si no, pídele lo que falte."
)

SERVICE_FIELD = Field(
    None,
    max_length=120,
    description="El servicio que pidió el cliente, con su nombre de la lista de servicios "
    "(algunos duran más que otros); omítelo si no lo dijo.",
)


class CheckAvailabilityArgs(Arguments):
    date: LocalDate
    time: LocalTime | None = Field(
        None,
        description="La hora que pidió el cliente (HH:MM de 24 horas o sus palabras); omítela "
        "para listar los horarios libres de ese día.",
    )
    service: str | None = SERVICE_FIELD


async def check_availability(
    services: ToolServices, ctx: TurnContext, args: CheckAvailabilityArgs
) -> ToolResult:
    conflict = customer_when_conflict(ctx, args.date, args.time)
    if conflict is not None:
        return conflict
    tenant = ctx.tenant_for(args.service)
    if args.time is None:
        result = listing_result(await services.booking.list_day(tenant, ctx.ledger, args.date))
    else:
        slot = Slot.at(args.date, args.time, tenant.zone, tenant.duration_minutes)
        verdict = await services.booking.check_slot(tenant, ctx.ledger, slot, args.service)
        result = verdict_result(verdict)
    contact = ctx.customer.contact
    if contact and result.facts.get("disponible") is True:
        result = replace(
            result,
            facts={**result.facts, "cliente_conocido": contact},
            instruction=_offer_back(contact),
        )
    if tenant is not ctx.tenant:
        result = replace(
            result, facts={**result.facts, "duracion_minutos": tenant.duration_minutes}
        )
    return result


def _offer_back(contact: dict[str, str]) -> str:
    """A returning customer: the data of their last booking, offered back, not asked again."""
    who = contact["nombre"] + (f" ({contact['correo']})" if contact.get("correo") else "")
    return (
        f"El cliente ya dio sus datos en esta conversación: {who}. Si quiere este horario, "
        "pregúntale si reservas con esos mismos datos en vez de pedírselos de nuevo; si dice que "
        "sí, llama a create_booking con ellos."
    )


def customer_when_conflict(
    ctx: TurnContext, day: date, at: time | None, *, moving: bool = False
) -> ToolResult | None:
    """A refusal when the customer's message of this turn names one single day (or time) and
    the model asks about another: a model that reads «mañana» as today, or «las 5 de la tarde»
    as 15:00, books the wrong slot, the worst mistake there is. Nothing is said when the
    message names no day (time), or several. `moving` an appointment, the day is the one it
    goes to («del miércoles al jueves»: seen with a 1.5B model moving it to Friday)."""
    named_day, named_time = named_when(ctx.said, ctx.today)
    if moving:
        named_day = day_moved_to(ctx.said, ctx.today)
    if named_day is not None and named_day != day:
        right = f"{describe_day(named_day)} ({named_day.isoformat()})"
        return failure(
            "date_mismatch",
            f"El cliente pidió el {right}, no el {describe_day(day)} ({day.isoformat()}). "
            "Vuelve a llamar con la fecha que pidió el cliente.",
        )
    if at is not None and named_time is not None and named_time != at:
        return failure(
            "time_mismatch",
            f"El cliente pidió las {named_time:%H:%M}, no las {at:%H:%M}. "
            "Vuelve a llamar con la hora que pidió el cliente.",
        )
    return None


def slot_facts(slot: Slot) -> dict[str, str]:
    """The slot as the model should pass it back, and in words (echoed in every result)."""
    return {
        "fecha": f"{slot.start:%Y-%m-%d}",
        "hora": f"{slot.start:%H:%M}",
        "cuando": describe_slot(slot.start),
    }


def verdict_result(verdict: SlotVerdict) -> ToolResult:
    slot = verdict.slot
    if verdict.problem is None:
        return ToolResult(
            True,
            {"disponible": True, **slot_facts(slot)},
            customer_text=f"El {describe_slot(slot.start)} está disponible.",
            instruction=NEXT_STEP,
        )
    facts: dict[str, Any] = {
        "disponible": False,
        **slot_facts(slot),
        "motivo": verdict.problem.value,
        "alternativas": [slot_facts(s) for s in verdict.alternatives],
    }
    return ToolResult(
        True,
        facts,
        customer_text=f"El {facts['cuando']} no se puede reservar: {verdict.problem.value}. "
        + _offer_text(verdict.alternatives),
        instruction=OFFER_ONLY_THESE if verdict.alternatives else None,
        # Seen with a 1.5B model: the customer never told that the hour they asked was taken.
        answers=True,
    )


def listing_result(listing: DayListing) -> ToolResult:
    day = listing.day
    if listing.slots:
        times = [f"{s.start:%H:%M}" for s in listing.slots]
        return ToolResult(
            True,
            {"fecha": day.isoformat(), "cuando": _day_words(listing), "horarios_libres": times},
            customer_text=f"Horarios libres el {_day_words(listing)}: {', '.join(times)}.",
            instruction=OFFER_ONLY_THESE,
            answers=True,
        )
    reason = listing.problem.value if listing.problem else "no quedan horarios libres"
    facts: dict[str, Any] = {
        "fecha": day.isoformat(),
        "cuando": _day_words(listing),
        "horarios_libres": [],
        "motivo": reason,
        "alternativas": [slot_facts(s) for s in listing.alternatives],
    }
    return ToolResult(
        True,
        facts,
        customer_text=f"El {_day_words(listing)} no hay horarios: {reason}. "
        + _offer_text(listing.alternatives),
        instruction=OFFER_ONLY_THESE if listing.alternatives else None,
        answers=True,
    )


def _day_words(listing: DayListing) -> str:
    return describe_day(listing.day)


def _offer_text(alternatives: Iterable[Slot]) -> str:
    offers = [describe_slot(s.start) for s in alternatives]
    return (
        ("Horarios disponibles cercanos: " + "; ".join(offers) + ".")
        if offers
        else "No encontré horarios libres cercanos. ¿Te acomoda otra fecha?"
    )
