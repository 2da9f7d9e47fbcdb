"""The pure slot rules (citas.domain): each rule on its own, DST edges, and properties across
zones, with the process itself in `TZ=UTC` and in `TZ=Asia/Tokyo`."""

from __future__ import annotations

import os
import random
import time as process_time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from citas.domain import OpeningHours, Slot, SlotProblem, SlotRules, TimeRange

LIMA = ZoneInfo("America/Lima")
SANTIAGO = ZoneInfo("America/Santiago")
NEW_YORK = ZoneInfo("America/New_York")
# Monday 2026-11-30 10:00 in Lima, as in tests/conftest.py.
NOW = datetime(2026, 11, 30, 10, 0, tzinfo=LIMA)
RULES = SlotRules(min_notice=timedelta(minutes=30), horizon=timedelta(days=90))


def weekly(*days: tuple[tuple[str, str], ...]) -> OpeningHours:
    """Opening hours from ("HH:MM", "HH:MM") pairs, Monday first."""
    return OpeningHours(
        tuple(
            tuple(TimeRange(time.fromisoformat(a), time.fromisoformat(b)) for a, b in day)
            for day in days
        )
    )


WEEKDAY = (("09:00", "13:00"), ("15:00", "19:00"))
# The clinic of the sandbox: weekdays split, Friday 09-17, Saturday 09-13, Sunday closed.
CLINIC = weekly(*[WEEKDAY] * 4, (("09:00", "17:00"),), (("09:00", "13:00"),), ())
ALWAYS = weekly(*[(("00:00", "23:59"),)] * 7)

ZONES = tuple(
    ZoneInfo(name)
    for name in (
        "America/Lima",
        "America/Santiago",
        "America/New_York",
        "Europe/Madrid",
        "Australia/Lord_Howe",
        "Asia/Tokyo",
        "UTC",
    )
)


def lima(day: str, hhmm: str, minutes: int = 30) -> Slot:
    return Slot.at(date.fromisoformat(day), time.fromisoformat(hhmm), LIMA, minutes)


# --- the process's own zone ----------------------------------------------------------------


@contextmanager
def process_zone(name: str) -> Iterator[None]:
    """Run with the process's local zone set to `name` (TZ + tzset), restored afterwards."""
    saved = os.environ.get("TZ")
    os.environ["TZ"] = name
    process_time.tzset()
    try:
        yield
    finally:
        if saved is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = saved
        process_time.tzset()


@pytest.fixture(params=["UTC", "Asia/Tokyo"])
def process_tz(request: pytest.FixtureRequest) -> Iterator[str]:
    with process_zone(request.param):
        yield request.param


def test_the_process_zone_fixture_really_switches_the_local_zone() -> None:
    offsets = {}
    for name in ("UTC", "Asia/Tokyo"):
        with process_zone(name):
            offsets[name] = datetime(2026, 11, 30, 12, 0).astimezone().utcoffset()
    assert offsets == {"UTC": timedelta(0), "Asia/Tokyo": timedelta(hours=9)}


# --- one test per rule ---------------------------------------------------------------------


def test_a_free_slot_inside_hours_with_enough_notice_is_bookable(process_tz: str) -> None:
    assert RULES.problem(lima("2026-11-30", "10:30"), CLINIC, NOW) is None
    assert RULES.problem(lima("2026-12-01", "15:00"), CLINIC, NOW) is None


@pytest.mark.parametrize(
    ("day", "hhmm"), [("2026-11-30", "09:30"), ("2026-11-30", "10:00"), ("2026-11-27", "10:00")]
)
def test_past(process_tz: str, day: str, hhmm: str) -> None:
    assert RULES.problem(lima(day, hhmm), CLINIC, NOW) is SlotProblem.PAST


def test_too_soon_is_the_configured_minimum_notice(process_tz: str) -> None:
    assert RULES.problem(lima("2026-11-30", "10:15"), CLINIC, NOW) is SlotProblem.TOO_SOON
    assert RULES.problem(lima("2026-11-30", "10:30"), CLINIC, NOW) is None  # exactly 30 min
    two_hours = SlotRules(min_notice=timedelta(hours=2), horizon=RULES.horizon)
    assert two_hours.problem(lima("2026-11-30", "11:30"), CLINIC, NOW) is SlotProblem.TOO_SOON
    assert two_hours.problem(lima("2026-11-30", "12:00"), CLINIC, NOW) is None


def test_too_far_is_the_configured_horizon(process_tz: str) -> None:
    limit = NOW + timedelta(days=90)  # 2027-02-28 10:00 Lima (no DST in Lima)
    at_limit = Slot(limit, timedelta(minutes=30))
    past_limit = Slot(limit + timedelta(minutes=5), timedelta(minutes=30))
    assert RULES.problem(at_limit, ALWAYS, NOW) is None
    assert RULES.problem(past_limit, ALWAYS, NOW) is SlotProblem.TOO_FAR
    week = SlotRules(min_notice=RULES.min_notice, horizon=timedelta(days=7))
    assert week.problem(lima("2026-12-07", "10:00"), CLINIC, NOW) is None
    assert week.problem(lima("2026-12-07", "10:30"), CLINIC, NOW) is SlotProblem.TOO_FAR


def test_closed_day(process_tz: str) -> None:
    assert RULES.problem(lima("2026-12-06", "10:00"), CLINIC, NOW) is SlotProblem.CLOSED_DAY


@pytest.mark.parametrize("hhmm", ["08:30", "13:00", "14:00", "19:00", "22:00"])
def test_outside_hours(process_tz: str, hhmm: str) -> None:
    assert RULES.problem(lima("2026-12-01", hhmm), CLINIC, NOW) is SlotProblem.OUTSIDE_HOURS


def test_the_end_must_not_pass_the_range_end(process_tz: str) -> None:
    assert RULES.problem(lima("2026-12-01", "12:30"), CLINIC, NOW) is None  # ends 13:00
    assert RULES.problem(lima("2026-12-01", "12:45"), CLINIC, NOW) is SlotProblem.OUTSIDE_HOURS
    assert RULES.problem(lima("2026-12-01", "18:30", 60), CLINIC, NOW) is (
        SlotProblem.OUTSIDE_HOURS
    )
    # Spanning the lunch break is outside although both ends are inside some range.
    assert RULES.problem(lima("2026-12-01", "12:00", 240), CLINIC, NOW) is (
        SlotProblem.OUTSIDE_HOURS
    )
    # Past midnight is never inside a range of the starting day.
    assert RULES.problem(lima("2026-12-01", "23:30", 60), ALWAYS, NOW) is (
        SlotProblem.OUTSIDE_HOURS
    )


def test_nonexistent_local_time(process_tz: str) -> None:
    # Santiago, Sunday 2026-09-06: clocks jump from 00:00 to 01:00.
    now = datetime(2026, 9, 1, 12, 0, tzinfo=SANTIAGO)
    gap = Slot.at(date(2026, 9, 6), time(0, 30), SANTIAGO, 30)
    after = Slot.at(date(2026, 9, 6), time(1, 0), SANTIAGO, 30)
    assert not gap.exists()
    assert RULES.problem(gap, ALWAYS, now) is SlotProblem.NONEXISTENT
    assert RULES.problem(after, ALWAYS, now) is None
    new_york_gap = Slot.at(date(2026, 3, 8), time(2, 30), NEW_YORK, 30)
    assert RULES.problem(new_york_gap, ALWAYS, datetime(2026, 3, 1, tzinfo=NEW_YORK)) is (
        SlotProblem.NONEXISTENT
    )


# --- DST edges (both were accepted while rules compared wall times) ---------------------------


def test_minimum_notice_is_real_time_across_a_spring_forward(process_tz: str) -> None:
    # 23:50 on Saturday; at midnight Santiago jumps to 01:00, so 01:00 is only 10 minutes away.
    now = datetime(2026, 9, 5, 23, 50, tzinfo=SANTIAGO)
    slot = Slot.at(date(2026, 9, 6), time(1, 0), SANTIAGO, 30)
    assert slot.instant - now.astimezone(UTC) == timedelta(minutes=10)
    assert RULES.problem(slot, ALWAYS, now) is SlotProblem.TOO_SOON
    assert RULES.problem(Slot.at(date(2026, 9, 6), time(1, 20), SANTIAGO, 30), ALWAYS, now) is None


def test_a_repeated_hour_already_lived_is_past(process_tz: str) -> None:
    # Santiago, Saturday 2026-04-04: at 24:00 clocks go back to 23:00, so 23:00-24:00 happens
    # twice. At 23:20 of the second pass, 23:55 means its first occurrence, 25 minutes ago.
    now = datetime(2026, 4, 4, 23, 20, fold=1, tzinfo=SANTIAGO)
    slot = Slot.at(date(2026, 4, 4), time(23, 55), SANTIAGO, 30)
    assert slot.instant < now.astimezone(UTC)
    assert RULES.problem(slot, ALWAYS, now) is SlotProblem.PAST


def test_a_slot_lasts_its_real_duration_across_a_dst_change(process_tz: str) -> None:
    # New York 2026-03-08: 01:30 + 60 real minutes is 03:30 on the clock, past a 03:00 close.
    hours = weekly(*[(("01:00", "03:00"),)] * 7)
    now = datetime(2026, 3, 1, tzinfo=NEW_YORK)
    slot = Slot.at(date(2026, 3, 8), time(1, 30), NEW_YORK, 60)
    assert slot.end.strftime("%H:%M") == "03:30"
    assert RULES.problem(slot, hours, now) is SlotProblem.OUTSIDE_HOURS
    # Santiago 2026-09-05 23:30 + 60 minutes ends at 01:30 the next day: not inside the day.
    late = Slot.at(date(2026, 9, 5), time(23, 30), SANTIAGO, 60)
    assert late.end == datetime(2026, 9, 6, 1, 30, tzinfo=SANTIAGO)
    assert RULES.problem(late, ALWAYS, datetime(2026, 9, 1, tzinfo=SANTIAGO)) is (
        SlotProblem.OUTSIDE_HOURS
    )


def test_the_answer_does_not_depend_on_the_zone_now_is_written_in(process_tz: str) -> None:
    now = datetime(2026, 9, 5, 23, 50, tzinfo=SANTIAGO)
    slot = Slot.at(date(2026, 9, 6), time(1, 0), SANTIAGO, 30)
    answers = {RULES.problem(slot, ALWAYS, now.astimezone(zone)) for zone in ZONES}
    assert answers == {SlotProblem.TOO_SOON}


# --- properties -----------------------------------------------------------------------------


def transitions(zone: ZoneInfo, first: datetime, last: datetime) -> list[datetime]:
    """The UTC instants in [first, last) where `zone`'s offset changes (on whole UTC hours, as
    Santiago's do)."""
    found, moment = [], first
    offset = moment.astimezone(zone).utcoffset()
    while moment < last:
        moment += timedelta(hours=1)
        current = moment.astimezone(zone).utcoffset()
        if current != offset:
            found.append(moment)
            offset = current
    return found


SANTIAGO_CHANGES = transitions(
    SANTIAGO, datetime(2026, 1, 1, tzinfo=UTC), datetime(2029, 1, 1, tzinfo=UTC)
)


def test_santiago_changes_its_clocks_twice_a_year() -> None:
    assert len(SANTIAGO_CHANGES) == 6
    assert datetime(2026, 9, 6, 4, 0, tzinfo=UTC) in SANTIAGO_CHANGES


Case = tuple[ZoneInfo, date, time, int, OpeningHours, datetime, SlotRules]


def spec_problem(case: Case) -> SlotProblem | None:
    """The rules as the issue states them, written independently in UTC epoch seconds."""
    zone, day, wall, minutes, hours, now, rules = case
    naive = datetime.combine(day, wall)

    def utc_for(fold: int) -> datetime:
        offset = naive.replace(tzinfo=zone, fold=fold).utcoffset()
        assert offset is not None
        return (naive - offset).replace(tzinfo=UTC)

    def wall_of(moment: datetime) -> datetime:
        return moment.astimezone(zone).replace(tzinfo=None)

    if all(wall_of(utc_for(fold)) != naive for fold in (0, 1)):
        return SlotProblem.NONEXISTENT
    start = utc_for(0).timestamp()  # a repeated wall time is its first occurrence
    now_s = now.timestamp()
    if start <= now_s:
        return SlotProblem.PAST
    if start < now_s + rules.min_notice.total_seconds():
        return SlotProblem.TOO_SOON
    if start > now_s + rules.horizon.total_seconds():
        return SlotProblem.TOO_FAR
    ranges = hours.days[day.weekday()]
    if not ranges:
        return SlotProblem.CLOSED_DAY
    end = wall_of(datetime.fromtimestamp(start + minutes * 60, UTC))
    if end.date() == day and any(r.start <= wall and end.time() <= r.end for r in ranges):
        return None
    return SlotProblem.OUTSIDE_HOURS


@st.composite
def opening_hours(draw: st.DrawFn) -> OpeningHours:
    days = []
    for _ in range(7):
        cuts = sorted(draw(st.sets(st.integers(0, 24 * 60 - 1), max_size=4)))
        pairs = list(zip(cuts[::2], cuts[1::2], strict=False))
        days.append(
            tuple(TimeRange(time(a // 60, a % 60), time(b // 60, b % 60)) for a, b in pairs)
        )
    return OpeningHours(tuple(days))


# The process zone is set once per test by `process_tz`, not per example: that is the point.
PROPERTY = settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@st.composite
def cases(draw: st.DrawFn) -> Case:
    """A zone, a requested local date and time, a duration, hours, now, and rules. Half of them
    are in Santiago with now or the horizon's end within hours of a clock change and the slot
    close to it, where wall-clock arithmetic and real time disagree."""
    minutes = draw(st.sampled_from([15, 30, 45, 60, 90, 120]))
    rules = SlotRules(
        min_notice=timedelta(minutes=draw(st.integers(0, 180))),
        horizon=timedelta(days=draw(st.integers(1, 120))),
    )
    if draw(st.booleans()):
        zone = SANTIAGO
        pivot = draw(st.sampled_from(SANTIAGO_CHANGES))
        near_horizon = draw(st.booleans())
        if near_horizon:
            pivot -= rules.horizon
        now = pivot + timedelta(minutes=draw(st.integers(-240, 240)))
        target = now + rules.horizon if near_horizon else now
        # A wall time near the target's, moved by up to two hours of clock time (into the
        # skipped or the repeated hour).
        local = target.astimezone(zone).replace(tzinfo=None, second=0, microsecond=0)
        local += timedelta(minutes=draw(st.integers(-120, 120)))
        day, wall = local.date(), local.time()
        hours = draw(st.sampled_from([ALWAYS, ALWAYS, None])) or draw(opening_hours())
    else:
        zone = draw(st.sampled_from(ZONES))
        now = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=draw(st.integers(0, 2**20)))
        day = now.astimezone(zone).date() + timedelta(days=draw(st.integers(-3, 120)))
        wall = time(draw(st.integers(0, 23)), draw(st.sampled_from([0, 5, 15, 30, 45, 59])))
        hours = draw(opening_hours())
    return zone, day, wall, minutes, hours, now, rules


@PROPERTY
@given(cases())
def test_rules_follow_the_specification_in_every_zone(process_tz: str, case: Case) -> None:
    zone, day, wall, minutes, hours, now, rules = case
    slot = Slot.at(day, wall, zone, minutes)
    assert rules.problem(slot, hours, now.astimezone(zone)) is spec_problem(case)


@PROPERTY
@given(cases(), st.sampled_from(ZONES))
def test_rules_do_not_depend_on_how_now_is_expressed(
    process_tz: str, case: Case, other: ZoneInfo
) -> None:
    zone, day, wall, minutes, hours, now, rules = case
    slot = Slot.at(day, wall, zone, minutes)
    assert rules.problem(slot, hours, now.astimezone(zone)) is rules.problem(
        slot, hours, now.astimezone(other)
    )


@PROPERTY
@given(cases())
def test_a_bookable_slot_keeps_every_promise(process_tz: str, case: Case) -> None:
    zone, day, wall, minutes, hours, now, rules = case
    slot = Slot.at(day, wall, zone, minutes)
    if rules.problem(slot, hours, now) is not None:
        return
    assert slot.exists()
    assert now + rules.min_notice <= slot.instant <= now + rules.horizon
    # Through UTC: aware datetimes sharing a tzinfo subtract as wall times.
    assert slot.end.astimezone(UTC) - slot.instant == timedelta(minutes=minutes)
    assert slot.end.date() == day
    assert any(
        r.start <= slot.start.time() and slot.end.time() <= r.end for r in hours.ranges_on(day)
    )


def test_the_same_cases_give_identical_answers_under_utc_and_tokyo() -> None:
    generator = random.Random(20261130)
    batch = []
    for _ in range(3000):
        zone = generator.choice(ZONES)
        now = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=generator.randrange(2**20))
        if generator.random() < 0.5:
            zone = SANTIAGO
            now = generator.choice(SANTIAGO_CHANGES) + timedelta(
                minutes=generator.randrange(-2880, 2880)
            )
        if generator.random() < 0.3:  # close to now: past, too soon, just bookable
            local = (now + timedelta(minutes=generator.randrange(-90, 180))).astimezone(zone)
            day, wall = local.date(), local.time().replace(second=0, microsecond=0)
        else:
            day = now.astimezone(zone).date() + timedelta(days=generator.randrange(-2, 100))
            wall = time(generator.randrange(24), generator.randrange(60))
        batch.append((Slot.at(day, wall, zone, 45), now.astimezone(zone)))

    def answers() -> list[SlotProblem | None]:
        return [RULES.problem(slot, ALWAYS, now) for slot, now in batch]

    with process_zone("UTC"):
        in_utc = answers()
    with process_zone("Asia/Tokyo"):
        in_tokyo = answers()
    assert in_utc == in_tokyo
    # The batch reaches every rule an always-open week allows, so the comparison means something.
    assert set(in_utc) == {
        None,
        SlotProblem.PAST,
        SlotProblem.TOO_SOON,
        SlotProblem.TOO_FAR,
        SlotProblem.NONEXISTENT,
        SlotProblem.OUTSIDE_HOURS,
    }
