"""HTTP handlers: thin — admit the turn, run it, shape the answer from the API models."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from citas.api.models import ChatResponse, StatusResponse
from citas.api.openapi import openapi_document
from citas.api.responses import json_response
from citas.api.turns import admit_turn, finish_turn, start_turn
from citas.metrics import REGISTRY, refresh_conversations_stored
from citas.runtime import RUNTIME


async def chat(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME]
    turn = await admit_turn(request, runtime)
    result = await finish_turn(start_turn(runtime, turn))
    return json_response(ChatResponse.body(result))


async def health(_request: web.Request) -> web.Response:
    return _status("ok")


async def ready(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME]
    if runtime.admission.draining:
        return _status("draining", 503)
    if not await runtime.store.ping():
        return _status("store_unavailable", 503)
    return _status("ready")


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
    return json_response(document)


def _status(status: str, code: int = 200) -> web.Response:
    return json_response(StatusResponse(status=status).model_dump(), status=code)
