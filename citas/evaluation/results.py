"""What an evaluation found, as the models of its JSON report (`citas-eval-report/1`): every run
of every case with its turns, and the figures per case and overall. `--compare` reads an earlier
report back through the same models."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from citas.errors import CitasError
from citas.replay.format import load_model_file

REPORT_FORMAT: Literal["citas-eval-report/1"] = "citas-eval-report/1"


class ReportError(CitasError):
    """A report file cannot be read or is not one; the message names the file."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Tokens(_Model):
    prompt: int = 0
    completion: int = 0
    cached: int = 0

    def __add__(self, other: Tokens) -> Tokens:
        return Tokens(
            prompt=self.prompt + other.prompt,
            completion=self.completion + other.completion,
            cached=self.cached + other.cached,
        )


class BookingCounts(_Model):
    """Bookings made against those expected: `right` (as expected), `wrong` (made instead of an
    expected one, with another slot, name or email), `missing` (expected, none made for it),
    `unexpected` (made, none expected)."""

    right: int = 0
    wrong: int = 0
    missing: int = 0
    unexpected: int = 0

    def __add__(self, other: BookingCounts) -> BookingCounts:
        return BookingCounts(
            right=self.right + other.right,
            wrong=self.wrong + other.wrong,
            missing=self.missing + other.missing,
            unexpected=self.unexpected + other.unexpected,
        )

    @property
    def expected(self) -> int:
        return self.right + self.wrong + self.missing


class Booking(_Model):
    """A calendar event the conversation created, in the business's local time."""

    date: str
    time: str
    name: str
    email: str

    def __str__(self) -> str:
        return f"{self.date} {self.time} {self.name} <{self.email}>"


class ToolCallRecord(_Model):
    name: str
    arguments: Any = Field(description="decoded JSON arguments, or the raw string if not JSON")
    result: dict[str, Any] | None


class TurnRecord(_Model):
    customer: str
    reply: str
    url: str | None = None
    status: int
    error: str | None = None
    seconds: float
    model_calls: int
    tokens: Tokens
    tool_calls: list[ToolCallRecord]
    bookings: list[Booking]


class RunResult(_Model):
    run: int  # 1-based
    passed: bool
    failures: list[str] = Field(description="why it did not pass, in words; [] when it passed")
    bookings: BookingCounts
    unbooked_claims: int = Field(description="replies claiming a booking when none was made")
    unchanged_claims: int = Field(
        0, description="replies claiming a cancellation or a reschedule when none was made"
    )
    invalid_tool_calls: int
    model_calls: int
    tokens: Tokens
    errors: list[str] = Field(description="turn HTTP errors, error codes, exceptions")
    turns: list[TurnRecord]
    appointments: list[str] | None = Field(
        None,
        description="the customer's own appointments left afterwards (YYYY-MM-DD HH:MM), when "
        "the case judges them",
    )


class Seconds(_Model):
    p50: float
    p95: float


class Figures(_Model):
    """The numbers of one case, or of the whole evaluation (then pass^1 and pass^k are the
    means over the cases that ran)."""

    runs: int
    passed: int
    pass1: float = Field(alias="pass^1")
    passk: float = Field(alias="pass^k")
    bookings: BookingCounts
    unbooked_claims: int
    unchanged_claims: int = 0
    invalid_tool_calls: int
    model_calls: int
    tokens: Tokens
    seconds_per_turn: Seconds | None
    errors: int


class CaseResult(_Model):
    name: str
    title: str
    skipped: str | None = Field(None, description="why the case did not run")
    figures: Figures | None = None
    runs: list[RunResult] = Field(default_factory=list)


Verdict = Literal["better", "worse", "same", "new", "gone", "skipped"]


class CaseChange(_Model):
    """One case in two reports: the figures before and after, and the verdict."""

    name: str
    verdict: Verdict
    pass1_before: float | None = None
    pass1_after: float | None = None
    passk_before: float | None = None
    passk_after: float | None = None
    right_before: str | None = Field(None, description="bookings right of expected: `2/3`")
    right_after: str | None = None


class Comparison(_Model):
    previous: str = Field(description="the earlier report's file")
    previous_model: str
    previous_k: int
    overall: CaseChange
    cases: list[CaseChange]


class Report(_Model):
    format: Literal["citas-eval-report/1"] = REPORT_FORMAT
    model: str
    k: int
    demo: bool
    figures: Figures
    cases: list[CaseResult]
    comparison: Comparison | None = None

    def to_json(self) -> str:
        return self.model_dump_json(by_alias=True, indent=2) + "\n"


def load_report(path: Path) -> Report:
    return load_model_file(path, Report, ReportError, "not an evaluation report: ")
