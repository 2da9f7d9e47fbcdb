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
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import structlog
from aiohttp import web

from citas.agent.events import AnswerText, RunEvent, RunListener
from citas.agent.turn import TurnRequest, TurnResult
from citas.api.errors import error_body, http_error
from citas.api.models import ChatResponse
from citas.api.sse import EventStream
from citas.api.turns import abandon, admit_turn, start_turn
from citas.metrics import STREAM_FIRST_TEXT_SECONDS, STREAMS
from citas.runtime import RUNTIME

log = structlog.get_logger("citas.stream")

_END = None


async def chat_stream(request: web.Request) -> web.StreamResponse:
    runtime = request.app[RUNTIME]
    started = time.perf_counter()
    turn = await admit_turn(request, runtime)
    # The turn only queues its text: a slow or vanished client never stalls a turn that holds
    # the conversation's lock.
    texts: asyncio.Queue[str | None] = asyncio.Queue()
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


def _answer_queue(texts: asyncio.Queue[str | None]) -> RunListener:
    def put(_turn: TurnRequest, event: RunEvent) -> None:
        if isinstance(event, AnswerText):
            texts.put_nowait(event.text)

    return put


async def _relay(
    events: EventStream,
    texts: asyncio.Queue[str | None],
    task: asyncio.Task[TurnResult],
    started: float,
) -> str:
    """Forward the turn's text as it comes, then its end; returns how the stream ended."""
    await events.open()
    sent = False
    while (text := await texts.get()) is not _END:
        await _delta(events, text, first=not sent, started=started)
        sent = True
    # The task is done: its end was queued after all its text.
    error = None if task.cancelled() else task.exception()
    if task.cancelled() or error is not None:
        await events.send("error", _error_body(error))
        outcome = "error"
    else:
        result = task.result()
        if not sent and not result.paused:  # paused: nothing for the customer
            await _delta(events, result.reply, first=True, started=started)
        await events.send("done", ChatResponse.body(result))
        outcome = "done"
    await events.close()
    if events.gone:
        outcome = "client_gone"
    log.info("stream_finished", outcome=outcome)
    return outcome


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
