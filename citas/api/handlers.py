"""HTTP handlers: thin — parse and validate, call the agent, shape the answer."""

from __future__ import annotations

import json
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import ValidationError

from citas.agent.loop import TurnRequest, TurnResult
from citas.api.models import ChatRequest
from citas.api.openapi import openapi_document
from citas.api.turns import finish_turn, start_turn
from citas.domain import Tenant
from citas.errors import InvalidRequest
from citas.metrics import REGISTRY
from citas.runtime import RUNTIME, Runtime

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
    turn = await parse_turn_request(request, runtime)
    result = await finish_turn(start_turn(runtime, turn))
    return web.json_response(chat_body(result))


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


async def metrics(_request: web.Request) -> web.Response:
    return web.Response(
        body=generate_latest(REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST}
    )


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(openapi_document())
