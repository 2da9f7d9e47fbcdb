"""`check_availability`: whether a slot can be booked, or a day's free slots, in words."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pydantic import Field

from citas.agent.tools.arguments import Arguments, LocalDate, LocalTime
from citas.agent.tools.context import ToolServices, TurnContext
from citas.domain import Slot
from citas.services.availability import DayListing, SlotVerdict

DESCRIPTION = (
    "Consulta si una fecha y hora se puede reservar (en el futuro, dentro del horario de "
    "atención y libre en el calendario) y ofrece alternativas; sin hora, lista los horarios "
    "libres de ese día."
)


class CheckAvailabilityArgs(Arguments):
    date: LocalDate
    time: LocalTime | None = Field(
        None, description="Hora HH:MM; sin ella se listan los horarios libres de ese día"
    )


async def check_availability(
    services: ToolServices, ctx: TurnContext, args: CheckAvailabilityArgs
) -> dict[str, Any]:
    tenant = ctx.tenant
    if args.time is None:
        return listing_result(await services.booking.list_day(tenant, ctx.ledger, args.date))
    slot = Slot.at(args.date, args.time, tenant.zone, tenant.duration_minutes)
    return verdict_result(await services.booking.check_slot(tenant, ctx.ledger, slot))


def slot_brief(slot: Slot) -> dict[str, str]:
    return {"fecha": f"{slot.start:%Y-%m-%d}", "hora": f"{slot.start:%H:%M}"}


def verdict_result(verdict: SlotVerdict) -> dict[str, Any]:
    slot = verdict.slot
    if verdict.problem is None:
        return {
            "ok": True,
            "disponible": True,
            **slot_brief(slot),
            "mensaje": f"El {slot.describe()} está disponible.",
        }
    return {
        "ok": True,
        "disponible": False,
        **slot_brief(slot),
        "motivo": verdict.problem.value,
        "alternativas": [slot_brief(s) for s in verdict.alternatives],
        "mensaje": f"El {slot.describe()} no se puede reservar: {verdict.problem.value}. "
        + _offer_text(verdict.alternatives),
    }


def listing_result(listing: DayListing) -> dict[str, Any]:
    if listing.slots:
        times = ", ".join(f"{s.start:%H:%M}" for s in listing.slots)
        return {
            "ok": True,
            "fecha": listing.day.isoformat(),
            "horarios_libres": [f"{s.start:%H:%M}" for s in listing.slots],
            "mensaje": f"Horarios libres el {listing.day.isoformat()}: {times}.",
        }
    reason = listing.problem.value if listing.problem else "no quedan horarios libres"
    return {
        "ok": True,
        "fecha": listing.day.isoformat(),
        "horarios_libres": [],
        "motivo": reason,
        "alternativas": [slot_brief(s) for s in listing.alternatives],
        "mensaje": f"El {listing.day.isoformat()} no hay horarios: {reason}. "
        + _offer_text(listing.alternatives),
    }


def _offer_text(alternatives: Iterable[Slot]) -> str:
    offers = [s.describe() for s in alternatives]
    return (
        ("Horarios disponibles cercanos: " + "; ".join(offers) + ".")
        if offers
        else ("No encontré horarios libres cercanos; pide al cliente otra fecha.")
    )
