"""Replaying a recording offline, and recording a conversation against a real model.

Replay: the real app in-process, the sandbox seeded from the file's fixture, a frozen clock, and
an in-process fake model (refusing what the real API refuses) answering each turn's model calls
with that turn's recorded responses, in order. Record: the same app and sandbox, but the model at
`OPENAI_BASE_URL`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from citas.api.models import RequestContext
from citas.clock import frozen_clock
from citas.config import Settings
from citas.replay.compare import Difference, compare, expectation
from citas.replay.format import ModelResponse, RecordedCall, Recording, Turn
from citas.sandbox import SandboxSeed
from citas.testing import ScriptedModel, Step, ToolCall
from citas.testing.harness import LocalCitas, ModelCall, TurnOutcome

_EXHAUSTED = "no recorded model response left for this turn"


@dataclass(frozen=True, slots=True)
class TurnReport:
    number: int  # 1-based
    turn: Turn
    outcome: TurnOutcome
    differences: list[Difference]


@dataclass(frozen=True, slots=True)
class ReplayReport:
    recording: Recording
    turns: list[TurnReport] = field(default_factory=list)

    @property
    def differences(self) -> int:
        return sum(len(t.differences) for t in self.turns)

    @property
    def same(self) -> bool:
        return self.differences == 0

    def updated(self) -> Recording:
        """The recording with every turn's expectation rewritten from what happened."""
        turns = [
            report.turn.model_copy(update={"expect": expectation(report.outcome)})
            for report in self.turns
        ]
        return self.recording.model_copy(update={"turns": turns})


class _RecordedModel:
    """Serves one turn's recorded responses in order and counts what the agent asked for."""

    def __init__(self) -> None:
        self._queue: deque[Step] = deque()
        self.recorded = 0
        self.asked = 0

    def load(self, responses: Iterable[ModelResponse]) -> None:
        self._queue = deque(_step(response) for response in responses)
        self.recorded = len(self._queue)
        self.asked = 0

    def __call__(self, _request: dict[str, Any]) -> Step:
        self.asked += 1
        if not self._queue:
            # The fake model answers this with an HTTP 500: the agent sees an unavailable model.
            raise LookupError(_EXHAUSTED)
        return self._queue.popleft()

    def differences(self) -> list[Difference]:
        if self.asked == self.recorded:
            return []
        return [Difference("model responses used", self.recorded, self.asked)]


def _step(response: ModelResponse) -> Step:
    calls = tuple(ToolCall(c.name, c.arguments) for c in response.tool_calls)
    return Step(text=response.text, tool_calls=calls, finish_reason=response.finish_reason)


def replay_settings(recording: Recording) -> Settings:
    """Defaults (never the caller's environment, so a replay means the same everywhere) and the
    file's own `settings`."""
    return Settings.from_env({}, **recording.settings)


async def replay(recording: Recording) -> ReplayReport:
    """Run every turn of `recording` and compare each with its expectation."""
    recorded = _RecordedModel()
    settings = replay_settings(recording)
    model = ScriptedModel(responder=recorded, name=settings.model)
    report = ReplayReport(recording)
    async with LocalCitas.start(
        settings,
        model=model,
        clock=frozen_clock(recording.now),
        seed=recording.fixture,
    ) as citas:
        for number, turn in enumerate(recording.turns, start=1):
            recorded.load(turn.model_responses)
            refused_before = len(model.script.rejections)
            outcome = await citas.send(
                turn.message,
                session_id=recording.session_id,
                context=recording.context,
                message_id=turn.message_id,
            )
            diffs = (
                [Difference("expect", "an expectation", "none recorded (run --update)")]
                if turn.expect is None
                else compare(turn.expect, outcome)
            )
            diffs += recorded.differences()
            diffs += _refusals(model.script.rejections[refused_before:])
            diffs += tenant_differences(recording, outcome)
            report.turns.append(TurnReport(number, turn, outcome, diffs))
    return report


def _refusals(rejections: list[str]) -> list[Difference]:
    """Requests the fake model refused as the real API would (e.g. a broken history)."""
    return [
        Difference("model request", "valid", message)
        for message in rejections
        if _EXHAUSTED not in message
    ]


def tenant_differences(recording: Recording, outcome: TurnOutcome) -> list[Difference]:
    """The backend must only ever hear of the request's business and calendar."""
    config = RequestContext.model_validate(recording.context).config
    diffs = []
    for operation, body in outcome.backend_calls:
        for name, allowed in (("id_empresa", config.id_empresa), ("usuario_id", config.usuario_id)):
            if name in body and body[name] != allowed:
                diffs.append(Difference(f"backend {operation}.{name}", allowed, body[name]))
    return diffs


# --------------------------------------------------------------------------- recording


def bundled_fixture(id_empresa: int, seed: SandboxSeed | None = None) -> SandboxSeed:
    """Only the business the conversation is for, from `seed` (default: the bundled one)."""
    source = seed or SandboxSeed.load()
    if id_empresa not in source.empresas:
        known = ", ".join(str(k) for k in sorted(source.empresas))
        raise ValueError(f"business {id_empresa} is not in the seed (it has {known})")
    return SandboxSeed(empresas={id_empresa: source.empresas[id_empresa]})


def _responses(calls: list[ModelCall]) -> list[ModelResponse]:
    responses = []
    for call in calls:
        tool_calls = [
            RecordedCall(name=c.name, arguments=c.arguments) for c in call.reply.tool_calls
        ]
        # An empty answer is kept as "" so the replay asks the model as many times.
        text = call.reply.text if call.reply.text is not None or tool_calls else ""
        usual = "tool_calls" if tool_calls else "stop"
        finish = call.reply.finish_reason
        responses.append(
            ModelResponse(
                text=text,
                tool_calls=tool_calls,
                # Only the unusual one is kept: files stay as they were for ordinary answers.
                finish_reason=finish if finish not in (None, usual) else None,
            )
        )
    return responses


TurnObserver = Callable[[int, Turn, TurnOutcome], None]


async def record(
    plan: Recording, *, settings: Settings, on_turn: TurnObserver | None = None
) -> Recording:
    """Send `plan`'s customer messages to the model `settings` point at, with `plan`'s context,
    clock, fixture and settings (the file's settings win, as they do on replay); return it with
    the model's responses and what citas did filled in."""
    turns: list[Turn] = []
    file_settings = Settings.from_env({}, **plan.settings)
    settings = settings.with_updates(
        **{name: getattr(file_settings, name) for name in file_settings.model_fields_set}
    )
    async with LocalCitas.start(settings, clock=frozen_clock(plan.now), seed=plan.fixture) as citas:
        for number, asked in enumerate(plan.turns, start=1):
            outcome = await citas.send(
                asked.message,
                session_id=plan.session_id,
                context=plan.context,
                message_id=asked.message_id,
            )
            turn = asked.model_copy(
                update={
                    "model_responses": _responses(outcome.model_calls),
                    "expect": expectation(outcome),
                }
            )
            turns.append(turn)
            if on_turn is not None:
                on_turn(number, turn, outcome)
    return plan.model_copy(update={"turns": turns})
