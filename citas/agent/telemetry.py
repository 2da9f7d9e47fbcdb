"""Metrics and log lines of a turn, as run-event listeners: one line and a few samples per model
call, tool call and turn (the request's id, business and session come from the log context)."""

from __future__ import annotations

import structlog

from citas.agent.events import ModelCallFinished, RunEvent, ToolCallFinished, TurnFinished
from citas.agent.tools import MAX_ARGUMENT_CHARS
from citas.agent.turn import TurnRequest
from citas.logs import mask_text
from citas.metrics import LLM_CALLS, LLM_SECONDS, LLM_TOKENS, TOOL_CALLS, TURN_SECONDS

_llm_log = structlog.get_logger("citas.llm")
_tool_log = structlog.get_logger("citas.tools")
_turn_log = structlog.get_logger("citas.agent")


def record_metrics(_request: TurnRequest, event: RunEvent) -> None:
    if isinstance(event, ModelCallFinished):
        LLM_CALLS.labels(outcome=event.outcome).inc()
        LLM_SECONDS.labels(outcome=event.outcome).observe(event.seconds)
        usage = event.reply.usage if event.reply is not None else None
        if usage is not None:
            LLM_TOKENS.labels(kind="prompt").inc(usage.prompt_tokens)
            LLM_TOKENS.labels(kind="completion").inc(usage.completion_tokens)
            LLM_TOKENS.labels(kind="cached").inc(usage.cached_tokens)
    elif isinstance(event, ToolCallFinished):
        TOOL_CALLS.labels(tool=event.tool, outcome=event.outcome).inc()
    elif isinstance(event, TurnFinished):
        TURN_SECONDS.labels(outcome=event.outcome).observe(event.seconds)


def write_logs(_request: TurnRequest, event: RunEvent) -> None:
    if isinstance(event, ModelCallFinished):
        reply = event.reply
        _llm_log.info(
            "llm_call",
            model=event.model,
            outcome=event.outcome,
            duration_ms=_ms(event.seconds),
            messages=event.messages,
            tool_calls=len(reply.tool_calls) if reply else 0,
            text_chars=len(reply.text or "") if reply else 0,
        )
    elif isinstance(event, ToolCallFinished) and event.outcome != "too_many":
        # Refused calls are summed up in one `tool_calls_refused` line by the registry.
        _tool_log.info(
            "tool_call",
            # An unknown name is the model's text: bounded like the arguments.
            tool=event.call.name[:64],
            outcome=event.outcome,
            duration_ms=_ms(event.seconds),
            arguments=_loggable(event.call.arguments),
        )
    elif isinstance(event, TurnFinished):
        _turn_log.info("turn", outcome=event.outcome, duration_ms=_ms(event.seconds))


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


def _loggable(arguments: str) -> str:
    # Masked before cutting, so a cut never leaves half an email or phone in clear; arguments
    # too long to be run are not logged at all.
    if len(arguments) > MAX_ARGUMENT_CHARS:
        return f"<{len(arguments)} characters>"
    return mask_text(arguments)[:500]
