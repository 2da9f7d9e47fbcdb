"""Judging a run against its case's expected end state, and the figures over runs and cases.

A run passes when exactly the expected bookings were made, every expected fact was said, no
reply claimed a booking that had not been made, no forbidden phrase was said, and no turn
failed. pass^k is τ-bench's: for a case with `s` successes in `n` runs, C(s, k) / C(n, k), the
chance that k runs drawn from the n all passed; pass^1 is the success rate.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

from citas.agent.tools import TOOLS
from citas.evaluation.case import Case, ExpectedBooking
from citas.evaluation.claims import claims_booking, claims_change
from citas.evaluation.results import (
    Booking,
    BookingCounts,
    CaseResult,
    Figures,
    RunResult,
    Seconds,
    Tokens,
    TurnRecord,
)
from citas.evaluation.text import mentions, same_email, same_name

TOOL_NAMES = frozenset(tool.name for tool in TOOLS)
INVALID_ARGUMENTS = "invalid_arguments"
_CLIP = 90


def pass_hat_k(successes: int, runs: int, k: int) -> float:
    """C(successes, k) / C(runs, k): with runs == k, 1.0 when every run passed, else 0.0."""
    if not 0 <= successes <= runs or not 1 <= k <= runs:
        raise ValueError(
            f"pass^k needs 0 <= successes <= runs and 1 <= k <= runs: {successes}, {runs}, {k}"
        )
    return math.comb(successes, k) / math.comb(runs, k)


# --------------------------------------------------------------------------- one run


def judge(
    case: Case,
    run: int,
    turns: Sequence[TurnRecord],
    errors: Sequence[str],
    *,
    appointments: Sequence[str] | None = None,
) -> RunResult:
    """The verdict on one run: its figures, and each reason it failed, in words.
    `appointments` are the customer's own appointments left afterwards ("YYYY-MM-DD HH:MM"),
    judged when the case expects them."""
    made = [booking for turn in turns for booking in turn.bookings]
    counts, failures = compare_bookings(case, made)
    failures += appointment_failures(case, appointments)
    claimed = unbooked_claims(turns)
    failures += [f"turn {n}: claims a booking that was not made: «{_clip(r)}»" for n, r in claimed]
    unchanged = unchanged_claims(turns)
    failures += [
        f"turn {n}: claims a cancellation or a change that was not made: «{_clip(r)}»"
        for n, r in unchanged
    ]
    failures += [f"no reply mentions {_spellings(m)}" for m in missing_mentions(case, turns)]
    for phrase in case.expect.forbidden:
        failures += [
            f"turn {n}: says the forbidden «{phrase}»"
            for n, turn in enumerate(turns, start=1)
            if mentions(turn.reply, phrase)
        ]
    failures += list(errors)
    return RunResult(
        run=run,
        passed=not failures,
        failures=failures,
        bookings=counts,
        unbooked_claims=len(claimed),
        unchanged_claims=len(unchanged),
        invalid_tool_calls=sum(invalid_tool_calls(turn) for turn in turns),
        model_calls=sum(turn.model_calls for turn in turns),
        tokens=sum((turn.tokens for turn in turns), Tokens()),
        errors=list(errors),
        turns=list(turns),
        appointments=sorted(appointments) if appointments is not None else None,
    )


def appointment_failures(case: Case, found: Sequence[str] | None) -> list[str]:
    """What differs between the customer's own appointments left and those the case expects
    (a cancellation that did not happen, a reschedule to the wrong slot, one lost)."""
    if case.expect.appointments is None:
        return []
    expected = sorted(f"{case.day(a.date).isoformat()} {a.time}" for a in case.expect.appointments)
    if found is None:
        return ["own appointments afterwards: not read"]
    if sorted(found) == expected:
        return []
    left = sorted(found)
    return [f"own appointments afterwards: expected {expected or 'none'}, found {left or 'none'}"]


def compare_bookings(case: Case, made: Sequence[Booking]) -> tuple[BookingCounts, list[str]]:
    """Pairs expected and made bookings: exact matches are right; then a made booking on the
    same slot, else any left, is the wrong one made for an expected booking; what is left over
    is missing (expected) or unexpected (made)."""
    left = list(made)
    unmatched: list[ExpectedBooking] = []
    right = 0
    for expected in case.expect.bookings:
        hit = next((b for b in left if _fits(case, expected, b)), None)
        if hit is None:
            unmatched.append(expected)
        else:
            left.remove(hit)
            right += 1
    failures: list[str] = []
    wrong = 0
    for same_slot_only in (True, False):
        for expected in list(unmatched):
            instead = next(
                (b for b in left if not same_slot_only or _same_slot(case, expected, b)), None
            )
            if instead is not None:
                left.remove(instead)
                unmatched.remove(expected)
                wrong += 1
                failures.append(f"booking wrong: expected {_show(case, expected)}, made {instead}")
    failures += [f"booking missing: expected {_show(case, e)}" for e in unmatched]
    failures += [f"booking unexpected: made {b}" for b in left]
    counts = BookingCounts(right=right, wrong=wrong, missing=len(unmatched), unexpected=len(left))
    return counts, failures


def _same_slot(case: Case, expected: ExpectedBooking, made: Booking) -> bool:
    return case.day(expected.date).isoformat() == made.date and expected.time == made.time


def _fits(case: Case, expected: ExpectedBooking, made: Booking) -> bool:
    return (
        _same_slot(case, expected, made)
        and (expected.name is None or same_name(expected.name, made.name))
        and (expected.email is None or same_email(expected.email, made.email))
    )


def _show(case: Case, expected: ExpectedBooking) -> str:
    who = "".join(
        part
        for part in (
            f" {expected.name}" if expected.name else "",
            f" <{expected.email}>" if expected.email else "",
        )
    )
    return f"{case.day(expected.date).isoformat()} {expected.time}{who}"


def unbooked_claims(turns: Sequence[TurnRecord]) -> list[tuple[int, str]]:
    """(turn number, reply) of each reply claiming a booking before any booking of the
    conversation was made (one made in that same turn counts as made; so does an appointment
    the turn really moved with `reschedule_booking`: «quedó confirmada para el jueves» is true)."""
    found = []
    booked = False
    for number, turn in enumerate(turns, start=1):
        booked = booked or bool(turn.bookings) or _rescheduled(turn)
        if not booked and claims_booking(turn.reply):
            found.append((number, turn.reply))
    return found


def unchanged_claims(turns: Sequence[TurnRecord]) -> list[tuple[int, str]]:
    """(turn number, reply) of each reply claiming a cancellation or a reschedule before any
    was made in the conversation (one made in that same turn counts as made)."""
    found = []
    changed = False
    for number, turn in enumerate(turns, start=1):
        changed = changed or _cancelled(turn) or _rescheduled(turn)
        if not changed and claims_change(turn.reply):
            found.append((number, turn.reply))
    return found


def _cancelled(turn: TurnRecord) -> bool:
    return _did(turn, "cancel_booking", "cancelada")


def _rescheduled(turn: TurnRecord) -> bool:
    return _did(turn, "reschedule_booking", "reprogramada")


def _did(turn: TurnRecord, tool: str, fact: str) -> bool:
    """Whether a call of `tool` in the turn made its change (`fact` true in its result)."""
    return any(
        call.name == tool and isinstance(call.result, dict) and call.result.get(fact) is True
        for call in turn.tool_calls
    )


def missing_mentions(case: Case, turns: Sequence[TurnRecord]) -> list[str | list[str]]:
    return [
        fact
        for fact in case.expect.mentions
        if not any(
            mentions(turn.reply, spelling)
            for turn in turns
            for spelling in ([fact] if isinstance(fact, str) else fact)
        )
    ]


def invalid_tool_calls(turn: TurnRecord) -> int:
    """Calls of a tool that does not exist, or with arguments the tool refused."""
    return sum(
        1
        for call in turn.tool_calls
        if call.name not in TOOL_NAMES
        or (call.result is not None and call.result.get("error") == INVALID_ARGUMENTS)
    )


def _spellings(fact: str | list[str]) -> str:
    return f"«{fact}»" if isinstance(fact, str) else " or ".join(f"«{s}»" for s in fact)


def _clip(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= _CLIP else flat[: _CLIP - 1] + "…"


# --------------------------------------------------------------------------- figures


def case_figures(runs: Sequence[RunResult], k: int) -> Figures:
    passed = sum(run.passed for run in runs)
    return _figures(runs, pass1=passed / len(runs), passk=pass_hat_k(passed, len(runs), k))


def overall_figures(cases: Sequence[CaseResult]) -> Figures:
    """Sums over every run; pass^1 and pass^k are the means of the cases' own."""
    ran = [case.figures for case in cases if case.figures is not None]
    return _figures(
        [run for case in cases for run in case.runs],
        pass1=_mean(f.pass1 for f in ran),
        passk=_mean(f.passk for f in ran),
    )


def _figures(runs: Sequence[RunResult], *, pass1: float, passk: float) -> Figures:
    seconds = [turn.seconds for run in runs for turn in run.turns]
    return Figures(
        runs=len(runs),
        passed=sum(run.passed for run in runs),
        pass1=pass1,
        passk=passk,
        bookings=sum((run.bookings for run in runs), BookingCounts()),
        unbooked_claims=sum(run.unbooked_claims for run in runs),
        unchanged_claims=sum(run.unchanged_claims for run in runs),
        invalid_tool_calls=sum(run.invalid_tool_calls for run in runs),
        model_calls=sum(run.model_calls for run in runs),
        tokens=sum((run.tokens for run in runs), Tokens()),
        seconds_per_turn=(
            Seconds(p50=percentile(seconds, 50), p95=percentile(seconds, 95)) if seconds else None
        ),
        errors=sum(len(run.errors) for run in runs),
    )


def percentile(values: Iterable[float], p: float) -> float:
    """Nearest-rank percentile: the smallest value with at least p% of them at or below it."""
    ordered = sorted(values)
    rank = max(math.ceil(p / 100 * len(ordered)), 1)
    return ordered[rank - 1]


def _mean(values: Iterable[float]) -> float:
    found = list(values)
    return sum(found) / len(found) if found else 0.0
