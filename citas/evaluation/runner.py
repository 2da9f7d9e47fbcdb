"""Playing cases: each run is the real app in-process (the harness) with its own sandbox seeded
from the case (a fresh calendar), a frozen clock at the case's `now`, and the model under test;
the customer's messages are sent one per turn until the customer is done."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from citas.agent.model import ChatModel, Usage
from citas.clock import frozen_clock
from citas.config import Settings
from citas.evaluation.case import Case
from citas.evaluation.customer import Exchange, customer_for
from citas.evaluation.results import (
    Booking,
    CaseResult,
    Report,
    RunResult,
    Tokens,
    ToolCallRecord,
    TurnRecord,
)
from citas.evaluation.scoring import case_figures, judge, overall_figures
from citas.sandbox import Event
from citas.testing.harness import LocalCitas, TurnOutcome

ModelFactory = Callable[[], ChatModel | None]
"""A fresh model for each run, or None: the endpoint the settings name (as `create_app`)."""
RunObserver = Callable[[str, RunResult], None]

DEMO_CANNOT_PLAY = 'the demo model cannot play it ("demo": false)'
NEEDS_CUSTOMER_MODEL = "a simulated customer needs a model to play it"


@dataclass(frozen=True, slots=True)
class Contender:
    """What plays the receptionist."""

    name: str
    model: ModelFactory
    demo: bool = False
    """The rule-based demo model: cases marked `"demo": false` are skipped."""


@dataclass(frozen=True, slots=True)
class Plan:
    """How to evaluate: `k` runs per case, at most `concurrency` at once, the settings read from
    `env` (the case's own `settings` on top), and the model playing simulated customers."""

    k: int = 3
    concurrency: int = 1
    env: Mapping[str, str] | None = None  # None: the process environment
    customer_model: ChatModel | None = None
    on_run: RunObserver | None = None


def run_settings(case: Case, env: Mapping[str, str] | None) -> Settings:
    """The environment's settings (the model endpoint, timeouts, prompts) and the case's own.
    Every run keeps its conversations to itself and the harness sends no token, so the
    in-process store is used and the API token is dropped."""
    settings = Settings.from_env(env, **case.settings)
    return settings.with_updates(redis_url=None, api_token=None, metrics_require_token=False)


def skip_reason(case: Case, contender: Contender, plan: Plan) -> str | None:
    if contender.demo and not case.demo:
        return DEMO_CANNOT_PLAY
    if case.simulated_customer is not None and plan.customer_model is None:
        return NEEDS_CUSTOMER_MODEL
    return None


async def play(
    case: Case, run: int, *, settings: Settings, model: ChatModel | None, plan: Plan
) -> RunResult:
    """One run of `case`; whatever goes wrong is kept in its `errors`, never raised."""
    turns: list[TurnRecord] = []
    errors: list[str] = []
    appointments: list[str] | None = None
    try:
        customer = customer_for(case, plan.customer_model, timeout=settings.turn_deadline_seconds)
        async with LocalCitas.start(
            settings, model=model, clock=frozen_clock(case.clock), seed=case.fixture()
        ) as citas:
            seeded = own_appointments(citas, case)
            exchanges: list[Exchange] = []
            while (message := await customer.next_message(exchanges)) is not None:
                outcome = await citas.send(
                    message, session_id=case.session_id, context=case.context
                )
                turns.append(turn_record(message, outcome))
                errors += turn_errors(len(turns), outcome)
                exchanges.append(Exchange(message, outcome.reply))
            appointments = [
                f"{event.fecha_inicio:%Y-%m-%d %H:%M}"
                for event in own_appointments(citas, case)
                if event.id_evento in {e.id_evento for e in seeded}
            ]
    except Exception as exc:  # a broken run is a result to report, not a crash of the whole run
        errors.append(f"turn {len(turns) + 1}: {type(exc).__name__}: {exc}")
    return judge(case, run, turns, errors, appointments=appointments)


def own_appointments(citas: LocalCitas, case: Case) -> list[Event]:
    """The customer's appointments in the run's calendar now (cancelled ones are not)."""
    backend = citas.sandbox.backend if citas.sandbox is not None else None
    if backend is None:
        return []
    return [
        event
        for event in backend.events
        if event.cliente_telefono == case.session_id and event.estado != "cancelado"
    ]


def turn_record(message: str, outcome: TurnOutcome) -> TurnRecord:
    return TurnRecord(
        customer=message,
        reply=outcome.reply,
        url=outcome.url,
        status=outcome.status,
        error=outcome.error,
        seconds=round(outcome.seconds, 4),
        model_calls=len(outcome.model_calls),
        tokens=sum((_tokens(call.reply.usage) for call in outcome.model_calls), Tokens()),
        tool_calls=[
            ToolCallRecord(name=call.name, arguments=call.decoded_arguments(), result=call.result)
            for call in outcome.tool_calls
        ],
        bookings=[_booking(event) for event in outcome.bookings],
    )


def turn_errors(number: int, outcome: TurnOutcome) -> list[str]:
    if outcome.status != 200:
        return [f"turn {number}: HTTP {outcome.status} {outcome.error or ''}".rstrip()]
    if outcome.error:
        return [f"turn {number}: error {outcome.error}"]
    return []


def _tokens(usage: Usage | None) -> Tokens:
    if usage is None:
        return Tokens()
    return Tokens(
        prompt=usage.prompt_tokens, completion=usage.completion_tokens, cached=usage.cached_tokens
    )


def _booking(event: Event) -> Booking:
    return Booking(
        date=f"{event.fecha_inicio:%Y-%m-%d}",
        time=f"{event.fecha_inicio:%H:%M}",
        name=event.cliente_nombre,
        email=event.cliente_correo,
    )


async def evaluate(cases: Sequence[tuple[str, Case]], contender: Contender, plan: Plan) -> Report:
    """Every case `plan.k` times (skipped ones not at all), `plan.concurrency` runs at once."""
    limit = asyncio.Semaphore(plan.concurrency)
    runs: dict[str, list[RunResult]] = {}

    async def one(name: str, case: Case, run: int) -> None:
        async with limit:
            result = await play(
                case,
                run,
                settings=run_settings(case, plan.env),
                model=contender.model(),
                plan=plan,
            )
        runs.setdefault(name, []).append(result)
        if plan.on_run is not None:
            plan.on_run(name, result)

    skipped = {name: skip_reason(case, contender, plan) for name, case in cases}
    await asyncio.gather(
        *(
            one(name, case, run)
            for name, case in cases
            if skipped[name] is None
            for run in range(1, plan.k + 1)
        )
    )
    results = [
        _case_result(name, case, skipped[name], runs.get(name, []), plan.k) for name, case in cases
    ]
    return Report(
        model=contender.name,
        k=plan.k,
        demo=contender.demo,
        figures=overall_figures(results),
        cases=results,
    )


def _case_result(
    name: str, case: Case, skipped: str | None, runs: list[RunResult], k: int
) -> CaseResult:
    if skipped is not None:
        return CaseResult(name=name, title=case.title, skipped=skipped)
    ordered = sorted(runs, key=lambda run: run.run)
    return CaseResult(name=name, title=case.title, figures=case_figures(ordered, k), runs=ordered)
