"""Spanish date and time expressions as `date` and `time`: pure, deterministic, no clock.

"Today" is always an argument: the caller passes the business's local date
(`now.astimezone(tenant.zone).date()`), never the server's. This module knows nothing of zones.

Text is compared lowercased and without accents, so `Mañana`, `manana` and `MAÑANA` are alike.
Words that name nothing ("para", "el", "por favor", "quiero una cita") are ignored, but every
date (or time) the text names must agree, or the customer is asked which one they meant.

Dates (`resolve_date`):

* `2026-12-15`, `15/12/2026`, `15/12/26`, `15-12`, `15 de diciembre (de 2026)`, `diciembre 15`;
  `setiembre` (the Peruvian spelling) and three-letter abbreviations (`15 dic`) too.
  A day and month without a year is their next occurrence on or after today, except that one
  up to `PAST_DAYS` (60) days ago is that past date: "el 20 de noviembre" said on 30 November
  means the date that passed, so the booking rules can say "esa fecha ya pasó" instead of
  silently booking it a year later. 29 February is looked for only until next year.
* `hoy`, `mañana`, `pasado mañana`; "de/por/en la mañana" is a time of day, not tomorrow, and
  "esta mañana/tarde/noche" means today.
* A weekday alone (`lunes`, `el próximo lunes`, `el lunes que viene`) is the next one strictly
  after today: said on a Monday, "el lunes" is next week's, because nobody asks for a slot
  today by naming today's weekday. `este sábado` is the coming Saturday, today included.
  `el lunes de la próxima semana` (`la semana que viene`, `la otra semana`) is the Monday of the
  next calendar week (weeks start on Monday); `el lunes de esta semana` is this week's Monday,
  even if it passed.
* `en 3 días`, `dentro de dos semanas`, `en una semana` (digits, or the words uno..diez).
* `el 15` (`el día 15`) is this month's 15th if it has not passed. A 15th that passed is not
  silently moved to next month: the customer is asked ("¿Te refieres al martes 15 de
  diciembre?"). `el 15 del próximo mes` / `de este mes` name the month.
* A weekday and a date (`el lunes 7 de diciembre`, `lunes 7`) must agree; if they don't, the
  question offers both ("El 8 de diciembre es martes, no lunes. ¿Prefieres el lunes 7 de
  diciembre o el martes 8 de diciembre?"). When they agree the date wins over any "próximo" or
  "próxima semana". With `lunes 28` said after the 28th, next month's 28th is taken if it is a
  Monday (the weekday settles what "el 28" alone would have to ask).
* Anything else (`la próxima semana`, `fin de mes`, `ayer`, nothing) asks for the day.

Times (`resolve_time`):

* `15:00`, `09:30`, `15h`, `15h30`, `15 hrs`, `a las 15`, `3pm`, `3 p. m.`, `10 a.m.`,
  `3 de la tarde`, `9 de la mañana`, `8 de la noche`, `2 de la madrugada`, `3 del día`,
  `10 y media`, `10 y cuarto`, `4 menos cuarto`, `mediodía`, `medianoche`, `a la una`,
  `a las tres de la tarde` (hour words una..doce). A part of the day anywhere in the text applies
  to the hour ("el viernes por la tarde a las 4" is 16:00).
* Written `H:MM` (with a colon, as models send it), a zero-padded hour (`09h`), 0 and 12..23
  are 24-hour as written; `12 pm` is 12:00 and `12 am` is 00:00.
* A bare hour 1..8 (`a las 3`, `8 y media`, `4h`) asks "¿A las 3 de la mañana o de la tarde?"
  instead of guessing: a booking at the wrong hour is the worst failure this assistant can
  make, worse than one more question, and the customer does not notice it until they arrive.
  A bare 9, 10 or 11 (`a las 10`, `10 y media`) is the morning: nobody books at 21:00–23:59,
  and the summary the customer confirms shows the hour (measured with the evaluation: asking
  back there only cost bookings).
* An hour over 23, minutes over 59, or a part of day that contradicts the hour (`15 de la
  mañana`) asks for the time.

`describe_day`, `describe_slot` and `calendar_lines` write dates so that `resolve_date` reads
them back to the same date, so the calendar shown to the model is in the words it may echo.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Literal

from citas.domain import WEEKDAY_KEYS, WEEKDAY_NAMES
from citas.folding import fold

__all__ = [
    "MONTH_NAMES",
    "PAST_DAYS",
    "UnclearWhen",
    "calendar_lines",
    "describe_day",
    "describe_slot",
    "resolve_date",
    "resolve_time",
]

MONTH_NAMES = (
    "enero",
    "febrero",
    "marzo",
    "abril",
    "mayo",
    "junio",
    "julio",
    "agosto",
    "septiembre",
    "octubre",
    "noviembre",
    "diciembre",
)
PAST_DAYS = 60
"""How far back a day and month without a year may resolve (to that past date)."""


class UnclearWhen(ValueError):
    """An expression that cannot be resolved to one date/time; `question` is a short Spanish
    question to put to the customer (e.g. "¿Te refieres al martes 15 de diciembre?")."""

    question: str

    def __init__(self, question: str) -> None:
        super().__init__(question)
        self.question = question


# --------------------------------------------------------------------------- text


_MERIDIEM = re.compile(r"(?<![a-z])([ap])\s*\.?\s*m(?:\s*\.)?(?![a-z])")
_NOT_KEPT = re.compile(r"[^a-z0-9:/\-\s]")
_BLANK = " @ "  # what a recognized expression leaves behind, so nothing reads it twice


def _fold(text: str) -> str:
    """Lowercase, no accents, `p. m.` as `pm`, punctuation (but `:` `/` `-`) as spaces."""
    plain = _NOT_KEPT.sub(" ", _MERIDIEM.sub(r" \1m ", fold(text)))
    return " ".join(plain.split())


def _take(pattern: re.Pattern[str], text: str, found: Callable[[re.Match[str]], object]) -> str:
    """Call `found` on each match of `pattern` and return `text` with the matches blanked."""

    def blank(match: re.Match[str]) -> str:
        found(match)
        return _BLANK

    return pattern.sub(blank, text)


def _words(table: dict[str, int]) -> str:
    return "|".join(sorted(table, key=len, reverse=True))


_SMALL_NUMBERS = {"un": 1, "uno": 1, "una": 1, "dos": 2, "tres": 3, "cuatro": 4, "cinco": 5}
_SMALL_NUMBERS |= {"seis": 6, "siete": 7, "ocho": 8, "nueve": 9, "diez": 10}
_HOUR_WORDS = {k: v for k, v in _SMALL_NUMBERS.items() if k not in ("un", "uno")}
_HOUR_WORDS |= {"once": 11, "doce": 12}
_MINUTE_WORDS = {"media": 30, "cuarto": 15, "cinco": 5, "diez": 10, "veinte": 20}
_MINUTE_WORDS |= {"veinticinco": 25}


def _number(word: str, table: dict[str, int]) -> int:
    return int(word) if word.isdigit() else table[word]


# --------------------------------------------------------------------------- times


def _hours(*rules: tuple[range, int]) -> dict[int, int]:
    return {hour: (hour + shift) % 24 for hours, shift in rules for hour in hours}


# The 24-hour hour each written hour means with each meridiem; a missing hour contradicts it.
_WITH_MERIDIEM: dict[str, dict[int, int]] = {
    "am": _hours((range(12), 0), (range(12, 13), -12)),
    "pm": _hours((range(1, 12), 12), (range(12, 24), 0)),
    "manana": _hours((range(12), 0)),
    "madrugada": _hours((range(7), 0), (range(12, 13), -12)),
    "tarde": _hours((range(1, 12), 12), (range(12, 24), 0)),
    "noche": _hours((range(1, 6), 0), (range(6, 12), 12), (range(12, 13), -12), (range(18, 24), 0)),
    "dia": _hours((range(1, 7), 12), (range(7, 12), 0), (range(12, 19), 0)),  # "del día": daytime
}
_PARTS = "manana|tarde|noche|madrugada"
_CLOCK = re.compile(
    r"(?P<at>\b(?:a\s+)?las?\s+)?"
    rf"(?:(?<![\d:/-])(?P<digits>\d{{1,2}})(?![\d/-])|\b(?P<word>{_words(_HOUR_WORDS)})\b)"
    r"(?::(?P<minute>\d{2})(?::(?P<second>\d{2}))?(?!\d)"
    r"|h(?P<hminute>\d{2})\b"
    r"|\s*(?P<unit>h|hs|hrs?|horas?)\b)?"
    rf"(?:\s+(?P<sign>y|menos)\s+(?P<offset>{_words(_MINUTE_WORDS)}|\d{{1,2}})\b)?"
    rf"(?:\s*(?P<ampm>[ap])m\b|\s+(?:de|en|por)\s+la\s+(?P<part>{_PARTS})\b"
    r"|\s+del?\s+(?P<day>dia|medio\s*dia)\b)?"
)
_DETACHED_PART = re.compile(rf"\b(?:(?:de|por|en|a)\s+la|(?P<this>esta))\s+(?P<part>{_PARTS})\b")
_NOON = re.compile(r"\b(?:medio\s*dia|medianoche)\b")
_IN_HOURS = re.compile(rf"\b(?:en|dentro\s+de)\s+(?:\d+|{_words(_SMALL_NUMBERS)})\s+horas?\b")
_ASK_TIME = "¿A qué hora exactamente? Por ejemplo: «a las 3 de la tarde» o «15:00»."


@dataclass(frozen=True, slots=True)
class _Clock:
    """One written time: `hour` as written, `offset` from "y cuarto" / "menos cuarto"."""

    hour: int
    minute: int
    offset: int
    as_written: bool  # H:MM, zero-padded, 0 or 12..23: no morning/afternoon doubt
    meridiem: str | None


@dataclass(slots=True)
class _Times:
    clocks: list[_Clock] = field(default_factory=list)
    fixed: list[int] = field(default_factory=list)  # minutes of the day (mediodía)
    parts: list[str] = field(default_factory=list)  # parts of the day not attached to an hour
    rest: str = ""  # the text without any of them, for the date reader


def _clock(match: re.Match[str]) -> _Clock | None:
    """The time a `_CLOCK` match writes, or None for a plain number (a day, a count)."""
    sign, offset = match["sign"], match["offset"]
    says_time = any(match[g] for g in ("at", "minute", "hminute", "unit", "ampm", "part", "day"))
    if not (says_time or offset in ("media", "cuarto")):
        return None
    if match["second"] not in (None, "00"):
        raise UnclearWhen(_ASK_TIME)
    digits = match["digits"]
    hour = int(digits) if digits else _HOUR_WORDS[match["word"]]
    minutes = _number(offset, _MINUTE_WORDS) if offset else 0
    if minutes > 59:
        raise UnclearWhen(_ASK_TIME)
    colon = match["minute"] or match["hminute"]
    meridiem = "am" if match["ampm"] == "a" else "pm" if match["ampm"] else None
    return _Clock(
        hour=hour,
        minute=int(colon) if colon else 0,
        offset=-minutes if sign == "menos" else minutes,
        as_written=bool(match["minute"]) or bool(digits and digits.startswith("0")),
        meridiem=meridiem or match["part"] or ("dia" if match["day"] else None),
    )


def _scan_times(folded: str) -> _Times:
    """Every time expression of `folded`, and the text with them blanked out."""
    times = _Times()

    def clock(match: re.Match[str]) -> str:
        found = _clock(match)
        if found is None:
            return match[0]
        times.clocks.append(found)
        return _BLANK

    def part(match: re.Match[str]) -> str:
        times.parts.append(match["part"])
        return " hoy " if match["this"] else _BLANK  # "esta tarde" is also a day: today

    text = _IN_HOURS.sub(_BLANK, folded)  # "en 3 horas" is no hour of the clock
    if re.fullmatch(r"\d{1,2}", text):
        text = f"a las {text}"  # a bare "15" is an hour
    text = _CLOCK.sub(clock, text)
    text = _take(_NOON, text, lambda m: times.fixed.append(0 if "noche" in m[0] else 12 * 60))
    times.rest = _DETACHED_PART.sub(part, text)
    return times


# "a las 10" is 10:00: nobody asks for an appointment at 22:00, and the summary the customer
# confirms shows the hour. From 1 to 8 both halves of the day are plausible, so those ask.
_MORNING_HOURS = range(9, 12)


def _minutes(clock: _Clock, context: str | None) -> frozenset[int]:
    """The minutes of the day `clock` may mean: one, or two when the meridiem is missing."""
    if clock.hour > 23 or clock.minute > 59:
        raise UnclearWhen(_ASK_TIME)
    meridiem = clock.meridiem or context
    if meridiem is not None:
        hour = _WITH_MERIDIEM[meridiem].get(clock.hour)
        if hour is None:
            raise UnclearWhen(_ASK_TIME)
        hours = {hour}
    elif clock.as_written or not 1 <= clock.hour <= 11 or clock.hour in _MORNING_HOURS:
        hours = {clock.hour}
    else:
        hours = {clock.hour, clock.hour + 12}
    return frozenset((h * 60 + clock.minute + clock.offset) % (24 * 60) for h in hours)


def _ask_meridiem(early: int) -> str:
    """Which of `early` (before noon) and twelve hours later the customer means."""
    hour, minute = divmod(early, 60)
    if hour == 0:
        return f"¿A las 00:{minute:02d} o a las 12:{minute:02d}?"
    clock = f"{hour}:{minute:02d}" if minute else str(hour)
    article = "la" if hour == 1 else "las"
    late = "de la tarde" if hour + 12 < 19 else "de la noche"
    return f"¿A {article} {clock} de la mañana o {late}?"


def resolve_time(text: str) -> time:
    """The one time of day `text` names; raises UnclearWhen with a question otherwise."""
    times = _scan_times(_fold(text))
    context = times.parts[0] if len(set(times.parts)) == 1 else None
    options = [_minutes(c, context) for c in times.clocks]
    options += [frozenset({m}) for m in times.fixed]
    if not options:
        raise UnclearWhen(f"¿A qué hora de la {context}?" if context else _ASK_TIME)
    common = sorted(frozenset.intersection(*options))
    if len(common) == 1:
        return time(*divmod(common[0], 60))
    raise UnclearWhen(_ask_meridiem(common[0]) if len(common) == 2 else _ASK_TIME)


# --------------------------------------------------------------------------- dates

_MONTHS = {name: number for number, name in enumerate(MONTH_NAMES, start=1)}
_MONTHS |= {"setiembre": 9, "sept": 9, "set": 9}
_MONTHS |= {name[:3]: number for name, number in list(_MONTHS.items())}
_MONTH = rf"(?P<month>{_words(_MONTHS)})"
_WEEKDAY = rf"(?P<weekday>{'|'.join(WEEKDAY_KEYS)})"
_DAY = r"(?P<day>\d{1,2}|primero)(?:ro)?"
_YEAR = r"(?P<year>\d{4})"

_ISO = re.compile(r"(?<!\d)(?P<year>\d{4})-(?P<month>\d{1,2})-(?P<day>\d{1,2})(?!\d)")
_NUMERIC = re.compile(
    r"(?<![\d/-])(?P<day>\d{1,2})(?P<sep>[/-])(?P<month>\d{1,2})"
    r"(?:(?P=sep)(?P<year>\d{4}|\d{2}))?(?![\d/-])"
)
_DAY_MONTH = re.compile(rf"(?<!\d){_DAY}\s+(?:de\s+)?{_MONTH}\b(?:\s+(?:del?\s+)?{_YEAR}\b)?")
_MONTH_DAY = re.compile(rf"\b{_MONTH}\s+{_DAY}(?![\d:/-])(?:\s+(?:del?\s+)?{_YEAR}\b)?")
_RELATIVE = re.compile(
    rf"\b(?:en|dentro\s+de)\s+(?P<count>\d{{1,3}}|{_words(_SMALL_NUMBERS)})\s+"
    r"(?P<unit>dias?|semanas?)\b"
)
_NEXT_WEEK = re.compile(
    r"\b(?:(?:proxima|siguiente|otra)\s+semana|semana\s+(?:que\s+viene|proxima|siguiente|entrante))\b"
)
_THIS_WEEK = re.compile(r"\b(?:esta|presente)\s+semana\b")
_NEXT_MONTH = re.compile(
    r"\b(?:(?:proximo|siguiente)\s+mes|mes\s+(?:que\s+viene|proximo|siguiente|entrante))\b"
)
_THIS_MONTH = re.compile(r"\b(?:este|presente)\s+mes\b")
_WEEKDAY_TEXT = re.compile(
    rf"\b(?:(?P<before>este|esta|proxim[oa]|siguiente)\s+)?{_WEEKDAY}\b"
    r"(?:\s+(?:proxim[oa]|siguiente|entrante|que\s+viene)\b)?"
    rf"(?:\s+{_DAY}(?![\d:/-]))?"
)
_DAY_ONLY = re.compile(rf"\b(?:el|dia)\s+(?:dia\s+)?{_DAY}(?![\d:/-])")
_WORDS: tuple[tuple[re.Pattern[str], int], ...] = (
    (re.compile(r"\bpasado\s+manana\b"), 2),
    (re.compile(r"\bmanana\b"), 1),
    (re.compile(r"\bhoy\b"), 0),
)

_Period = Literal["this", "next"]


@dataclass(frozen=True, slots=True)
class _Weekday:
    index: int  # Monday = 0
    this: bool  # "este sábado": today counts


@dataclass(slots=True)
class _Dates:
    dates: list[date] = field(default_factory=list)
    weekdays: list[_Weekday] = field(default_factory=list)
    days: list[int] = field(default_factory=list)  # day of the month only: "el 15"
    week: _Period | None = None
    month: _Period | None = None


def _safe_date(year: int, month: int, day: int) -> date | None:
    try:
        return date(year, month, day)
    except ValueError:
        return None


def _next_month(day: date) -> tuple[int, int]:
    return (day.year + 1, 1) if day.month == 12 else (day.year, day.month + 1)


def _day_number(text: str) -> int:
    return 1 if text == "primero" else int(text)


def _month_number(text: str) -> int:
    return int(text) if text.isdigit() else _MONTHS[text]


def _generic(today: date) -> str:
    monday = today + timedelta(days=7 - today.weekday())
    return f"¿Qué día exactamente? Por ejemplo: «el {_plain(monday, today)}»"


def _next_leap_day(today: date) -> date:
    year = today.year if today <= date(today.year, 2, 28) else today.year + 1
    while _safe_date(year, 2, 29) is None:
        year += 1
    return date(year, 2, 29)


def _no_such_day(day: int, month: int, year: int | None, today: date) -> UnclearWhen:
    if (day, month, year) == (29, 2, None):
        said = f"El próximo 29 de febrero es el {_plain(_next_leap_day(today), today)}."
    else:
        written = f"{day} de {MONTH_NAMES[month - 1]}" + (f" de {year}" if year else "")
        said = f"El {written} no existe."
    return UnclearWhen(f"{said} {_generic(today)}")


def _year(written: str | None) -> int | None:
    if written is None:
        return None
    return int(written) + (2000 if len(written) == 2 else 0)


def _with_year(match: re.Match[str], today: date) -> date:
    """A day and month, with the year written or as `_without_year` finds it."""
    day, month = _day_number(match["day"]), _month_number(match["month"])
    year = _year(match["year"])
    if not 1 <= month <= 12:
        raise UnclearWhen(_generic(today))
    found = _without_year(month, day, today) if year is None else _safe_date(year, month, day)
    if found is None:
        raise _no_such_day(day, month, year, today)
    return found


def _without_year(month: int, day: int, today: date) -> date | None:
    """The first such day on or after `PAST_DAYS` days ago, looking until next year."""
    earliest = today - timedelta(days=PAST_DAYS)
    for year in (today.year - 1, today.year, today.year + 1):
        found = _safe_date(year, month, day)
        if found is not None and found >= earliest:
            return found
    return None


def _period(
    text: str, upcoming: re.Pattern[str], current: re.Pattern[str]
) -> tuple[_Period | None, str]:
    """Which week (or month) `text` speaks of, and `text` without it."""
    period: _Period | None = None
    if current.search(text):
        period, text = "this", current.sub(_BLANK, text)
    if upcoming.search(text):
        period, text = "next", upcoming.sub(_BLANK, text)
    return period, text


def _scan_dates(text: str, today: date) -> _Dates:
    """Every date expression of `text` (whose times are already blanked)."""
    found = _Dates()

    def add_weekday(match: re.Match[str]) -> None:
        index = WEEKDAY_KEYS.index(match["weekday"])
        found.weekdays.append(_Weekday(index, this=match["before"] in ("este", "esta")))
        if match["day"]:
            found.days.append(_day_number(match["day"]))

    def add_relative(match: re.Match[str]) -> None:
        count = _number(match["count"], _SMALL_NUMBERS)
        found.dates.append(today + timedelta(days=count * (7 if "semana" in match["unit"] else 1)))

    text = _take(_ISO, text, lambda m: found.dates.append(_with_year(m, today)))
    text = _take(_NUMERIC, text, lambda m: found.dates.append(_with_year(m, today)))
    text = _take(_DAY_MONTH, text, lambda m: found.dates.append(_with_year(m, today)))
    text = _take(_MONTH_DAY, text, lambda m: found.dates.append(_with_year(m, today)))
    text = _take(_RELATIVE, text, add_relative)
    for pattern, ahead in _WORDS:
        found.dates += [today + timedelta(days=ahead)] * len(pattern.findall(text))
        text = pattern.sub(_BLANK, text)
    found.week, text = _period(text, _NEXT_WEEK, _THIS_WEEK)
    found.month, text = _period(text, _NEXT_MONTH, _THIS_MONTH)
    text = _take(_WEEKDAY_TEXT, text, add_weekday)
    _take(_DAY_ONLY, text, lambda m: found.days.append(_day_number(m["day"])))
    return found


def _monday(day: date) -> date:
    return day - timedelta(days=day.weekday())


def _weekday_date(weekday: _Weekday, week: _Period | None, today: date) -> date:
    """The date a weekday names, by the rules of the module docstring."""
    if week == "next":
        return _monday(today) + timedelta(days=7 + weekday.index)
    if week == "this":
        return _monday(today) + timedelta(days=weekday.index)
    ahead = (weekday.index - today.weekday()) % 7
    return today + timedelta(days=ahead if weekday.this else ahead or 7)


def _weekday_conflict(day: date, weekday: int, today: date) -> UnclearWhen:
    """`day` is not a `weekday`: offer it and the nearest such weekday (not before today)."""
    ahead = (weekday - day.weekday()) % 7
    nearest = day + timedelta(days=ahead if ahead <= 3 else ahead - 7)
    if nearest < today:
        nearest = day + timedelta(days=ahead)
    return UnclearWhen(
        f"El {day.day} de {MONTH_NAMES[day.month - 1]} es {WEEKDAY_NAMES[day.weekday()]}, "
        f"no {WEEKDAY_NAMES[weekday]}. "
        f"¿Prefieres el {_plain(nearest, today)} o el {_plain(day, today)}?"
    )


def _which(first: date, second: date, today: date) -> UnclearWhen:
    first, second = sorted((first, second))
    return UnclearWhen(f"¿Te refieres al {_plain(first, today)} o al {_plain(second, today)}?")


def _day_of_month(day: int, today: date, month: _Period | None, weekday: int | None) -> date:
    """`el 15` (with, perhaps, a weekday or a month): see the module docstring."""
    this_month = _safe_date(today.year, today.month, day)
    next_month = _safe_date(*_next_month(today), day)
    if month is not None:
        found = this_month if month == "this" else next_month
        if found is None:
            raise UnclearWhen(f"Ese mes no tiene día {day}. {_generic(today)}")
        candidates = [found]
    else:
        # Next month's only once this month's has passed: a weekday may then confirm it.
        upcoming = this_month if this_month is not None and this_month >= today else next_month
        candidates = [upcoming] if upcoming is not None else []
    if weekday is not None:
        for candidate in candidates:
            if candidate.weekday() == weekday:
                return candidate
        if candidates:
            raise _weekday_conflict(candidates[0], weekday, today)
    if month is not None or (this_month is not None and this_month >= today):
        return candidates[0]
    month_name = MONTH_NAMES[today.month - 1]
    if this_month is None and next_month is not None:
        raise UnclearWhen(
            f"{month_name.capitalize()} no tiene día {day}. "
            f"¿Te refieres al {_plain(next_month, today)}?"
        )
    if next_month is None:
        raise UnclearWhen(_generic(today))
    raise UnclearWhen(f"¿Te refieres al {_plain(next_month, today)}?")


def _decide(found: _Dates, today: date) -> date:
    """One date from everything the text named, or a question."""
    dates = sorted(set(found.dates))
    if len(dates) > 1:
        raise _which(dates[0], dates[1], today)
    weekdays = list({w.index: w for w in found.weekdays}.values())
    if len(weekdays) > 1:
        first, second = (_weekday_date(w, found.week, today) for w in weekdays[:2])
        raise _which(first, second, today)
    weekday = weekdays[0].index if weekdays else None
    days = sorted(set(found.days))
    if len(days) > 1:
        raise UnclearWhen(f"¿El día {days[0]} o el día {days[1]}? {_generic(today)}")
    if dates:
        if days and dates[0].day != days[0]:
            raise UnclearWhen(f"¿Te refieres al {_plain(dates[0], today)} o al día {days[0]}?")
        if weekday is not None and dates[0].weekday() != weekday:
            raise _weekday_conflict(dates[0], weekday, today)
        return dates[0]
    if days:
        return _day_of_month(days[0], today, found.month, weekday)
    if found.month is not None:
        raise UnclearWhen(f"¿Qué día {'de este' if found.month == 'this' else 'del próximo'} mes?")
    if weekdays:
        return _weekday_date(weekdays[0], found.week, today)
    if found.week is not None:
        monday = _monday(today) + timedelta(days=7 if found.week == "next" else 0)
        which = "la próxima" if found.week == "next" else "esta"
        raise UnclearWhen(
            f"¿Qué día de {which} semana? Va del {_plain(monday, today)} "
            f"al {_plain(monday + timedelta(days=6), today)}."
        )
    raise UnclearWhen(_generic(today))


def _require_date(today: date) -> None:
    if isinstance(today, datetime):
        # A datetime's date is in whatever zone it carries; make the caller choose the business's.
        raise TypeError("today must be a date: pass now.astimezone(zone).date()")


def resolve_date(text: str, today: date) -> date:
    """The one date `text` names, `today` being the business's local date.

    Raises UnclearWhen with a question for the customer when the text names no date, several,
    or one that needs confirming (see the module docstring).
    """
    _require_date(today)
    return _decide(_scan_dates(_scan_times(_fold(text)).rest, today), today)


# --------------------------------------------------------------------------- writing


def _plain(day: date, today: date | None = None) -> str:
    """ "lunes 7 de diciembre", with "de 2027" when `today` is given and the year is needed."""
    text = f"{WEEKDAY_NAMES[day.weekday()]} {day.day} de {MONTH_NAMES[day.month - 1]}"
    if today is not None and _without_year(day.month, day.day, today) != day:
        text += f" de {day.year}"
    return text


def describe_day(day: date, today: date | None = None) -> str:
    """A date as the customer would say it: "lunes 7 de diciembre".

    With `today` (the business's local date): "hoy lunes 30 de noviembre" for today,
    "mañana martes 1 de diciembre" for tomorrow, and the year is added ("... de 2028") whenever
    the date without it would be read as another one. Without `today`, never a year: such text
    reads back to the same date for days from 60 days ago to 300 days ahead.
    """
    if today is not None:
        _require_date(today)
    text = _plain(day, today)
    if today is not None:
        prefix = {0: "hoy ", 1: "mañana "}.get((day - today).days, "")
        text = prefix + text
    return text


def describe_slot(start: datetime | tuple[date, time]) -> str:
    """A slot's start as "lunes 7 de diciembre a las 10:00" (how replies and tool results say
    it); a datetime's wall time as it stands."""
    day, at = (start.date(), start.time()) if isinstance(start, datetime) else start
    return f"{describe_day(day)} a las {at:%H:%M}"


def calendar_lines(today: date, days: int = 14) -> list[str]:
    """The `days` days from today, one line each, as shown to the model:
    "hoy: lunes 30 de noviembre (2026-11-30)", "mañana: martes 1 de diciembre (2026-12-01)",
    "miércoles 2 de diciembre (2026-12-02)", ...
    """
    _require_date(today)
    if days < 0:
        raise ValueError(f"days must not be negative, got {days}")
    lines = []
    for ahead in range(days):
        day = today + timedelta(days=ahead)
        label = {0: "hoy: ", 1: "mañana: "}.get(ahead, "")
        lines.append(f"{label}{_plain(day, today)} ({day.isoformat()})")
    return lines
