"""Whether a slot can be booked, and which real slots to offer instead.

Owns the `CONSULTAR_DISPONIBILIDAD` and `SUGERIR_HORARIOS` wire formats.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

import structlog

from citas.backend import BackendClient
from citas.clock import Clock
from citas.domain import OpeningHours, Slot, SlotProblem, SlotRules, Tenant, parse_local
from citas.services.business import BusinessDirectory

log = structlog.get_logger("citas.availability")

MAX_ALTERNATIVES = 5
_SUGGESTIONS_ASKED = 20
_DAY_LISTING_ASKED = 48


@dataclass(frozen=True, slots=True)
class SlotVerdict:
    """The answer about one requested slot: bookable, or why not and what instead."""

    slot: Slot
    problem: SlotProblem | None
    alternatives: tuple[Slot, ...] = ()

    @property
    def bookable(self) -> bool:
        return self.problem is None


@dataclass(frozen=True, slots=True)
class DayListing:
    """The free slots of a date, or why the date has none (then alternatives on other days)."""

    day: date
    slots: tuple[Slot, ...]
    problem: SlotProblem | None = None
    alternatives: tuple[Slot, ...] = ()


class AvailabilityService:
    def __init__(
        self,
        client: BackendClient,
        calendar_url: str | None,
        directory: BusinessDirectory,
        rules: SlotRules,
        clock: Clock,
    ) -> None:
        self._client = client
        self._url = calendar_url
        self._directory = directory
        self.rules = rules
        self._clock = clock

    def now(self, tenant: Tenant) -> datetime:
        return self._clock().astimezone(tenant.zone)

    async def check_slot(self, tenant: Tenant, slot: Slot) -> SlotVerdict:
        """Rules first (no backend call for a slot they refuse), then the calendar."""
        hours = (await self._directory.get(tenant.id_empresa)).hours
        now = self.now(tenant)
        problem = self.rules.problem(slot, hours, now)
        if problem is None and not await self.is_free(tenant, slot):
            problem = SlotProblem.TAKEN
        if problem is None:
            return SlotVerdict(slot, None)
        alternatives = await self.alternatives(tenant, slot, hours, now)
        return SlotVerdict(slot, problem, alternatives)

    async def offer_instead(self, tenant: Tenant, slot: Slot) -> tuple[Slot, ...]:
        hours = (await self._directory.get(tenant.id_empresa)).hours
        return await self.alternatives(tenant, slot, hours, self.now(tenant))

    async def list_day(self, tenant: Tenant, day: date) -> DayListing:
        hours = (await self._directory.get(tenant.id_empresa)).hours
        now = self.now(tenant)
        problem = self._day_problem(day, hours, now)
        slots: tuple[Slot, ...] = ()
        if problem is None:
            found = await self.suggest(tenant, day, _DAY_LISTING_ASKED)
            slots = tuple(
                s
                for s in found
                if s.start.date() == day and self.rules.problem(s, hours, now) is None
            )
        if slots:
            return DayListing(day, slots)
        day_start = datetime.combine(day, time(0), tzinfo=tenant.zone)
        near = Slot(max(day_start, now), timedelta(minutes=tenant.duration_minutes))
        alternatives = await self.alternatives(tenant, near, hours, now)
        return DayListing(day, (), problem or SlotProblem.TAKEN, alternatives)

    async def alternatives(
        self, tenant: Tenant, near: Slot, hours: OpeningHours, now: datetime
    ) -> tuple[Slot, ...]:
        """Up to 5 bookable slots, nearest to `near` first: its date, then the next open day."""
        first_day = max(near.start.date(), now.date())
        last_day = (now + self.rules.horizon).date()
        found: dict[datetime, Slot] = {}
        for day in _open_days(first_day, last_day, hours, limit=2):
            for slot in await self.suggest(tenant, day, _SUGGESTIONS_ASKED):
                if self.rules.problem(slot, hours, now) is None and slot != near:
                    found.setdefault(slot.start, slot)
            if len(found) >= MAX_ALTERNATIVES:
                break
        ranked = sorted(found.values(), key=lambda s: (abs(s.start - near.start), s.start))
        return tuple(ranked[:MAX_ALTERNATIVES])

    def _day_problem(self, day: date, hours: OpeningHours, now: datetime) -> SlotProblem | None:
        if day < now.date():
            return SlotProblem.PAST
        if day > (now + self.rules.horizon).date():
            return SlotProblem.TOO_FAR
        if not hours.ranges_on(day):
            return SlotProblem.CLOSED_DAY
        return None

    async def is_free(self, tenant: Tenant, slot: Slot) -> bool:
        answer = await self._client.call(
            self._url,
            "CONSULTAR_DISPONIBILIDAD",
            {
                "id_empresa": tenant.id_empresa,
                "usuario_id": tenant.usuario_id,
                "fecha_inicio": slot.local_start,
                "fecha_fin": slot.local_end,
            },
        )
        return answer.get("disponible") is True

    async def suggest(self, tenant: Tenant, day: date, count: int) -> list[Slot]:
        answer = await self._client.call(
            self._url,
            "SUGERIR_HORARIOS",
            {
                "id_empresa": tenant.id_empresa,
                "usuario_id": tenant.usuario_id,
                "fecha": day.isoformat(),
                "duracion_minutos": tenant.duration_minutes,
                "cantidad": count,
            },
        )
        return _parse_suggestions(answer.get("horarios"), tenant)


def _open_days(first: date, last: date, hours: OpeningHours, limit: int) -> list[date]:
    days: list[date] = []
    day = first
    while day <= last and len(days) < limit:
        if hours.ranges_on(day):
            days.append(day)
        day += timedelta(days=1)
    return days


def _parse_suggestions(raw: Any, tenant: Tenant) -> list[Slot]:
    slots = []
    for entry in raw if isinstance(raw, list) else []:
        try:
            start = parse_local(entry["fecha_inicio"], tenant.zone)
        except (KeyError, TypeError, ValueError) as exc:
            log.warning("suggestion_ignored", entry=str(entry), error=str(exc))
            continue
        # The tenant's duration, not the backend's end: the rules judge the slot we would book.
        slots.append(Slot(start, timedelta(minutes=tenant.duration_minutes)))
    return slots
