"""`POST /api/chat/stream`: the turn of `/api/chat`, answered as Server-Sent Events.

`event: delta` `{"text"}` carries the reply; one `event: done` carries `/api/chat`'s 200 body, or
one `event: error` carries the JSON error shape. The concatenated deltas always equal `done`'s
`reply`. Validation, body size, auth and admission fail as JSON before the stream starts.

The reply is sent as soon as it is known: when the model has ended its answer and the reply
guard has checked it (the turn's `AnswerText` event; text that comes with tool calls is not an
answer, and nothing tells which it is before the end), before the turn is saved. A reply the
model did not write (an apology, the round limit, a redelivered message's first reply) comes as
a single delta as well. A client that goes away does not stop the turn
(see `citas.api.turns`).

While tools run (a tool round may take 10–30 s), `event: status` `{"stage"}` says what the turn is
doing as each tool round starts, so a gateway can show "escribiendo…"; and a comment line
(`: keep-alive`) goes out after every `KEEPALIVE_SECONDS` without an event, so no proxy closes
an idle stream.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import structlog
from aiohttp import web

from citas.agent.events import (
    AnswerText,
    ModelCallStarted,
    RunEvent,
    RunListener,
    ToolCallStarted,
)
from citas.agent.turn import TurnRequest, TurnResult
from citas.api.errors import error_body, http_error
from citas.api.models import ChatResponse, StreamStage, StreamStatus
from citas.api.sse import EventStream
from citas.api.turns import abandon, admit_turn, start_turn
from citas.metrics import STREAM_FIRST_TEXT_SECONDS, STREAMS
from citas.runtime import RUNTIME

log = structlog.get_logger("citas.stream")

_END = None
KEEPALIVE_SECONDS = 10.0
STAGES: dict[str, StreamStage] = {
    "check_availability": "checking_availability",
    "create_booking": "booking",
    "search_products": "searching",
}


@dataclass(frozen=True, slots=True)
class _Status:
    stage: StreamStage


_Item = str | _Status | None


async def chat_stream(request: web.Request) -> web.StreamResponse:
    runtime = request.app[RUNTIME]
    started = time.perf_counter()
    turn = await admit_turn(request, runtime)
    # The turn only queues its text: a slow or vanished client never stalls a turn that holds
    # the conversation's lock.
    texts: asyncio.Queue[_Item] = asyncio.Queue()
    task = start_turn(runtime, turn, _answer_queue(texts))
    task.add_done_callback(lambda _: texts.put_nowait(_END))
    events = EventStream(request)
    try:
        outcome = await _relay(events, texts, task, started)
    except asyncio.CancelledError:
        STREAMS.labels(outcome="client_gone").inc()
        abandon(task)
        raise
    STREAMS.labels(outcome=outcome).inc()
    return events.response


def _answer_queue(texts: asyncio.Queue[_Item]) -> RunListener:
    """The turn's answer, and a status as each tool round starts: one per stage in a round
    (three checks at once are one `checking_availability`)."""
    told: set[str] = set()

    def put(_turn: TurnRequest, event: RunEvent) -> None:
        if isinstance(event, AnswerText):
            texts.put_nowait(event.text)
        elif isinstance(event, ModelCallStarted):
            told.clear()  # a new round
        elif isinstance(event, ToolCallStarted):
            stage = STAGES.get(event.call.name, "working")
            if stage not in told:
                told.add(stage)
                texts.put_nowait(_Status(stage))

    return put


async def _relay(
    events: EventStream,
    texts: asyncio.Queue[_Item],
    task: asyncio.Task[TurnResult],
    started: float,
) -> str:
    """Forward the turn's statuses and text as they come, then its end; returns how the stream
    ended."""
    await events.open()
    sent = False
    while (item := await _next(events, texts)) is not _END:
        if isinstance(item, _Status):
            if not sent:  # never after the answer has begun
                await events.send("status", StreamStatus(stage=item.stage).model_dump())
            continue
        await _delta(events, item, first=not sent, started=started)
        sent = True
    # The task is done: its end was queued after all its text.
    error = None if task.cancelled() else task.exception()
    if task.cancelled() or error is not None:
        await events.send("error", _error_body(error))
        outcome = "error"
    else:
        result = task.result()
        # Coalesced (a later message answers) or paused (a person answers): no text at all.
        if not sent and not result.coalesced and not result.paused:
            await _delta(events, result.reply, first=True, started=started)
        await events.send("done", ChatResponse.body(result))
        outcome = "done"
    await events.close()
    if events.gone:
        outcome = "client_gone"
    log.info("stream_finished", outcome=outcome)
    return outcome


async def _next(events: EventStream, texts: asyncio.Queue[_Item]) -> _Item:
    """The next item, with a keep-alive comment after every `KEEPALIVE_SECONDS` of waiting."""
    getting = asyncio.ensure_future(texts.get())
    try:
        while True:
            done, _ = await asyncio.wait({getting}, timeout=KEEPALIVE_SECONDS)
            if done:
                return getting.result()
            await events.comment("keep-alive")
    finally:
        getting.cancel()  # only when this handler is cancelled: done futures ignore it


async def _delta(events: EventStream, text: str, *, first: bool, started: float) -> None:
    if first:
        STREAM_FIRST_TEXT_SECONDS.observe(time.perf_counter() - started)
    await events.send("delta", {"text": text})


def _error_body(error: BaseException | None) -> dict[str, Any]:
    """What `/api/chat` would have answered as an HTTP error, as the `error` event's data."""
    known = http_error(error) if error is not None else None
    if known is not None:
        return error_body(known.code, known.message)
    log.error("stream_turn_failed", exc_info=error)
    return error_body("internal", "Unexpected internal error.")
