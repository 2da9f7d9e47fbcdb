"""Running a turn for a handler: admitted, in its own task, so it outlives its client.

A turn may be booking an appointment when the client goes away; cancelling it there would leave
a booking the conversation does not know about. So the turn runs in a task that holds its
admission slot until it ends (draining waits for it), and a handler that is cancelled only
stops waiting: the turn still finishes, is saved and remembered for redelivery.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from contextlib import ExitStack
from typing import Any

import structlog

from citas.agent.llm import TextSink
from citas.agent.loop import TurnRequest, TurnResult
from citas.runtime import Runtime

log = structlog.get_logger("citas.turns")

# Strong references: the event loop keeps only weak ones to tasks nobody awaits any more.
_RUNNING: set[asyncio.Task[TurnResult]] = set()


def start_turn(
    runtime: Runtime, turn: TurnRequest, on_text: TextSink | None = None
) -> asyncio.Task[TurnResult]:
    """Admit the turn (raises `Overloaded` before anything runs) and start it in its own task."""
    with ExitStack() as admitted:
        admitted.enter_context(runtime.admission.admit())
        task = asyncio.create_task(
            _admitted(admitted.pop_all(), runtime.agent.handle(turn, on_text))
        )
    _RUNNING.add(task)
    task.add_done_callback(_RUNNING.discard)
    return task


async def finish_turn(task: asyncio.Task[TurnResult]) -> TurnResult:
    """The turn's result. If the waiting handler is cancelled, the turn runs on regardless."""
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        abandon(task)
        raise


def abandon(task: asyncio.Task[TurnResult]) -> None:
    """Nobody will read this turn's result: it still runs to its end, and how it ended is logged."""
    if task.done():
        _log_unread(task)
        return
    log.info("turn_continues_without_client")
    task.add_done_callback(_log_unread)


async def _admitted(admitted: ExitStack, turn: Coroutine[Any, Any, TurnResult]) -> TurnResult:
    with admitted:
        return await turn


def _log_unread(task: asyncio.Task[TurnResult]) -> None:
    if task.cancelled():
        log.warning("turn_cancelled_without_client")
        return
    error = task.exception()
    if error is not None:
        log.error("turn_failed_without_client", exc_info=error)
        return
    result = task.result()
    log.info("turn_finished_without_client", error_code=result.error, replayed=result.replayed)
