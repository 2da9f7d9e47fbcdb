"""The evaluation case file (`citas-eval/1`): its models, and loading them.

One JSON file is one case: a business, the gateway's request context, a frozen "now", calendar
events that exist before the conversation, who plays the customer (lines sent one per turn, or
a simulated customer), and the end state expected. Every date is either written out
(`2026-12-01`) or relative to the case's own `now` (`+1`: the day after), so no case depends on
the day it runs. The README ("Evaluation") documents every field.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Sequence
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from citas.api.models import BusinessConfig, RequestContext
from citas.config import Settings
from citas.errors import CitasError
from citas.replay.format import GatewayContext, SettingsByVariable, load_model_file
from citas.sandbox import SandboxSeed
from citas.sandbox.state import Business, SeedEvent

FORMAT: Literal["citas-eval/1"] = "citas-eval/1"
DEFAULT_SESSION_ID = "51987654321"
DEFAULT_NOW = datetime(2026, 11, 30, 10, 0)
"""Monday 2026-11-30 10:00, read in the zone of the case's business when `now` is not given."""


class CaseError(CitasError):
    """An evaluation case cannot be read or is not valid; the message names the file."""


class _Model(BaseModel):
    # A typo in a hand-written case must fail loudly rather than silently mean "not expected".
    model_config = ConfigDict(extra="forbid", frozen=True)


DayText = Annotated[
    str,
    Field(
        pattern=r"^(\d{4}-\d{2}-\d{2}|\+\d{1,3})$",
        description="YYYY-MM-DD, or +N: N days after the date of the case's `now`",
    ),
]
ClockText = Annotated[str, Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$", description="HH:MM")]


def resolve_day(text: str, today: date) -> date:
    """`+N` is `today` plus N days; anything else is an ISO date."""
    if text.startswith("+"):
        return today + timedelta(days=int(text[1:]))
    return date.fromisoformat(text)


def _real_day(value: str) -> str:
    if not value.startswith("+"):
        date.fromisoformat(value)  # 2026-02-30 fails here, with the value in the message
    return value


class BusySlot(_Model):
    """A calendar event that exists before the conversation: it makes its slot taken."""

    date: DayText
    time: ClockText
    minutes: int = Field(60, ge=5, le=720)
    title: str = "Ocupado"
    mine: bool = Field(
        False, description="true: the customer's own booking (its phone is the session id)"
    )

    _day = field_validator("date")(_real_day)


class ExpectedBooking(_Model):
    """A booking that must exist afterwards; without `name`/`email` those are not compared."""

    date: DayText
    time: ClockText
    name: str | None = Field(None, min_length=1)
    email: str | None = Field(None, min_length=3)

    _day = field_validator("date")(_real_day)


class ExpectedAppointment(_Model):
    """One of the customer's own appointments (a `busy` slot with `mine`) as it must be
    afterwards: where it is, if it was not cancelled."""

    date: DayText
    time: ClockText

    _day = field_validator("date")(_real_day)


Mention = Annotated[str, Field(min_length=1)] | Annotated[list[str], Field(min_length=1)]
"""A fact some reply must say; a list means any one of its spellings will do."""


class Expectation(_Model):
    bookings: list[ExpectedBooking] = Field(
        description="exactly the bookings made in the conversation; [] for none"
    )
    appointments: list[ExpectedAppointment] | None = Field(
        None,
        description="exactly the customer's own appointments (`busy` with `mine`) left "
        "afterwards, where they are then; [] when all were cancelled; null: not judged",
    )
    mentions: list[Mention] = Field(default_factory=list)
    forbidden: list[Annotated[str, Field(min_length=1)]] = Field(default_factory=list)


class SimulatedCustomerSpec(_Model):
    """A model plays the customer: `persona` and `goal` go into its system prompt."""

    persona: str = Field(min_length=1)
    goal: str = Field(min_length=1)
    max_turns: int = Field(8, ge=1, le=30)
    first_message: str | None = Field(None, min_length=1)


class Case(_Model):
    format: Literal["citas-eval/1"]
    title: str = Field(min_length=1)
    notes: str = ""
    business: int | SandboxSeed = Field(
        description="an id_empresa of the bundled sandbox seed, or a fixture of that shape"
    )
    session_id: str = Field(DEFAULT_SESSION_ID, min_length=1, max_length=128)
    context: GatewayContext
    settings: SettingsByVariable = Field(default_factory=dict)
    now: AwareDatetime | None = None
    busy: list[BusySlot] = Field(default_factory=list)
    lines: list[Annotated[str, Field(min_length=1, pattern=r"\S")]] | None = None
    simulated_customer: SimulatedCustomerSpec | None = None
    expect: Expectation
    demo: bool = Field(True, description="false: the rule-based demo model cannot play it")

    @field_validator("business")
    @classmethod
    def _known_business(cls, value: int | SandboxSeed) -> int | SandboxSeed:
        if isinstance(value, int):
            bundled = SandboxSeed.load().empresas
            if value not in bundled:
                known = ", ".join(str(k) for k in sorted(bundled))
                raise ValueError(f"business {value} is not in the bundled seed (it has {known})")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Case:
        if (self.lines is None) == (self.simulated_customer is None):
            raise ValueError(
                "give exactly one of the customer's `lines` and a `simulated_customer`"
            )
        if self.lines is not None and not self.lines:
            raise ValueError("`lines` needs at least one line")
        if self.simulated_customer is not None and self.demo:
            raise ValueError('a simulated customer needs a model to play it: set "demo": false')
        id_empresa = self.config.id_empresa
        held = [self.business] if isinstance(self.business, int) else self.business.empresas
        if id_empresa not in held:
            raise ValueError(f"context.config.id_empresa {id_empresa} is not the case's business")
        return self

    # ------------------------------------------------------------------ derived

    @property
    def config(self) -> BusinessConfig:
        return RequestContext.model_validate(self.context).config

    @property
    def zone(self) -> ZoneInfo:
        """The zone the service uses for this business: the request's, else CITAS_TIMEZONE."""
        return ZoneInfo(self.config.zona_horaria or Settings.from_env({}, **self.settings).timezone)

    @property
    def clock(self) -> datetime:
        """The frozen "now" of every run: `now`, else Monday 2026-11-30 10:00 in `zone`."""
        return self.now or DEFAULT_NOW.replace(tzinfo=self.zone)

    @property
    def today(self) -> date:
        return self.clock.astimezone(self.zone).date()

    def day(self, text: str) -> date:
        return resolve_day(text, self.today)

    def business_data(self) -> Business:
        return self.fixture().empresas[self.config.id_empresa]

    def fixture(self) -> SandboxSeed:
        """The sandbox seed of a run: the case's business with its busy slots in the calendar
        of the request's `usuario_id` (the calendar the service asks about)."""
        seed = self.business if isinstance(self.business, SandboxSeed) else SandboxSeed.load()
        id_empresa = self.config.id_empresa
        business = seed.empresas[id_empresa]
        busy = [
            SeedEvent(
                usuario_id=self.config.usuario_id,
                fecha_inicio=start,
                fecha_fin=start + timedelta(minutes=slot.minutes),
                titulo=slot.title,
                cliente_telefono=self.session_id if slot.mine else None,
            )
            for slot in self.busy
            for start in [datetime.combine(self.day(slot.date), time.fromisoformat(slot.time))]
        ]
        empresas = dict(seed.empresas) if isinstance(self.business, SandboxSeed) else {}
        empresas[id_empresa] = business.model_copy(update={"eventos": [*business.eventos, *busy]})
        return SandboxSeed(empresas=empresas)


def load_case(path: Path) -> Case:
    """Read and validate a case; any problem is a `CaseError` naming the file."""
    return load_model_file(path, Case, CaseError)


def select_cases(folder: Path, patterns: Sequence[str] = ()) -> list[Path]:
    """The case files of `folder` whose name (with or without `.json`) matches any of the
    `patterns` (globs, or comma-separated lists of them); all of them without patterns."""
    paths = sorted(folder.glob("*.json"))
    wanted = [p.strip() for pattern in patterns for p in pattern.split(",") if p.strip()]
    if not wanted:
        return paths
    return [path for path in paths if _matches(path, wanted)]


def _matches(path: Path, patterns: Iterable[str]) -> bool:
    return any(
        fnmatch.fnmatchcase(path.name, pattern) or fnmatch.fnmatchcase(path.stem, pattern)
        for pattern in patterns
    )
