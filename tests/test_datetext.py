"""Spanish date and time expressions: the forms customers write, the questions asked back when
one is unclear, and the properties that tie the resolver to the texts `describe_*` write."""

from __future__ import annotations

import re
import unicodedata
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st

from citas.datetext import (
    MONTH_NAMES,
    UnclearWhen,
    calendar_lines,
    describe_day,
    describe_slot,
    resolve_date,
    resolve_time,
)
from citas.domain import WEEKDAY_NAMES

MONDAY = date(2026, 11, 30)
SUNDAY = date(2026, 11, 29)
SATURDAY = date(2026, 12, 5)
NEW_YEARS_EVE = date(2026, 12, 31)  # a Thursday
JANUARY_5 = date(2027, 1, 5)
LEAP_FEB_28 = date(2028, 2, 28)
FEB_28 = date(2027, 2, 28)

any_today = st.dates(date(2020, 1, 1), date(2035, 12, 31))
weekday = st.integers(0, 6)


def question(text: str, today: date) -> str:
    with pytest.raises(UnclearWhen) as raised:
        resolve_date(text, today)
    return raised.value.question


def time_question(text: str) -> str:
    with pytest.raises(UnclearWhen) as raised:
        resolve_time(text)
    return raised.value.question


def unaccented(text: str) -> str:
    decomposed = unicodedata.normalize("NFD", text)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


# --------------------------------------------------------------------------- dates: examples

DATES = [
    # written dates
    ("2026-12-15", MONDAY, date(2026, 12, 15)),
    ("15/12", MONDAY, date(2026, 12, 15)),
    ("15/12/2026", MONDAY, date(2026, 12, 15)),
    ("15/12/26", MONDAY, date(2026, 12, 15)),
    ("15-12", MONDAY, date(2026, 12, 15)),
    ("15-12-2027", MONDAY, date(2027, 12, 15)),
    ("15 de diciembre", MONDAY, date(2026, 12, 15)),
    ("15 de diciembre de 2026", MONDAY, date(2026, 12, 15)),
    ("15 de diciembre del 2027", MONDAY, date(2027, 12, 15)),
    ("diciembre 15", MONDAY, date(2026, 12, 15)),
    ("15 dic", MONDAY, date(2026, 12, 15)),
    ("el 1ro de diciembre", MONDAY, date(2026, 12, 1)),
    ("primero de enero", MONDAY, date(2027, 1, 1)),
    ("10 de setiembre", MONDAY, date(2027, 9, 10)),
    ("10 de septiembre", MONDAY, date(2027, 9, 10)),
    ("para el 3 de enero por favor", MONDAY, date(2027, 1, 3)),
    ("2026-12-15T10:00:00", MONDAY, date(2026, 12, 15)),
    # without a year: the next one, or a past one up to 60 days ago
    ("20 de noviembre", MONDAY, date(2026, 11, 20)),
    ("1/10", MONDAY, date(2026, 10, 1)),
    ("30/9", MONDAY, date(2027, 9, 30)),
    ("30 de noviembre", MONDAY, MONDAY),
    # hoy, mañana
    ("hoy", MONDAY, MONDAY),
    ("mañana", MONDAY, date(2026, 12, 1)),
    ("pasado mañana", MONDAY, date(2026, 12, 2)),
    ("hoy por la mañana", MONDAY, MONDAY),
    ("hoy en la mañana", MONDAY, MONDAY),
    ("mañana por la mañana", MONDAY, date(2026, 12, 1)),
    ("mañana a las 10 de la mañana", MONDAY, date(2026, 12, 1)),
    ("pasado mañana de la mañana", MONDAY, date(2026, 12, 2)),
    ("esta tarde", MONDAY, MONDAY),
    # weekdays, said on a Monday
    ("el lunes", MONDAY, date(2026, 12, 7)),
    ("lunes", MONDAY, date(2026, 12, 7)),
    ("el martes", MONDAY, date(2026, 12, 1)),
    ("el domingo", MONDAY, date(2026, 12, 6)),
    ("el miércoles", MONDAY, date(2026, 12, 2)),
    ("este lunes", MONDAY, MONDAY),
    ("este sábado", MONDAY, date(2026, 12, 5)),
    ("el próximo viernes", MONDAY, date(2026, 12, 4)),
    ("el viernes próximo", MONDAY, date(2026, 12, 4)),
    ("el viernes que viene", MONDAY, date(2026, 12, 4)),
    ("el próximo lunes", MONDAY, date(2026, 12, 7)),
    ("el próximo viernes por la tarde", MONDAY, date(2026, 12, 4)),
    ("el lunes de la próxima semana", MONDAY, date(2026, 12, 7)),
    ("la próxima semana el lunes", MONDAY, date(2026, 12, 7)),
    ("el jueves de la semana que viene", MONDAY, date(2026, 12, 10)),
    ("la otra semana el jueves", MONDAY, date(2026, 12, 10)),
    ("el viernes de esta semana", MONDAY, date(2026, 12, 4)),
    # counts
    ("en dos semanas", MONDAY, date(2026, 12, 14)),
    ("dentro de 2 semanas", MONDAY, date(2026, 12, 14)),
    ("en 3 días", MONDAY, date(2026, 12, 3)),
    ("en una semana", MONDAY, date(2026, 12, 7)),
    ("en un día", MONDAY, date(2026, 12, 1)),
    ("dentro de diez dias", MONDAY, date(2026, 12, 10)),
    # a day of the month
    ("el 30", MONDAY, MONDAY),
    ("el 15", date(2026, 12, 1), date(2026, 12, 15)),
    ("el día 15", date(2026, 12, 1), date(2026, 12, 15)),
    ("el 15 del próximo mes", MONDAY, date(2026, 12, 15)),
    ("el 15 de este mes", date(2026, 12, 20), date(2026, 12, 15)),
    # a weekday and a date that agree
    ("el lunes 7 de diciembre", MONDAY, date(2026, 12, 7)),
    ("lunes 7", MONDAY, date(2026, 12, 7)),
    ("el martes 1", MONDAY, date(2026, 12, 1)),
    ("hoy lunes", MONDAY, MONDAY),
    ("mañana, el 1", MONDAY, date(2026, 12, 1)),
    ("el próximo lunes 14 de diciembre", MONDAY, date(2026, 12, 14)),
    ("lunes 28", date(2026, 12, 20), date(2026, 12, 28)),
    ("lunes 7 de diciembre, 10:00", MONDAY, date(2026, 12, 7)),
    # said on a Sunday
    ("el lunes", SUNDAY, MONDAY),
    ("mañana", SUNDAY, MONDAY),
    ("este domingo", SUNDAY, SUNDAY),
    ("el domingo", SUNDAY, date(2026, 12, 6)),
    ("el lunes de la próxima semana", SUNDAY, MONDAY),
    ("la próxima semana el domingo", SUNDAY, date(2026, 12, 6)),
    # said on a Saturday
    ("este sábado", SATURDAY, SATURDAY),
    ("el sábado", SATURDAY, date(2026, 12, 12)),
    ("el próximo sábado", SATURDAY, date(2026, 12, 12)),
    ("el domingo", SATURDAY, date(2026, 12, 6)),
    ("el lunes de la próxima semana", SATURDAY, date(2026, 12, 7)),
    ("el sábado de la próxima semana", SATURDAY, date(2026, 12, 12)),
    # new year's eve: January is next year
    ("mañana", NEW_YEARS_EVE, date(2027, 1, 1)),
    ("pasado mañana", NEW_YEARS_EVE, date(2027, 1, 2)),
    ("el viernes", NEW_YEARS_EVE, date(2027, 1, 1)),
    ("15/1", NEW_YEARS_EVE, date(2027, 1, 15)),
    ("el 31", NEW_YEARS_EVE, NEW_YEARS_EVE),
    ("en una semana", NEW_YEARS_EVE, date(2027, 1, 7)),
    ("el lunes de la próxima semana", NEW_YEARS_EVE, date(2027, 1, 4)),
    ("el 5 del próximo mes", NEW_YEARS_EVE, date(2027, 1, 5)),
    ("20 de diciembre", NEW_YEARS_EVE, date(2026, 12, 20)),
    ("20/12", JANUARY_5, date(2026, 12, 20)),
    ("15 de octubre", JANUARY_5, date(2027, 10, 15)),
    # 28 February, leap and not
    ("mañana", LEAP_FEB_28, date(2028, 2, 29)),
    ("29 de febrero", LEAP_FEB_28, date(2028, 2, 29)),
    ("el 29", LEAP_FEB_28, date(2028, 2, 29)),
    ("en 2 días", LEAP_FEB_28, date(2028, 3, 1)),
    ("mañana", FEB_28, date(2027, 3, 1)),
    ("en 2 días", FEB_28, date(2027, 3, 2)),
    ("29 de febrero", FEB_28, date(2028, 2, 29)),
]


@pytest.mark.parametrize(("text", "today", "expected"), DATES)
def test_resolve_date(text: str, today: date, expected: date) -> None:
    assert resolve_date(text, today) == expected


@pytest.mark.parametrize(("text", "today", "expected"), DATES)
def test_case_and_accents_do_not_matter(text: str, today: date, expected: date) -> None:
    assert resolve_date(text.upper(), today) == expected
    assert resolve_date(unaccented(text), today) == expected
    assert resolve_date(f"Hola, quiero una cita para {text}, por favor.", today) == expected


@pytest.mark.parametrize(
    ("text", "today", "asked"),
    [
        ("el 15", MONDAY, "¿Te refieres al martes 15 de diciembre?"),
        ("el 5", date(2026, 12, 20), "¿Te refieres al martes 5 de enero?"),
        ("el 15", NEW_YEARS_EVE, "¿Te refieres al viernes 15 de enero?"),
        ("el 31", MONDAY, "Noviembre no tiene día 31. ¿Te refieres al jueves 31 de diciembre?"),
        (
            "el 29",
            FEB_28,
            "Febrero no tiene día 29. ¿Te refieres al lunes 29 de marzo?",
        ),
        (
            "lunes 8",
            MONDAY,
            "El 8 de diciembre es martes, no lunes. "
            "¿Prefieres el lunes 7 de diciembre o el martes 8 de diciembre?",
        ),
        (
            "el lunes 8 de diciembre",
            MONDAY,
            "El 8 de diciembre es martes, no lunes. "
            "¿Prefieres el lunes 7 de diciembre o el martes 8 de diciembre?",
        ),
        (
            "mañana lunes",
            MONDAY,
            "El 1 de diciembre es martes, no lunes. "
            "¿Prefieres el lunes 30 de noviembre o el martes 1 de diciembre?",
        ),
        (
            # Not Friday 15 January: this month's 15th has not passed.
            "el viernes 15",
            date(2026, 12, 1),
            "El 15 de diciembre es martes, no viernes. "
            "¿Prefieres el viernes 18 de diciembre o el martes 15 de diciembre?",
        ),
        (
            "lunes 28",
            date(2026, 12, 29),
            "El 28 de enero es jueves, no lunes. "
            "¿Prefieres el lunes 25 de enero o el jueves 28 de enero?",
        ),
        (
            # The nearer Sunday (yesterday) has passed: the next one is offered.
            "hoy domingo",
            MONDAY,
            "El 30 de noviembre es lunes, no domingo. "
            "¿Prefieres el domingo 6 de diciembre o el lunes 30 de noviembre?",
        ),
        (
            "el lunes o el martes",
            MONDAY,
            "¿Te refieres al martes 1 de diciembre o al lunes 7 de diciembre?",
        ),
        ("mañana o pasado mañana", MONDAY, "¿Te refieres al martes 1 de diciembre o al"),
        ("el 15 o el 16", date(2026, 12, 1), "¿El día 15 o el día 16?"),
        ("mañana, el 15", MONDAY, "¿Te refieres al martes 1 de diciembre o al día 15?"),
        ("la próxima semana", MONDAY, "¿Qué día de la próxima semana? Va del lunes 7 de"),
        ("el próximo mes", MONDAY, "¿Qué día del próximo mes?"),
        ("fin de mes", MONDAY, "¿Qué día exactamente? Por ejemplo: «el lunes 7 de diciembre»"),
        ("ayer", MONDAY, "¿Qué día exactamente?"),
        ("", MONDAY, "¿Qué día exactamente?"),
        ("a las 3 de la tarde", MONDAY, "¿Qué día exactamente?"),
        ("31/11", MONDAY, "El 31 de noviembre no existe."),
        ("29/2/2027", MONDAY, "El 29 de febrero de 2027 no existe."),
        ("29 de febrero", MONDAY, "El próximo 29 de febrero es el martes 29 de febrero de 2028."),
    ],
)
def test_unclear_dates_ask_back(text: str, today: date, asked: str) -> None:
    assert question(text, today).startswith(asked)


@pytest.mark.parametrize(
    ("text", "today", "offered"),
    [
        ("el 15", MONDAY, date(2026, 12, 15)),
        ("el 15", NEW_YEARS_EVE, date(2027, 1, 15)),
        ("el 31", MONDAY, date(2026, 12, 31)),
        ("29 de febrero", MONDAY, date(2028, 2, 29)),
    ],
)
def test_the_date_a_question_offers_reads_back(text: str, today: date, offered: date) -> None:
    """A customer who copies the offered date into the reply gets that date."""
    offer = re.search(rf"(?:{'|'.join(WEEKDAY_NAMES)}) [^.?]*", question(text, today))
    assert offer is not None
    reply = f"sí, el {offer[0]}"
    assert resolve_date(reply, today) == offered


@given(any_today, st.integers(0, 60), weekday)
def test_a_weekday_that_disagrees_offers_both_days(today: date, ahead: int, named: int) -> None:
    day = today + timedelta(days=ahead)
    assume(day.weekday() != named)
    text = f"el {WEEKDAY_NAMES[named]} {day.day} de {MONTH_NAMES[day.month - 1]}"
    offers = re.findall(r"(?:al|el) ((?:\w+) \d+ de \w+(?: de \d{4})?)", question(text, today))
    assert len(offers) == 2
    offered, written = (resolve_date(offer, today) for offer in offers)
    assert written == day
    assert offered.weekday() == named
    assert offered >= today
    assert abs((offered - day).days) <= 6


def test_unclear_when_is_a_value_error_carrying_its_question() -> None:
    with pytest.raises(ValueError, match="refieres") as raised:
        resolve_date("el 15", MONDAY)
    assert isinstance(raised.value, UnclearWhen)
    assert str(raised.value) == raised.value.question


def test_today_must_be_a_date_not_a_datetime() -> None:
    # A datetime's date depends on its zone: the caller must convert it to the business's.
    now = datetime(2026, 12, 1, 4, 30, tzinfo=UTC)
    with pytest.raises(TypeError, match="astimezone"):
        resolve_date("mañana", now)
    with pytest.raises(TypeError, match="astimezone"):
        calendar_lines(now)


# --------------------------------------------------------------------------- dates: properties

PLAIN_FORMS = ("el {}", "{}", "el próximo {}", "el {} próximo", "el {} que viene", "para el {}")
THIS_FORMS = ("este {}", "este {} por la tarde")
NEXT_WEEK_FORMS = (
    "el {} de la próxima semana",
    "la próxima semana el {}",
    "la semana que viene, el {}",
)


def _check_weekday_forms(today: date, target: int) -> None:
    name = WEEKDAY_NAMES[target]
    next_monday = today - timedelta(days=today.weekday()) + timedelta(days=7)
    for form in PLAIN_FORMS:
        found = resolve_date(form.format(name), today)
        assert found.weekday() == target, form
        assert 1 <= (found - today).days <= 7, form
    for form in THIS_FORMS:
        found = resolve_date(form.format(name), today)
        assert found.weekday() == target, form
        assert 0 <= (found - today).days <= 6, form
    for form in NEXT_WEEK_FORMS:
        found = resolve_date(form.format(name), today)
        assert found.weekday() == target, form
        assert next_monday <= found < next_monday + timedelta(days=7), form


@pytest.mark.parametrize("today", [MONDAY + timedelta(days=n) for n in range(7)])
@pytest.mark.parametrize("target", range(7))
def test_weekdays_for_every_weekday_of_today(today: date, target: int) -> None:
    _check_weekday_forms(today, target)


@given(any_today, weekday)
def test_weekdays_property(today: date, target: int) -> None:
    _check_weekday_forms(today, target)


@given(any_today)
def test_hoy_manana_pasado_manana(today: date) -> None:
    assert resolve_date("hoy", today) == today
    assert resolve_date("mañana", today) == today + timedelta(days=1)
    assert resolve_date("pasado mañana", today) == today + timedelta(days=2)
    assert resolve_date("mañana por la mañana", today) == today + timedelta(days=1)


NUMBER_WORDS = ("uno", "dos", "tres", "cuatro", "cinco", "seis", "siete", "ocho", "nueve", "diez")


@given(any_today, st.integers(1, 400))
def test_in_n_days_and_weeks(today: date, n: int) -> None:
    assert resolve_date(f"en {n} días", today) == today + timedelta(days=n)
    assert resolve_date(f"dentro de {n} dias", today) == today + timedelta(days=n)
    if n <= 60:
        assert resolve_date(f"en {n} semanas", today) == today + timedelta(weeks=n)


@given(any_today, st.integers(1, 10))
def test_counts_in_words(today: date, n: int) -> None:
    word = NUMBER_WORDS[n - 1]
    assert resolve_date(f"en {word} días", today) == today + timedelta(days=n)
    assert resolve_date(f"dentro de {word} semanas", today) == today + timedelta(weeks=n)


@given(any_today, st.integers(0, 300))
def test_describe_day_reads_back(today: date, ahead: int) -> None:
    day = today + timedelta(days=ahead)
    assert resolve_date(describe_day(day), today) == day
    assert resolve_date(describe_day(day, today), today) == day


def test_describe_day_reads_back_for_300_days_from_a_monday() -> None:
    for ahead in range(301):
        day = MONDAY + timedelta(days=ahead)
        assert resolve_date(describe_day(day), MONDAY) == day


@given(any_today, st.integers(-3000, 3000))
@example(date(2027, 4, 20), 315)  # 2028-02-29: found by hypothesis in a CI-like run
def test_describe_day_with_today_reads_back_for_any_date(today: date, offset: int) -> None:
    # Far or past dates get their year; those from 60 days ago to 300 ahead don't need it.
    day = today + timedelta(days=offset)
    text = describe_day(day, today)
    assert resolve_date(text, today) == day
    has_year = text.endswith(f" de {day.year}")
    if -60 <= offset <= 300:
        assert not has_year, text
    elif (offset < -60 or offset > 306) and (day.month, day.day) != (2, 29):
        # A 29 February can be the only one a year-less date reads as even beyond 300 days
        # (from 2027-04-20, «29 de febrero» can only be 2028's, 315 days ahead): no year
        # needed, and the read-back above holds.
        assert has_year, text


@given(any_today, st.integers(-60, 300))
def test_day_and_month_without_year(today: date, offset: int) -> None:
    day = today + timedelta(days=offset)
    name = MONTH_NAMES[day.month - 1]
    assert resolve_date(f"{day.day} de {name}", today) == day
    assert resolve_date(f"{day.day}/{day.month}", today) == day
    assert resolve_date(f"{name} {day.day}", today) == day


@given(any_today, st.integers(0, 40))
def test_day_of_month_is_never_silently_moved(today: date, offset: int) -> None:
    day = today + timedelta(days=offset)
    try:
        found = resolve_date(f"el {day.day}", today)
    except UnclearWhen:
        # Only a day already passed this month (or missing from it) is asked about.
        assert day.month != today.month
    else:
        assert found.day == day.day
        assert found.month == today.month
        assert found >= today


# --------------------------------------------------------------------------- describing


def test_describe_day() -> None:
    assert describe_day(date(2026, 12, 7)) == "lunes 7 de diciembre"
    assert describe_day(date(2026, 12, 2)) == "miércoles 2 de diciembre"
    assert describe_day(MONDAY, MONDAY) == "hoy lunes 30 de noviembre"
    assert describe_day(date(2026, 12, 1), MONDAY) == "mañana martes 1 de diciembre"
    assert describe_day(date(2026, 12, 2), MONDAY) == "miércoles 2 de diciembre"
    assert describe_day(date(2028, 2, 29), MONDAY) == "martes 29 de febrero de 2028"
    assert describe_day(date(2026, 1, 5), MONDAY) == "lunes 5 de enero de 2026"


def test_describe_slot() -> None:
    zone = ZoneInfo("America/Lima")
    start = datetime(2026, 12, 7, 10, 0, tzinfo=zone)
    assert describe_slot(start) == "lunes 7 de diciembre a las 10:00"
    assert describe_slot((date(2026, 12, 7), time(15, 30))) == "lunes 7 de diciembre a las 15:30"
    # An aware datetime is described at its own wall time, not converted.
    assert describe_slot(start.astimezone(UTC)) == "lunes 7 de diciembre a las 15:00"


@given(any_today, st.integers(0, 300), st.times())
def test_describe_slot_reads_back(today: date, ahead: int, at: time) -> None:
    day = today + timedelta(days=ahead)
    text = describe_slot((day, at))
    assert resolve_date(text, today) == day
    assert resolve_time(text) == at.replace(second=0, microsecond=0)


def test_calendar_lines_from_a_monday() -> None:
    assert calendar_lines(MONDAY, 3) == [
        "hoy: lunes 30 de noviembre (2026-11-30)",
        "mañana: martes 1 de diciembre (2026-12-01)",
        "miércoles 2 de diciembre (2026-12-02)",
    ]
    assert len(calendar_lines(MONDAY)) == 14
    assert calendar_lines(MONDAY, 0) == []
    with pytest.raises(ValueError, match="negative"):
        calendar_lines(MONDAY, -1)


_LINE = re.compile(
    r"^(?:(hoy|mañana): )?(\w+) (\d+) de (\w+)(?: de \d{4})? \((\d{4}-\d{2}-\d{2})\)$"
)


@given(any_today, st.integers(0, 60))
def test_calendar_lines_property(today: date, days: int) -> None:
    lines = calendar_lines(today, days)
    assert len(lines) == days
    for ahead, line in enumerate(lines):
        match = _LINE.match(line)
        assert match is not None, line
        label, weekday_name, day_number, month_name, iso = match.groups()
        day = date.fromisoformat(iso)
        assert day == today + timedelta(days=ahead)
        assert label == {0: "hoy", 1: "mañana"}.get(ahead)
        assert weekday_name == WEEKDAY_NAMES[day.weekday()]
        assert (int(day_number), month_name) == (day.day, MONTH_NAMES[day.month - 1])
        assert resolve_date(line, today) == day


# --------------------------------------------------------------------------- times: examples

TIMES = [
    ("15:00", time(15)),
    ("9:30", time(9, 30)),
    ("09:30", time(9, 30)),
    ("3:00", time(3)),
    ("00:00", time(0)),
    ("15:00:00", time(15)),
    ("15h", time(15)),
    ("15 h", time(15)),
    ("15 hrs", time(15)),
    ("15 horas", time(15)),
    ("15h30", time(15, 30)),
    ("09h", time(9)),
    ("15", time(15)),
    ("3pm", time(15)),
    ("3 pm", time(15)),
    ("3 p. m.", time(15)),
    ("3 p.m.", time(15)),
    ("3 PM", time(15)),
    ("10am", time(10)),
    ("10 a. m.", time(10)),
    ("10:30 am", time(10, 30)),
    ("3:30 pm", time(15, 30)),
    ("12 pm", time(12)),
    ("12 am", time(0)),
    ("3 de la tarde", time(15)),
    ("9 de la mañana", time(9)),
    ("9 de la manana", time(9)),
    ("8 de la noche", time(20)),
    ("12 de la noche", time(0)),
    ("2 de la madrugada", time(2)),
    ("3 del día", time(15)),
    ("10:30 de la noche", time(22, 30)),
    ("10 y media de la mañana", time(10, 30)),
    ("10 y media", time(10, 30)),  # 9, 10 and 11 alone are morning hours
    ("10 y cuarto", time(10, 15)),
    ("9h", time(9)),
    ("a las 11", time(11)),
    ("10 y cuarto pm", time(22, 15)),
    ("4 menos cuarto de la tarde", time(15, 45)),
    ("12 y media", time(12, 30)),
    ("15 y media", time(15, 30)),
    ("mediodía", time(12)),
    ("al medio día", time(12)),
    ("12 del día", time(12)),
    ("a las 12 del mediodía", time(12)),
    ("medianoche", time(0)),
    ("a las 10:30", time(10, 30)),
    ("a las 15", time(15)),
    ("a las 12", time(12)),
    ("a las 0", time(0)),
    ("a las tres de la tarde", time(15)),
    ("a la una de la tarde", time(13)),
    ("a la una y media de la tarde", time(13, 30)),
    ("a las doce", time(12)),
    ("las 4 de la tarde", time(16)),
    ("el viernes por la tarde a las 4", time(16)),
    ("mañana en la mañana a las 9", time(9)),
    ("por la tarde, a las 3:00", time(15)),
    ("a las 3, o sea 15:00", time(15)),
    ("lunes 7 de diciembre, 10:00", time(10)),
    ("lunes 7 de diciembre a las 10:00", time(10)),
    ("el 15 de diciembre a las 3pm", time(15)),
    ("2026-12-15T10:00:00", time(10)),
]


@pytest.mark.parametrize(("text", "expected"), TIMES)
def test_resolve_time(text: str, expected: time) -> None:
    assert resolve_time(text) == expected


@pytest.mark.parametrize(
    ("text", "asked"),
    [
        ("a las 3", "¿A las 3 de la mañana o de la tarde?"),
        ("3", "¿A las 3 de la mañana o de la tarde?"),
        ("a la 1", "¿A la 1 de la mañana o de la tarde?"),
        ("a las 8", "¿A las 8 de la mañana o de la noche?"),
        ("8 y media", "¿A las 8:30 de la mañana o de la noche?"),
        ("4 menos cuarto", "¿A las 3:45 de la mañana o de la tarde?"),
        ("1 menos cuarto", "¿A las 00:45 o a las 12:45?"),
        ("4h", "¿A las 4 de la mañana o de la tarde?"),
        ("mañana a las 5", "¿A las 5 de la mañana o de la tarde?"),
        ("por la tarde", "¿A qué hora de la tarde?"),
        ("", "¿A qué hora exactamente?"),
        ("en 3 horas", "¿A qué hora exactamente?"),
        ("el lunes", "¿A qué hora exactamente?"),
        ("25:00", "¿A qué hora exactamente?"),
        ("a las 24", "¿A qué hora exactamente?"),
        ("10:75", "¿A qué hora exactamente?"),
        ("15:00:30", "¿A qué hora exactamente?"),
        ("10 y 75 de la mañana", "¿A qué hora exactamente?"),
        ("15 de la mañana", "¿A qué hora exactamente?"),
        ("15:00 am", "¿A qué hora exactamente?"),
        ("a las 3 o a las 4", "¿A qué hora exactamente?"),
        ("a las 3 pm, 16:00", "¿A qué hora exactamente?"),
    ],
)
def test_unclear_times_ask_back(text: str, asked: str) -> None:
    assert time_question(text).startswith(asked)


# --------------------------------------------------------------------------- times: properties


def test_every_written_clock_time_is_read_as_written() -> None:
    for minute_of_day in range(24 * 60):
        at = time(*divmod(minute_of_day, 60))
        assert resolve_time(f"{at:%H:%M}") == at
        assert resolve_time(f"a las {at.hour}:{at.minute:02d}") == at


@given(st.integers(9, 11), st.sampled_from([0, 15, 30]))
def test_a_bare_nine_ten_or_eleven_is_the_morning(hour: int, minute: int) -> None:
    said = {0: f"a las {hour}", 15: f"{hour} y cuarto", 30: f"{hour} y media"}[minute]
    assert resolve_time(said) == time(hour, minute)


@pytest.mark.parametrize("hour", range(1, 12))
def test_afternoon_and_morning_hours(hour: int) -> None:
    for afternoon in (f"{hour} de la tarde", f"{hour}pm", f"{hour} p. m.", f"a las {hour} pm"):
        assert resolve_time(afternoon) == time(hour + 12)
    for morning in (f"{hour} de la mañana", f"{hour}am", f"{hour} a.m.", f"a las {hour} am"):
        assert resolve_time(morning) == time(hour)


@given(st.integers(1, 8), st.sampled_from([0, 15, 30, 45]))
def test_an_ambiguous_hour_asks_and_either_answer_reads_back(hour: int, minute: int) -> None:
    """The question offers two readings; answering with either gives that reading."""
    assume(not (hour == 8 and minute == 45))  # "9 menos cuarto": 9 is a morning hour
    said = {0: f"a las {hour}", 15: f"{hour} y cuarto", 30: f"{hour} y media"}.get(
        minute, f"{hour + 1} menos cuarto"
    )
    asked = time_question(said)
    morning, _, evening = asked.removeprefix("¿").removesuffix("?").partition(" o ")
    clock = morning.removesuffix(" de la mañana")
    assert resolve_time(morning) == time(hour, minute)
    assert resolve_time(f"{clock} {evening}") == time(hour + 12, minute)


# --------------------------------------------------------------------------- zones
# The module has no zone logic: callers pass the business's local date. These tests document
# how to compute it, across Santiago's DST changes and in Lima (UTC-5 all year).

SANTIAGO = ZoneInfo("America/Santiago")
LIMA = ZoneInfo("America/Lima")


@pytest.mark.parametrize(
    ("zone", "now", "local_day"),
    [
        # Sunday 6 September 2026, 00:00 (-04) jumps to 01:00 (-03): Sunday starts at 04:00 UTC.
        (SANTIAGO, datetime(2026, 9, 6, 3, 59, tzinfo=UTC), date(2026, 9, 5)),
        (SANTIAGO, datetime(2026, 9, 6, 4, 0, tzinfo=UTC), date(2026, 9, 6)),
        (SANTIAGO, datetime(2026, 9, 7, 2, 59, tzinfo=UTC), date(2026, 9, 6)),
        (SANTIAGO, datetime(2026, 9, 7, 3, 0, tzinfo=UTC), date(2026, 9, 7)),
        # Sunday 5 April 2026, 00:00 (-03) falls back to Saturday 23:00 (-04): Saturday's last
        # hour happens twice, and Sunday starts at 04:00 UTC.
        (SANTIAGO, datetime(2026, 4, 5, 2, 59, tzinfo=UTC), date(2026, 4, 4)),
        (SANTIAGO, datetime(2026, 4, 5, 3, 30, tzinfo=UTC), date(2026, 4, 4)),
        (SANTIAGO, datetime(2026, 4, 5, 4, 0, tzinfo=UTC), date(2026, 4, 5)),
        # Lima: 23:30 on 30 November is already 1 December in UTC.
        (LIMA, datetime(2026, 12, 1, 4, 30, tzinfo=UTC), date(2026, 11, 30)),
        (LIMA, datetime(2026, 12, 1, 5, 0, tzinfo=UTC), date(2026, 12, 1)),
    ],
)
def test_today_is_the_business_zone_date(zone: ZoneInfo, now: datetime, local_day: date) -> None:
    today = now.astimezone(zone).date()
    assert today == local_day
    assert resolve_date("hoy", today) == local_day
    assert resolve_date("mañana", today) == local_day + timedelta(days=1)
    assert calendar_lines(today, 1) == [f"hoy: {describe_day(local_day)} ({local_day})"]


around_changes = st.one_of(
    st.datetimes(datetime(2026, 4, 3), datetime(2026, 4, 7), timezones=st.just(UTC)),
    st.datetimes(datetime(2026, 9, 4), datetime(2026, 9, 8), timezones=st.just(UTC)),
)


@given(around_changes, st.sampled_from([SANTIAGO, LIMA]))
def test_manana_is_the_next_local_date(now: datetime, zone: ZoneInfo) -> None:
    local = now.astimezone(zone)
    today = local.date()
    # Wall-clock arithmetic on the local datetime: the same hour tomorrow, whatever DST does.
    assert resolve_date("mañana", today) == (local + timedelta(days=1)).date()
    assert resolve_date("pasado mañana", today) == (local + timedelta(days=2)).date()
