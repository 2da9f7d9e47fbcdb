"""HTTP handlers: thin — admit the turn, run it, shape the answer from the API models."""

from __future__ import annotations

import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import ValidationError

from citas.api.errors import error_response
from citas.api.models import (
    ChatResponse,
    ConversationMessage,
    ConversationState,
    Handoff,
    StatusResponse,
)
from citas.api.openapi import openapi_document
from citas.api.responses import json_response
from citas.api.turns import (
    admit_turn,
    describe_validation_error,
    finish_turn,
    read_json_body,
    start_turn,
)
from citas.domain import ConversationKey
from citas.errors import InvalidRequest
from citas.messages import assistant_message
from citas.metrics import REGISTRY, refresh_conversations_stored
from citas.runtime import RUNTIME, Runtime

log = structlog.get_logger("citas.api")
MAX_SESSION_ID_CHARS = 128


async def chat(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME]
    turn = await admit_turn(request, runtime)
    result = await finish_turn(start_turn(runtime, turn))
    return json_response(ChatResponse.body(result))


async def resume_conversation(request: web.Request) -> web.Response:
    """A person hands the conversation back: the assistant answers the next message."""
    runtime = request.app[RUNTIME]
    key = _conversation_key(request)
    async with runtime.store.lock(key):
        conversation = await runtime.store.load(key)
        if conversation.paused_until is not None:
            conversation.resume()
            await runtime.store.save(key, conversation)
            log.info("conversation_resumed")
    return json_response(_state(key, paused=False, reason=None))


async def record_message(request: web.Request) -> web.Response:
    """What a person told the customer while the conversation is paused, kept in its history
    so the assistant knows it when it resumes."""
    runtime = request.app[RUNTIME]
    key = _conversation_key(request)
    message = await _person_message(request, runtime)
    async with runtime.store.lock(key):
        conversation = await runtime.store.load(key)
        now = runtime.agent.clock().timestamp()
        if not conversation.is_paused(now):
            return error_response(
                409, "not_paused", "The conversation is not handed to a person; resume first."
            )
        conversation.turns.append([assistant_message(f"[{message.author}] {message.text}")])
        await runtime.store.save(key, conversation)
        return json_response(_state(key, paused=True, reason=conversation.handoff_reason))


def _conversation_key(request: web.Request) -> ConversationKey:
    raw_id, session_id = request.match_info["id_empresa"], request.match_info["session_id"]
    if not raw_id.isdigit() or not 0 < int(raw_id) < 2**63 or not raw_id.isascii():
        raise InvalidRequest("id_empresa must be a positive integer.")
    if not 0 < len(session_id) <= MAX_SESSION_ID_CHARS:
        raise InvalidRequest(f"session_id must have 1 to {MAX_SESSION_ID_CHARS} characters.")
    return ConversationKey(int(raw_id), session_id)


async def _person_message(request: web.Request, runtime: Runtime) -> ConversationMessage:
    data = await read_json_body(request, runtime)
    try:
        return ConversationMessage.model_validate(data)
    except ValidationError as exc:
        raise InvalidRequest(describe_validation_error(exc)) from None
    except RecursionError:
        raise InvalidRequest("Body is nested too deeply.") from None


def _state(key: ConversationKey, *, paused: bool, reason: str | None) -> dict[str, object]:
    handoff = Handoff(reason=reason) if paused and reason else None
    return ConversationState(
        id_empresa=key.id_empresa, session_id=key.session_id, paused=paused, handoff=handoff
    ).model_dump()


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
