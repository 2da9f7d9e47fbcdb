"""A turn as the handlers run it: the body parsed and admitted (rate limits, the bound on turns in
flight), then run in its own task, so that it outlives its client.

A turn may be booking an appointment when the client goes away; cancelling it there would leave
a booking the conversation does not know about. So the turn runs in a task that holds its
admission slot until it ends (draining waits for it), and a handler that is cancelled only
stops waiting: the turn still finishes, is saved and remembered for redelivery.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Coroutine
from contextlib import ExitStack
from typing import Any
from zoneinfo import ZoneInfo

import structlog
from aiohttp import web
from pydantic import ValidationError

from citas.agent.events import RunListener
from citas.agent.turn import TurnRequest, TurnResult
from citas.api.models import ChatRequest
from citas.domain import Tenant
from citas.errors import BodyTimeout, InvalidRequest, UnsupportedMediaType
from citas.logs import bind_turn
from citas.runtime import Runtime

log = structlog.get_logger("citas.turns")

# Strong references: the event loop keeps only weak ones to tasks nobody awaits any more.
_RUNNING: set[asyncio.Task[TurnResult]] = set()


async def admit_turn(request: web.Request, runtime: Runtime) -> TurnRequest:
    """What every turn endpoint does first: validate the body, name the turn in the logs, and
    take its rate-limit tokens (`RateLimited` → 429), except for a redelivered `message_id`
    that is answered from memory: a gateway's retries cost the customer nothing."""
    turn = await parse_turn_request(request, runtime)
    bind_turn(turn.tenant.id_empresa, turn.session_id)
    log.debug("chat_message", message=turn.message, message_id=turn.message_id)
    if not await _already_answered(runtime, turn):
        await runtime.rate_limits.check(turn.tenant.id_empresa, turn.session_id)
    return turn


async def _already_answered(runtime: Runtime, turn: TurnRequest) -> bool:
    if not turn.message_id:
        return False
    # A StoreUnavailable is the turn's 503 now: it could not run without the store anyway, and
    # its lock would wait out the same failure again.
    return await runtime.store.recall_reply(turn.key, turn.message_id) is not None


async def read_json_body(request: web.Request, runtime: Runtime) -> Any:
    """The request's JSON body: a 415 for a body not declared JSON (so a browser's cross-origin
    "simple" POST, text/plain or a form, is never read), a 408 for one that trickles in, a 400
    for one that is not JSON or is nested too deeply for the decoder."""
    if not is_json(request.content_type):
        raise UnsupportedMediaType(
            f"Content-Type must be application/json, not {request.content_type!r}."
        )
    try:
        async with asyncio.timeout(runtime.settings.http_body_timeout_seconds):
            raw = await request.read()
    except TimeoutError:
        # A body trickling in (slowloris): the connection is closed with the answer.
        raise BodyTimeout(
            f"The body did not arrive within {runtime.settings.http_body_timeout_seconds:g} s."
        ) from None
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):  # deep nesting fits in the size limit
        raise InvalidRequest("Body is not valid JSON (or nested too deeply).") from None


async def parse_turn_request(request: web.Request, runtime: Runtime) -> TurnRequest:
    """Validate the gateway's body; a 400 names every bad field, a 415 a body not declared JSON
    (so a browser's cross-origin "simple" POST, text/plain or a form, is never read)."""
    data = await read_json_body(request, runtime)
    try:
        body = ChatRequest.model_validate(
            data, context={"max_message_chars": runtime.settings.max_message_chars}
        )
    except ValidationError as exc:
        raise InvalidRequest(describe_validation_error(exc)) from None
    except RecursionError:
        raise InvalidRequest("Body is nested too deeply.") from None
    config = body.context.config
    tenant = Tenant(
        id_empresa=config.id_empresa,
        zone=ZoneInfo(config.zona_horaria or runtime.settings.timezone),
        duration_minutes=config.duracion_cita_minutos or runtime.settings.default_duration_minutes,
        usuario_id=config.usuario_id,
        personalidad=config.personalidad,
        currency=config.moneda or runtime.settings.currency,
        email_required=config.correo_obligatorio is not False,
    )
    return TurnRequest(tenant, body.session_id, body.message, body.message_id)


def is_json(content_type: str) -> bool:
    kind = content_type.lower()
    return kind == "application/json" or (
        kind.startswith("application/") and kind.endswith("+json")
    )


def describe_validation_error(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors(include_url=False):
        where = ".".join(str(p) for p in error["loc"]) or "body"
        message = str(error["msg"]).removeprefix("Value error, ")
        parts.append(f"{where}: {message}")
    return "Invalid request: " + "; ".join(parts) + "."


def start_turn(
    runtime: Runtime, turn: TurnRequest, listener: RunListener | None = None
) -> asyncio.Task[TurnResult]:
    """Queue the turn for its conversation (raises `Overloaded` before anything runs when the
    service is full or this conversation has too many waiting) and start it in its own task;
    it is admitted as in flight once it holds its conversation. `listener` gets the turn's run
    events."""
    admission = runtime.admission
    admission.check()
    with ExitStack() as queued:
        ticket = queued.enter_context(admission.queue(turn.key))
        task = asyncio.create_task(
            _admitted(
                queued.pop_all(),
                runtime.agent.handle(turn, listener, admit=lambda: admission.admit(ticket)),
            )
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
