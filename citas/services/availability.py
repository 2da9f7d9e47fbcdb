"""Whether a slot can be booked, and which real slots to offer instead.

Owns the `CONSULTAR_DISPONIBILIDAD` and `SUGERIR_HORARIOS` wire formats.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import structlog

from citas.backend import BackendClient
from citas.clock import Clock
from citas.domain import OpeningHours, Slot, SlotProblem, SlotRules, Tenant, parse_local
from citas.errors import BackendRejected
from citas.metrics import SWALLOWED_ERRORS
from citas.services.business import BusinessDirectory

log = structlog.get_logger("citas.availability")

MAX_ALTERNATIVES = 5
_SUGGESTIONS_ASKED = 20
_DAY_LISTING_ASKED = 48
_DAYS_ASKED = 3  # at most this many SUGERIR_HORARIOS calls for one set of alternatives
_DAYS_SEARCHED = 8  # a week each way finds an open day of any weekly schedule


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
    """The free slots of a date, or none: then `problem` says why (None: the day is full) and
    `alternatives` are the nearest slots on other days."""

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

    async def check_slot(
        self, tenant: Tenant, slot: Slot, *, ask_calendar: bool = True
    ) -> SlotVerdict:
        """Rules first (no backend call for a slot they refuse), then the calendar (unless
        `ask_calendar` is False: the rules alone)."""
        hours = (await self._directory.get(tenant.id_empresa)).hours
        now = self.now(tenant)
        problem = self.rules.problem(slot, hours, now)
        if problem is None and ask_calendar and not await self.is_free(tenant, slot):
            problem = SlotProblem.TAKEN
        if problem is None:
            return SlotVerdict(slot, None)
        alternatives = await self.alternatives(tenant, slot, hours, now)
        return SlotVerdict(slot, problem, alternatives)

    async def offer_instead(self, tenant: Tenant, slot: Slot) -> tuple[Slot, ...]:
        hours = (await self._directory.get(tenant.id_empresa)).hours
        return await self.alternatives(tenant, slot, hours, self.now(tenant))

    async def list_day(self, tenant: Tenant, day: date) -> DayListing:
        """The date's bookable free slots; when there are none, why and the nearest others."""
        hours = (await self._directory.get(tenant.id_empresa)).hours
        now = self.now(tenant)
        problem = self._day_problem(day, hours, now)
        slots: dict[datetime, Slot] = {}
        if problem is None:
            for slot in await self.suggest(tenant, day, _DAY_LISTING_ASKED):
                if slot.start.date() == day and self.rules.problem(slot, hours, now) is None:
                    slots.setdefault(slot.instant, slot)
        if slots:
            return DayListing(day, tuple(sorted(slots.values(), key=lambda s: s.instant)))
        # Nothing that day: offer what is nearest to its middle (or to now, if later).
        midday = datetime.combine(day, time(12), tzinfo=tenant.zone).astimezone(UTC)
        near = Slot(
            max(midday, now.astimezone(UTC)).astimezone(tenant.zone),
            timedelta(minutes=tenant.duration_minutes),
        )
        alternatives = await self.alternatives(tenant, near, hours, now)
        return DayListing(day, (), problem, alternatives)

    async def alternatives(
        self, tenant: Tenant, near: Slot, hours: OpeningHours, now: datetime
    ) -> tuple[Slot, ...]:
        """Up to 5 slots that pass the rules, nearest to `near` first (in real time), taken
        from `SUGERIR_HORARIOS` on the open days nearest to `near`'s date."""
        found: dict[datetime, Slot] = {}
        ranked: list[Slot] = []
        days = self._nearest_open_days(near.start.date(), hours, now)
        for index, day in enumerate(days):
            try:
                suggested = await self.suggest(tenant, day, _SUGGESTIONS_ASKED)
            except BackendRejected as exc:
                SWALLOWED_ERRORS.labels(where="alternatives").inc()
                log.warning("suggestions_refused", day=day.isoformat(), error=exc.message)
                continue
            for slot in suggested:
                if slot.instant != near.instant and self.rules.problem(slot, hours, now) is None:
                    found.setdefault(slot.instant, slot)
            ranked = sorted(
                found.values(), key=lambda s: (abs(s.instant - near.instant), s.instant)
            )
            if len(ranked) >= MAX_ALTERNATIVES:
                # Enough, unless a day not asked yet could still hold a nearer slot.
                worst = abs(ranked[MAX_ALTERNATIVES - 1].instant - near.instant)
                if all(_gap(later, near, tenant) >= worst for later in days[index + 1 :]):
                    break
        return tuple(ranked[:MAX_ALTERNATIVES])

    def _nearest_open_days(self, target: date, hours: OpeningHours, now: datetime) -> list[date]:
        """Open days between today and the horizon, nearest to `target` first (earlier first on
        a tie); a date outside that window is moved to its nearer end (past → today)."""
        first = now.date()
        last = self.rules.latest(now).astimezone(now.tzinfo).date()
        anchor = min(max(target, first), last)
        days: list[date] = []
        for offset in range(_DAYS_SEARCHED):
            for day in (anchor - timedelta(days=offset), anchor + timedelta(days=offset)):
                if first <= day <= last and hours.ranges_on(day) and day not in days:
                    days.append(day)
        return days[:_DAYS_ASKED]

    def _day_problem(self, day: date, hours: OpeningHours, now: datetime) -> SlotProblem | None:
        if day < now.date():
            return SlotProblem.PAST
        if day > self.rules.latest(now).astimezone(now.tzinfo).date():
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


def _gap(day: date, near: Slot, tenant: Tenant) -> timedelta:
    """The least real time between `near` and any slot starting on `day`."""
    if day == near.start.date():
        return timedelta(0)
    edge = day if day > near.start.date() else day + timedelta(days=1)
    return abs(datetime.combine(edge, time(0), tzinfo=tenant.zone).astimezone(UTC) - near.instant)


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
