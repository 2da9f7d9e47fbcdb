"""Availability against the sandbox: the calendar rule, day listings, the alternatives offered
(real, filtered by the same rules, nearest first, at most 5) and the business's zone."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import aiohttp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from citas.backend import BackendClient, BackendPolicy
from citas.cache import SingleFlightCache
from citas.clock import frozen_clock
from citas.domain import OpeningHours, Slot, SlotProblem, SlotRules, Tenant, TimeRange
from citas.sandbox import RunningSandbox
from citas.services.availability import MAX_ALTERNATIVES, AvailabilityService
from citas.services.business import BusinessDirectory
from tests.conftest import occupy

LIMA = ZoneInfo("America/Lima")
SANTIAGO = ZoneInfo("America/Santiago")
NOW = datetime(2026, 11, 30, 10, 0, tzinfo=LIMA)  # Monday, as in conftest
RULES = SlotRules(min_notice=timedelta(minutes=30), horizon=timedelta(days=90))
CLINIC = Tenant(id_empresa=12, zone=LIMA, duration_minutes=30, usuario_id=7)


@pytest.fixture
async def backend() -> AsyncIterator[BackendClient]:
    async with aiohttp.ClientSession() as http:
        yield BackendClient(http, BackendPolicy(read_timeout=1, total_timeout=2, max_tries=1))


def service(
    backend: BackendClient, sandbox: RunningSandbox, rules: SlotRules = RULES
) -> AvailabilityService:
    directory = BusinessDirectory(backend, sandbox.info_url, SingleFlightCache(ttl_seconds=60))
    return AvailabilityService(backend, sandbox.calendar_url, directory, rules, frozen_clock(NOW))


def hhmm(slots: tuple[Slot, ...]) -> list[str]:
    return [f"{s.start:%Y-%m-%d %H:%M}" for s in slots]


def lima(day: str, at: str) -> Slot:
    return Slot.at(date.fromisoformat(day), time.fromisoformat(at), LIMA, 30)


# --- one slot ------------------------------------------------------------------------------


async def test_a_free_slot_is_bookable(backend: BackendClient, sandbox: RunningSandbox) -> None:
    verdict = await service(backend, sandbox).check_slot(CLINIC, lima("2026-12-01", "15:00"))
    assert verdict.bookable and verdict.alternatives == ()


async def test_taken(backend: BackendClient, sandbox: RunningSandbox) -> None:
    occupy(sandbox, "2026-12-01 15:15:00", "2026-12-01 15:45:00")
    verdict = await service(backend, sandbox).check_slot(CLINIC, lima("2026-12-01", "15:00"))
    assert verdict.problem is SlotProblem.TAKEN
    # Nearest first in real time; on a tie (12:30 and 17:30 are both 2.5 h away) earlier first.
    assert hhmm(verdict.alternatives) == [
        "2026-12-01 16:00",
        "2026-12-01 16:30",
        "2026-12-01 17:00",
        "2026-12-01 12:30",
        "2026-12-01 17:30",
    ]


async def test_rules_refuse_without_asking_the_calendar(
    backend: BackendClient, sandbox: RunningSandbox
) -> None:
    verdict = await service(backend, sandbox).check_slot(CLINIC, lima("2026-12-01", "20:00"))
    assert verdict.problem is SlotProblem.OUTSIDE_HOURS
    assert sandbox.backend.calls_of("CONSULTAR_DISPONIBILIDAD") == []


async def test_outside_hours_offers_the_nearest_real_slots(
    backend: BackendClient, sandbox: RunningSandbox
) -> None:
    verdict = await service(backend, sandbox).check_slot(CLINIC, lima("2026-12-01", "19:30"))
    assert verdict.problem is SlotProblem.OUTSIDE_HOURS
    assert hhmm(verdict.alternatives) == [
        "2026-12-01 18:30",
        "2026-12-01 18:00",
        "2026-12-01 17:30",
        "2026-12-01 17:00",
        "2026-12-01 16:30",
    ]


async def test_a_closed_day_offers_the_nearest_open_day_on_either_side(
    backend: BackendClient, sandbox: RunningSandbox
) -> None:
    # Sunday 2026-12-06 at 12:00: Monday's 09:00-11:00 (21-23 hours after) are nearer than
    # Saturday's 12:30 (23.5 hours before); at 08:00, Saturday's are the nearer ones.
    verdict = await service(backend, sandbox).check_slot(CLINIC, lima("2026-12-06", "12:00"))
    assert verdict.problem is SlotProblem.CLOSED_DAY
    assert hhmm(verdict.alternatives) == [
        "2026-12-07 09:00",
        "2026-12-07 09:30",
        "2026-12-07 10:00",
        "2026-12-07 10:30",
        "2026-12-07 11:00",
    ]
    early = await service(backend, sandbox).check_slot(CLINIC, lima("2026-12-06", "08:00"))
    assert hhmm(early.alternatives) == [
        "2026-12-05 12:30",
        "2026-12-05 12:00",
        "2026-12-05 11:30",
        "2026-12-05 11:00",
        "2026-12-05 10:30",
    ]


async def test_a_past_slot_offers_the_first_bookable_ones(
    backend: BackendClient, sandbox: RunningSandbox
) -> None:
    verdict = await service(backend, sandbox).check_slot(CLINIC, lima("2026-11-30", "09:00"))
    assert verdict.problem is SlotProblem.PAST
    # 10:00 is now and 10:15 too soon: the first real offer is 10:30.
    assert hhmm(verdict.alternatives) == [
        "2026-11-30 10:30",
        "2026-11-30 11:00",
        "2026-11-30 11:30",
        "2026-11-30 12:00",
        "2026-11-30 12:30",
    ]


async def test_too_far_offers_the_last_days_inside_the_horizon(
    backend: BackendClient, sandbox: RunningSandbox
) -> None:
    week = SlotRules(min_notice=RULES.min_notice, horizon=timedelta(days=7))
    verdict = await service(backend, sandbox, week).check_slot(CLINIC, lima("2026-12-15", "10:00"))
    assert verdict.problem is SlotProblem.TOO_FAR
    limit = NOW + timedelta(days=7)
    assert verdict.alternatives, "a too-far date still gets offers inside the horizon"
    assert all(s.instant <= limit for s in verdict.alternatives)
    # Nearest to the 15th means the latest bookable ones: Monday 7th 10:00 is the last.
    assert hhmm(verdict.alternatives)[0] == "2026-12-07 10:00"


async def test_the_business_zone_of_the_request_decides_what_is_past(
    backend: BackendClient, sandbox: RunningSandbox
) -> None:
    # Lima 10:00 is Santiago 12:00 (summer time); the sandbox itself thinks in Lima's zone.
    santiago = Tenant(id_empresa=12, zone=SANTIAGO, duration_minutes=30, usuario_id=7)
    slot = Slot.at(date(2026, 11, 30), time(11, 0), SANTIAGO, 30)
    availability = service(backend, sandbox)
    verdict = await availability.check_slot(santiago, slot)
    assert verdict.problem is SlotProblem.PAST
    assert verdict.alternatives
    assert all(s.start.tzinfo is SANTIAGO for s in verdict.alternatives)
    assert all(s.instant >= NOW + RULES.min_notice for s in verdict.alternatives)
    assert hhmm(verdict.alternatives)[0] == "2026-11-30 12:30"
    lima_verdict = await availability.check_slot(CLINIC, lima("2026-11-30", "11:00"))
    assert lima_verdict.bookable


# --- a whole day ---------------------------------------------------------------------------


async def test_listing_today_shows_only_bookable_slots(
    backend: BackendClient, sandbox: RunningSandbox
) -> None:
    listing = await service(backend, sandbox).list_day(CLINIC, date(2026, 11, 30))
    assert listing.problem is None
    assert [f"{s.start:%H:%M}" for s in listing.slots] == [
        "10:30",
        "11:00",
        "11:30",
        "12:00",
        "12:30",
        *(f"{h}:{m}" for h in ("15", "16", "17", "18") for m in ("00", "30")),
    ]


async def test_listing_leaves_out_taken_slots(
    backend: BackendClient, sandbox: RunningSandbox
) -> None:
    occupy(sandbox, "2026-12-05 10:00:00", "2026-12-05 11:00:00")
    listing = await service(backend, sandbox).list_day(CLINIC, date(2026, 12, 5))
    assert [f"{s.start:%H:%M}" for s in listing.slots] == [
        "09:00",
        "09:30",
        "11:00",
        "11:30",
        "12:00",
        "12:30",
    ]


@pytest.mark.parametrize(
    ("day", "problem"),
    [
        (date(2026, 12, 6), SlotProblem.CLOSED_DAY),
        (date(2026, 11, 29), SlotProblem.PAST),
        (date(2027, 3, 10), SlotProblem.TOO_FAR),
    ],
)
async def test_listing_a_day_without_slots_says_why_and_offers_others(
    backend: BackendClient, sandbox: RunningSandbox, day: date, problem: SlotProblem
) -> None:
    listing = await service(backend, sandbox).list_day(CLINIC, day)
    assert listing.slots == ()
    assert listing.problem is problem
    assert 1 <= len(listing.alternatives) <= MAX_ALTERNATIVES
    assert all(RULES.problem(s, CLINIC_HOURS, NOW) is None for s in listing.alternatives)


async def test_a_full_day_has_no_problem_but_offers_the_nearest_others(
    backend: BackendClient, sandbox: RunningSandbox
) -> None:
    occupy(sandbox, "2026-12-01 09:00:00", "2026-12-01 19:00:00")
    listing = await service(backend, sandbox).list_day(CLINIC, date(2026, 12, 1))
    assert (listing.slots, listing.problem) == ((), None)
    # Nearest to Tuesday noon: Monday evening (17.5 h) before Wednesday morning (21 h).
    assert hhmm(listing.alternatives)[:2] == ["2026-11-30 18:30", "2026-11-30 18:00"]


# --- alternatives as a property ------------------------------------------------------------

WEEKDAY = (TimeRange(time(9), time(13)), TimeRange(time(15), time(19)))
CLINIC_HOURS = OpeningHours((*([WEEKDAY] * 4), (TimeRange(time(9), time(17)),), (WEEKDAY[0],), ()))


class _Suggestions(AvailabilityService):
    """Availability whose `SUGERIR_HORARIOS` answers from a fixed list (from the day asked on,
    like the sandbox), including slots the rules must drop."""

    def __init__(self, offered: list[Slot], now: datetime = NOW) -> None:
        super().__init__(None, None, None, RULES, frozen_clock(now))  # type: ignore[arg-type]
        self.offered = sorted(offered, key=lambda s: s.instant)
        self.days_asked: list[date] = []

    async def suggest(self, tenant: Tenant, day: date, count: int) -> list[Slot]:
        self.days_asked.append(day)
        return [s for s in self.offered if s.start.date() >= day][:count]


@settings(max_examples=150, deadline=None)
@given(
    offered=st.lists(
        st.tuples(st.integers(-2, 20), st.integers(0, 47)).map(
            lambda dm: Slot(
                datetime.combine(NOW.date() + timedelta(days=dm[0]), time(0), tzinfo=LIMA)
                + timedelta(minutes=30 * dm[1]),
                timedelta(minutes=30),
            )
        ),
        max_size=60,
    ),
    near_day=st.integers(-3, 25),
    near_half_hour=st.integers(0, 47),
)
def test_alternatives_are_real_allowed_distinct_and_nearest_first(
    offered: list[Slot], near_day: int, near_half_hour: int
) -> None:
    near = Slot(
        datetime.combine(NOW.date() + timedelta(days=near_day), time(0), tzinfo=LIMA)
        + timedelta(minutes=30 * near_half_hour),
        timedelta(minutes=30),
    )
    availability = _Suggestions(offered)
    found = asyncio.run(availability.alternatives(CLINIC, near, CLINIC_HOURS, NOW))
    assert len(found) <= MAX_ALTERNATIVES
    assert len(availability.days_asked) <= 3
    assert set(found) <= set(offered)
    assert len({s.instant for s in found}) == len(found)
    assert near.instant not in {s.instant for s in found}
    assert all(RULES.problem(s, CLINIC_HOURS, NOW) is None for s in found)
    distances = [abs(s.instant - near.instant) for s in found]
    assert distances == sorted(distances)
    # Nothing allowed that was seen is both left out and nearer than the farthest offered.
    seen = {s for s in offered if any(s.start.date() >= d for d in availability.days_asked)}
    allowed = {s for s in seen if RULES.problem(s, CLINIC_HOURS, NOW) is None and s != near}
    if len(found) < MAX_ALTERNATIVES:
        assert set(found) == allowed
    else:
        assert all(abs(s.instant - near.instant) >= distances[-1] for s in allowed - set(found))


def test_no_open_day_means_no_alternatives_and_no_calls() -> None:
    availability = _Suggestions([])
    near = Slot(NOW + timedelta(days=1), timedelta(minutes=30))
    found = asyncio.run(availability.alternatives(CLINIC, near, OpeningHours(), NOW))
    assert found == ()
    assert availability.days_asked == []


def test_alternatives_rank_by_real_time_across_a_dst_change() -> None:
    # Santiago 2026-09-06: 00:00 → 01:00. From 23:30 Saturday, 01:00 Sunday is 30 real minutes
    # away and 22:15 Saturday is 75: wall-clock distance would rank them the other way round.
    now = datetime(2026, 9, 1, 12, 0, tzinfo=SANTIAGO)
    always = OpeningHours(((TimeRange(time(0), time(23, 59)),),) * 7)
    near = Slot(datetime(2026, 9, 5, 23, 30, tzinfo=SANTIAGO), timedelta(minutes=30))
    later = Slot(datetime(2026, 9, 6, 1, 0, tzinfo=SANTIAGO), timedelta(minutes=30))
    earlier = Slot(datetime(2026, 9, 5, 22, 15, tzinfo=SANTIAGO), timedelta(minutes=30))
    availability = _Suggestions([earlier, later], now)
    santiago = Tenant(id_empresa=41, zone=SANTIAGO, duration_minutes=30)
    found = asyncio.run(availability.alternatives(santiago, near, always, now))
    assert found == (later, earlier)
    assert later.instant - near.instant == timedelta(minutes=30)
    assert near.instant - earlier.instant == timedelta(minutes=75)
