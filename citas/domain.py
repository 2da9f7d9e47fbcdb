"""Business types and the pure scheduling rules; no I/O here, so every rule is unit-testable."""

from __future__ import annotations

import enum
import functools
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, available_timezones

WEEKDAY_KEYS = ("lunes", "martes", "miercoles", "jueves", "viernes", "sabado", "domingo")
WEEKDAY_NAMES = ("lunes", "martes", "miércoles", "jueves", "viernes", "sábado", "domingo")
LOCAL_FORMAT = "%Y-%m-%d %H:%M:%S"


@dataclass(frozen=True, slots=True)
class Tenant:
    """Who a turn is for; taken only from the gateway's request, never from the model."""

    id_empresa: int
    zone: ZoneInfo
    duration_minutes: int
    usuario_id: int | None = None
    personalidad: str | None = None
    currency: str = "PEN"  # ISO 4217: how prices are written (`citas.money`)
    email_required: bool = True  # `correo_obligatorio`: a booking needs the customer's email


@dataclass(frozen=True, slots=True)
class ConversationKey:
    id_empresa: int
    session_id: str

    def __str__(self) -> str:
        return f"{self.id_empresa}:{self.session_id}"


@dataclass(frozen=True, slots=True)
class TimeRange:
    start: time
    end: time

    def __post_init__(self) -> None:
        if self.end <= self.start:
            raise ValueError(f"empty opening range {self.start}-{self.end}")


@dataclass(frozen=True, slots=True)
class OpeningHours:
    """Opening ranges per weekday, Monday first (index = date.weekday())."""

    days: tuple[tuple[TimeRange, ...], ...] = field(default=((),) * 7)

    def ranges_on(self, day: date) -> tuple[TimeRange, ...]:
        return self.days[day.weekday()]

    def describe(self) -> list[str]:
        """One Spanish line per weekday, for the prompt and for refusals."""
        lines = []
        for name, ranges in zip(WEEKDAY_NAMES, self.days, strict=True):
            text = ", ".join(f"{r.start:%H:%M}–{r.end:%H:%M}" for r in ranges) or "cerrado"
            lines.append(f"{name}: {text}")
        return lines


@dataclass(frozen=True, slots=True)
class Faq:
    question: str
    answer: str


@dataclass(frozen=True, slots=True)
class Offering:
    """A service or a product of the business."""

    id: int
    kind: str
    name: str
    price: float | None
    description: str
    duration_minutes: int | None = None  # a service's own length (`duracion_minutos`)


@dataclass(frozen=True, slots=True)
class BusinessInfo:
    """What the prompt and the rules know about a business; one cached value per business."""

    context: str
    faqs: tuple[Faq, ...]
    hours: OpeningHours
    services: tuple[Offering, ...]
    products: tuple[Offering, ...]


@dataclass(frozen=True, slots=True)
class Slot:
    """An appointment interval; `start` is aware and expressed in the business's zone.

    A wall time that occurs twice (a DST fall-back) means its first occurrence (`fold=0`), as
    the backend's naive local dates cannot tell the two apart anyway.
    """

    start: datetime
    duration: timedelta

    @classmethod
    def at(cls, day: date, at: time, zone: ZoneInfo, minutes: int) -> Slot:
        return cls(datetime.combine(day, at, tzinfo=zone), timedelta(minutes=minutes))

    @property
    def instant(self) -> datetime:
        """The start in UTC. Aware datetimes that share a tzinfo compare and subtract as wall
        times (ignoring DST), so every comparison between instants goes through UTC."""
        return self.start.astimezone(UTC)

    @property
    def end(self) -> datetime:
        # Absolute arithmetic: a 60-minute slot lasts 60 real minutes even across a DST change.
        return (self.instant + self.duration).astimezone(self.start.tzinfo)

    @property
    def local_start(self) -> str:
        return self.start.strftime(LOCAL_FORMAT)

    @property
    def local_end(self) -> str:
        return self.end.strftime(LOCAL_FORMAT)

    def exists(self) -> bool:
        """False for wall times skipped by a DST jump (e.g. 00:30 when clocks go 00:00 → 01:00)."""
        round_trip = self.instant.astimezone(self.start.tzinfo)
        return round_trip.replace(tzinfo=None) == self.start.replace(tzinfo=None)


def parse_local(text: str, zone: ZoneInfo) -> datetime:
    """A backend date ("YYYY-MM-DD HH:MM:SS", local to the business) as an aware datetime."""
    return local_time(text).replace(tzinfo=zone)


@functools.lru_cache(maxsize=4096)
def local_time(text: str) -> datetime:
    """A local date and time as written in `LOCAL_FORMAT` (the ledger's slots, the backend's
    dates), naive. Cached: a turn reads the same few slot strings again and again (every slot
    shown is matched against the customer's words), and `strptime` costs more than the rest of
    such a check; datetimes are immutable, so sharing them is safe."""
    return datetime.strptime(text, LOCAL_FORMAT)


# Not zones of the IANA database but the host's or the tz tooling's own: "localtime" is the
# host's zone (which plays no part in citas), "Factory" a placeholder, "posixrules" a template.
_PSEUDO_ZONES = frozenset({"localtime", "Factory", "posixrules"})

ZONE_NAMES: frozenset[str] = frozenset(
    name
    for name in available_timezones()
    if name not in _PSEUDO_ZONES and not name.startswith(("posix/", "right/"))
)
"""The IANA zone names a business's zone may be given as."""


def is_zone_name(name: str) -> bool:
    return name in ZONE_NAMES


class SlotProblem(enum.Enum):
    """Why a slot cannot be booked; the value is the Spanish explanation for the model."""

    NONEXISTENT = "esa hora no existe ese día por el cambio de horario"
    PAST = "esa fecha y hora ya pasaron"
    TOO_SOON = "es demasiado pronto: se necesita más anticipación"
    TOO_FAR = "es demasiado lejana: aún no se agenda con tanta anticipación"
    CLOSED_DAY = "ese día el negocio no atiende"
    OUTSIDE_HOURS = "está fuera del horario de atención"
    TAKEN = "ese horario ya está ocupado"


@dataclass(frozen=True, slots=True)
class SlotRules:
    """The rules a slot must pass before the calendar is even asked.

    Notice and horizon are elapsed time (UTC arithmetic); opening hours are wall-clock times of
    the slot's own zone. The process's zone (`TZ`) plays no part.
    """

    min_notice: timedelta = timedelta(minutes=30)
    horizon: timedelta = timedelta(days=90)

    def earliest(self, now: datetime) -> datetime:
        """The first bookable instant (UTC): `now` plus the minimum notice."""
        return now.astimezone(UTC) + self.min_notice

    def latest(self, now: datetime) -> datetime:
        """The last bookable instant (UTC): `now` plus the horizon."""
        return now.astimezone(UTC) + self.horizon

    def problem(self, slot: Slot, hours: OpeningHours, now: datetime) -> SlotProblem | None:
        """The first rule `slot` breaks at instant `now` (any aware datetime), or None."""
        if not slot.exists():
            return SlotProblem.NONEXISTENT
        start = slot.instant
        if start <= now.astimezone(UTC):
            return SlotProblem.PAST
        if start < self.earliest(now):
            return SlotProblem.TOO_SOON
        if start > self.latest(now):
            return SlotProblem.TOO_FAR
        ranges = hours.ranges_on(slot.start.date())
        if not ranges:
            return SlotProblem.CLOSED_DAY
        if not any(_inside(slot, r) for r in ranges):
            return SlotProblem.OUTSIDE_HOURS
        return None


def _inside(slot: Slot, opening: TimeRange) -> bool:
    # Wall-clock comparison on the slot's date: start and real end (start + duration) both
    # inside the range, so an hour lost or repeated by DST is judged as the clock shows it.
    end = slot.end
    return (
        end.date() == slot.start.date()
        and opening.start <= slot.start.time()
        and end.time() <= opening.end
    )
