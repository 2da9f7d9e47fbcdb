"""Run events: what a turn did, step by step, for whoever listens (like the Agents SDK's hooks).

The loop and the tool registry emit them; metrics and logs (`citas/agent/telemetry.py`), the
stream, the harness behind replay and `citas chat`, and the evaluation subscribe. A listener is
called synchronously, in order, in the turn's own task (so it sees the request's log context);
it must be quick, and one that raises is logged and counted, never allowed to fail the turn.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import structlog

from citas.agent.model import ModelReply
from citas.agent.turn import TurnRequest, TurnResult
from citas.messages import ToolCallRequest
from citas.metrics import SWALLOWED_ERRORS

log = structlog.get_logger("citas.events")


@dataclass(frozen=True, slots=True)
class ModelCallStarted:
    round: int  # 0 for the turn's first call, then one more per tool round
    messages: int


@dataclass(frozen=True, slots=True)
class ModelCallFinished:
    round: int
    model: str
    messages: int
    outcome: str  # "ok", "cancelled", or the `LLMUnavailable.outcome`
    started: float  # time.perf_counter() when the call began
    seconds: float
    reply: ModelReply | None  # None unless "ok"


@dataclass(frozen=True, slots=True)
class ToolCallStarted:
    call: ToolCallRequest


@dataclass(frozen=True, slots=True)
class ToolCallFinished:
    call: ToolCallRequest
    tool: str  # the registered tool's name, or "unknown": safe as a metric label
    outcome: str  # ok, invalid_arguments, unknown_tool, backend_error, backend_rejected, error,
    # too_many (refused, not run)
    result: str  # the JSON text the model is given
    seconds: float


@dataclass(frozen=True, slots=True)
class AnswerText:
    """The turn's reply, exactly as it will be returned, as soon as it is known (checked by the
    reply guard, before the turn is saved); also the loop's own replies once a model call was
    made (an apology, the round limit). A business-info failure answers before any of that."""

    text: str


@dataclass(frozen=True, slots=True)
class TurnFinished:
    outcome: str  # "ok", an error code of `TurnResult`, or "exception"
    seconds: float
    result: TurnResult | None  # None when the turn raised


RunEvent = (
    ModelCallStarted
    | ModelCallFinished
    | ToolCallStarted
    | ToolCallFinished
    | AnswerText
    | TurnFinished
)
EventSink = Callable[[RunEvent], None]
RunListener = Callable[[TurnRequest, RunEvent], None]


class TurnEvents:
    """The sink of one turn's events: hands each one to every listener, in order."""

    __slots__ = ("_listeners", "request")

    def __init__(self, request: TurnRequest, listeners: Sequence[RunListener]) -> None:
        self.request = request
        self._listeners = listeners

    def __call__(self, event: RunEvent) -> None:
        for listener in self._listeners:
            try:
                listener(self.request, event)
            except Exception:
                SWALLOWED_ERRORS.labels(where="run_listener").inc()
                log.exception("run_listener_failed", run_event=type(event).__name__)
