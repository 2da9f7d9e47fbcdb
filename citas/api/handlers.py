"""HTTP handlers: thin — parse and validate, call the agent, shape the answer."""

from __future__ import annotations

import json
from typing import Any
from zoneinfo import ZoneInfo

import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import ValidationError

from citas.agent.loop import TurnRequest, TurnResult
from citas.api.models import ChatRequest
from citas.api.openapi import openapi_document
from citas.api.turns import finish_turn, start_turn
from citas.domain import Tenant
from citas.errors import InvalidRequest
from citas.logs import bind_turn
from citas.metrics import REGISTRY, refresh_conversations_stored
from citas.runtime import RUNTIME, Runtime

log = structlog.get_logger("citas.api")

_ERROR_MESSAGES = {
    "llm_unavailable": "The language model did not answer; the reply is an apology.",
    "backend_unavailable": "The booking backend did not answer; the reply is an apology.",
}


def setup_routes(app: web.Application) -> None:
    from citas.api.stream import chat_stream  # it builds on this module's parsing

    app.router.add_post("/api/chat", chat)
    app.router.add_post("/api/chat/stream", chat_stream)
    app.router.add_get("/health", health)
    app.router.add_get("/ready", ready)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/openapi.json", openapi)


async def chat(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME]
    turn = await admit_turn(request, runtime)
    result = await finish_turn(start_turn(runtime, turn))
    return web.json_response(chat_body(result))


async def admit_turn(request: web.Request, runtime: Runtime) -> TurnRequest:
    """What every turn endpoint does first: validate the body, name the turn in the logs, and
    take its rate-limit tokens (`RateLimited` → 429)."""
    turn = await parse_turn_request(request, runtime)
    bind_turn(turn.tenant.id_empresa, turn.session_id)
    log.debug("chat_message", message=turn.message, message_id=turn.message_id)
    await runtime.rate_limits.check(turn.tenant.id_empresa, turn.session_id)
    return turn


async def parse_turn_request(request: web.Request, runtime: Runtime) -> TurnRequest:
    """Validate the gateway's body; a 400 names every bad field."""
    raw = await request.read()
    try:
        data = json.loads(raw)
    except ValueError:
        raise InvalidRequest("Body is not valid JSON.") from None
    try:
        body = ChatRequest.model_validate(
            data, context={"max_message_chars": runtime.settings.max_message_chars}
        )
    except ValidationError as exc:
        raise InvalidRequest(describe_validation_error(exc)) from None
    config = body.context.config
    tenant = Tenant(
        id_empresa=config.id_empresa,
        zone=ZoneInfo(config.zona_horaria or runtime.settings.timezone),
        duration_minutes=config.duracion_cita_minutos or runtime.settings.default_duration_minutes,
        usuario_id=config.usuario_id,
        personalidad=config.personalidad,
    )
    return TurnRequest(tenant, body.session_id, body.message, body.message_id)


def chat_body(result: TurnResult) -> dict[str, Any]:
    body: dict[str, Any] = {"reply": result.reply, "url": result.url}
    if result.error:
        body["error"] = {"code": result.error, "message": _ERROR_MESSAGES[result.error]}
    return body


def describe_validation_error(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors(include_url=False):
        where = ".".join(str(p) for p in error["loc"]) or "body"
        message = str(error["msg"]).removeprefix("Value error, ")
        parts.append(f"{where}: {message}")
    return "Invalid request: " + "; ".join(parts) + "."


async def health(_request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def ready(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME]
    if runtime.admission.draining:
        return web.json_response({"status": "draining"}, status=503)
    if not await runtime.store.ping():
        return web.json_response({"status": "store_unavailable"}, status=503)
    return web.json_response({"status": "ready"})


async def metrics(request: web.Request) -> web.Response:
    await refresh_conversations_stored(request.app[RUNTIME].store)
    return web.Response(
        body=generate_latest(REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST}
    )


async def openapi(request: web.Request) -> web.Response:
    settings = request.app[RUNTIME].settings
    document = openapi_document(
        api_auth=settings.api_token is not None,
        metrics_auth=settings.metrics_require_token,
        max_message_chars=settings.max_message_chars,
    )
    return web.json_response(document)
