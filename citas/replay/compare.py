"""What a turn was expected to do against what it did, as a list of readable differences; and
the expectation a turn's outcome would satisfy (for `--record` and `--update`)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from citas.replay.format import Expectation, ExpectedBooking, ExpectedCall
from citas.sandbox import Event
from citas.sandbox.state import DATETIME_FORMAT
from citas.testing.harness import ObservedCall, TurnOutcome

RESULT_FIELDS = (
    "ok",
    "error",
    "disponible",
    "motivo",
    "alternativas",
    "horarios_libres",
    "reservado",
    "ya_existia",
    "resultados",
    "citas",
    "cancelada",
    "reprogramada",
    "pendiente_confirmacion",
)
"""Tool-result fields an expectation keeps: what decides how the conversation goes. `mensaje`
is left out (it restates them in words); a hand-written expectation may still add it."""

_OFFERING_FIELDS = ("tipo", "nombre", "precio")
_MISSING = object()


@dataclass(frozen=True, slots=True)
class Difference:
    """One way a turn did not go as recorded: `where` (e.g. `tool_calls[0].result.motivo`)."""

    where: str
    expected: Any
    actual: Any

    def __str__(self) -> str:
        return f"{self.where}: expected {show_value(self.expected)}, got {show_value(self.actual)}"


def compare(expect: Expectation, outcome: TurnOutcome) -> list[Difference]:
    """Every difference between `expect` and `outcome`; empty when the turn went as recorded."""
    diffs = _compare_calls(expect.tool_calls, outcome.tool_calls)
    diffs += _compare_bookings(expect.bookings, outcome.bookings)
    for where, expected, actual in (
        ("reply", expect.reply, outcome.reply),
        ("url", expect.url, outcome.url),
        ("error", expect.error, outcome.error),
        ("handoff", expect.handoff, outcome.handoff),
        ("paused", expect.paused, outcome.paused),
    ):
        if expected != actual:
            diffs.append(Difference(where, expected, actual))
    return diffs


def expectation(outcome: TurnOutcome) -> Expectation:
    """The expectation `outcome` satisfies, keeping only the deciding result fields."""
    return Expectation(
        tool_calls=[
            ExpectedCall(
                name=call.name,
                arguments=call.decoded_arguments(),
                result=None if call.result is None else _deciding(call.result),
            )
            for call in outcome.tool_calls
        ],
        bookings=[_booking(event) for event in outcome.bookings],
        reply=outcome.reply,
        url=outcome.url,
        error=outcome.error,
        handoff=outcome.handoff,
        paused=outcome.paused,
    )


def subset_differences(where: str, expected: Any, actual: Any) -> list[Difference]:
    """Objects match when every expected key matches (extra actual keys are fine); lists need
    the same length and matching items; anything else must be equal (true is not 1)."""
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return [Difference(where, expected, actual)]
        diffs = []
        for key, value in expected.items():
            found = actual.get(key, _MISSING)
            if found is _MISSING:
                diffs.append(Difference(f"{where}.{key}", value, _MISSING))
            else:
                diffs += subset_differences(f"{where}.{key}", value, found)
        return diffs
    if isinstance(expected, list):
        if not isinstance(actual, list) or len(actual) != len(expected):
            return [Difference(where, expected, actual)]
        return [
            diff
            for index, (item, found) in enumerate(zip(expected, actual, strict=True))
            for diff in subset_differences(f"{where}[{index}]", item, found)
        ]
    if expected != actual or isinstance(expected, bool) != isinstance(actual, bool):
        return [Difference(where, expected, actual)]
    return []


def _compare_calls(expected: list[ExpectedCall], actual: list[ObservedCall]) -> list[Difference]:
    diffs = []
    if [c.name for c in expected] != [c.name for c in actual]:
        diffs.append(Difference("tool_calls", _Calls([c.name for c in expected]), _Calls(actual)))
        if len(expected) != len(actual):
            return diffs
    for index, (want, got) in enumerate(zip(expected, actual, strict=True)):
        where = f"tool_calls[{index}]"
        if want.name == got.name and want.arguments != got.decoded_arguments():
            diffs.append(Difference(f"{where}.arguments", want.arguments, got.decoded_arguments()))
        if want.result is not None:
            diffs += subset_differences(f"{where}.result", want.result, got.result)
    return diffs


def _compare_bookings(expected: list[ExpectedBooking], actual: list[Event]) -> list[Difference]:
    made = [_booking(event).model_dump(mode="json") for event in actual]
    wanted = [booking.model_dump(mode="json") for booking in expected]
    if len(made) != len(wanted):
        return [Difference("bookings", _Bookings(wanted), _Bookings(made))]
    return [
        diff
        for index, (want, got) in enumerate(zip(wanted, made, strict=True))
        for diff in subset_differences(f"bookings[{index}]", want, got)
    ]


def _booking(event: Event) -> ExpectedBooking:
    return ExpectedBooking(
        fecha_inicio=event.fecha_inicio.strftime(DATETIME_FORMAT),
        fecha_fin=event.fecha_fin.strftime(DATETIME_FORMAT),
        cliente_nombre=event.cliente_nombre,
        cliente_correo=event.cliente_correo,
        cliente_telefono=event.cliente_telefono or None,
    )


def _deciding(result: dict[str, Any]) -> dict[str, Any]:
    kept = {key: result[key] for key in RESULT_FIELDS if key in result}
    if isinstance(kept.get("resultados"), list):
        kept["resultados"] = [
            {k: item[k] for k in _OFFERING_FIELDS if k in item} if isinstance(item, dict) else item
            for item in kept["resultados"]
        ]
    return kept


class _Calls(list[str]):
    """Tool calls shown by name only: `[check_availability, create_booking]`."""

    def __init__(self, calls: list[str] | list[ObservedCall]) -> None:
        super().__init__(c if isinstance(c, str) else c.name for c in calls)

    def __repr__(self) -> str:
        return "[" + ", ".join(self) + "]" if self else "no tool calls"


class _Bookings(list[dict[str, Any]]):
    def __repr__(self) -> str:
        if not self:
            return "no booking"
        return ", ".join(
            f"{b.get('fecha_inicio')} {b.get('cliente_nombre', '')} <{b.get('cliente_correo', '')}>"
            for b in self
        )


def show_value(value: Any) -> str:
    """A value as JSON; tool-call and booking lists in short form; a missing key as `nothing`."""
    if value is _MISSING:
        return "nothing"
    if isinstance(value, _Calls | _Bookings):
        return repr(value)
    return json.dumps(value, ensure_ascii=False)
