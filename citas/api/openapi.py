"""The OpenAPI 3 description of the gateway API, generated from the one set of models."""

from __future__ import annotations

from functools import cache
from typing import Any

from pydantic.json_schema import models_json_schema

from citas import __version__
from citas.api.models import (
    ChatRequest,
    ChatResponse,
    ConversationMessage,
    ConversationState,
    ErrorResponse,
    StatusResponse,
    StreamDelta,
    StreamStatus,
)

_REF = "#/components/schemas/{model}"


def _json(schema_name: str) -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": _REF.format(model=schema_name)}}}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": _json("ErrorResponse")}


_CHAT_ERRORS = {
    "400": _error("Invalid JSON or fields (each bad field is named)."),
    "401": _error("Missing or wrong bearer token (when CITAS_API_TOKEN is set)."),
    "408": _error("The body did not arrive within CITAS_HTTP_BODY_TIMEOUT_SECONDS."),
    "413": _error("Body larger than 64 KiB."),
    "415": _error("Content-Type is not JSON (application/json or a +json type)."),
    "404": _error("`unknown_business`: the backend knows no business with this id_empresa."),
    "429": _error("Rate limited; see Retry-After."),
    "503": _error("Draining or overloaded; see Retry-After."),
}


_STREAM_DESCRIPTION = (
    "Same request, validation and limits as `/api/chat`; those errors are JSON answers before "
    "the stream starts. Then `text/event-stream`: `event: delta` events (`StreamDelta`) carry the "
    "reply, and exactly one `event: done` (`ChatResponse`, the body `/api/chat` answers with 200) "
    "or `event: error` (`ErrorResponse`: `unavailable` when the conversation stayed busy, "
    "`internal`) ends it. The deltas concatenate to `done`'s `reply`. Text the model writes "
    "before calling tools is never sent; its answer is sent once the model has finished it. "
    'While tools run, `event: status` (`StreamStatus`, `{"stage": ...}`) tells what the turn '
    "is doing as each tool round starts (`checking_availability`, `booking`, `searching`, "
    "`working`), before any delta. A comment line `: keep-alive` is sent after every 10 s "
    "without an event, so no proxy closes an idle stream; SSE parsers ignore it."
)
_BEARER: list[dict[str, list[str]]] = [{"bearerAuth": []}]
_CONVERSATION = "/api/conversations/{id_empresa}/{session_id}"
_CONVERSATION_PARAMETERS = [
    {
        "name": "id_empresa",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "pattern": "^[1-9][0-9]{0,17}$"},
        "description": "The business (tenant) id, a positive integer.",
    },
    {
        "name": "session_id",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "minLength": 1, "maxLength": 128},
        "description": "The gateway's session id (the customer's WhatsApp number).",
    },
]
_CONVERSATION_ERRORS = {
    key: value for key, value in _CHAT_ERRORS.items() if key in {"400", "401", "503"}
}


def _conversation_paths() -> dict[str, Any]:
    state = {"description": "The conversation's state.", "content": _json("ConversationState")}
    return {
        _CONVERSATION + "/resume": {
            "post": {
                "summary": "Hand a conversation back to the assistant (end a handoff).",
                "parameters": _CONVERSATION_PARAMETERS,
                "responses": {"200": state, **_CONVERSATION_ERRORS},
            }
        },
        _CONVERSATION + "/messages": {
            "post": {
                "summary": "Record what a person told the customer while the conversation is "
                "paused, so the assistant knows it when it resumes.",
                "parameters": _CONVERSATION_PARAMETERS,
                "requestBody": {"required": True, "content": _json("ConversationMessage")},
                "responses": {
                    "200": state,
                    **_CONVERSATION_ERRORS,
                    "408": _CHAT_ERRORS["408"],
                    "409": _error("`not_paused`: the conversation is not handed to a person."),
                    "413": _CHAT_ERRORS["413"],
                    "415": _CHAT_ERRORS["415"],
                },
            }
        },
    }


def _sse_event(name: str, model: str) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["event", "data"],
        "properties": {
            "event": {"const": name},
            "data": {
                "type": "string",
                "contentMediaType": "application/json",
                "contentSchema": {"$ref": _REF.format(model=model)},
            },
        },
    }


@cache
def openapi_document(
    *, api_auth: bool = False, metrics_auth: bool = False, max_message_chars: int | None = None
) -> dict[str, Any]:
    """The document for one configuration: the security it declares is the one enforced, the
    message bound the one configured."""
    _, definitions = models_json_schema(
        [
            (m, "validation")
            for m in (
                ChatRequest,
                ChatResponse,
                ConversationMessage,
                ConversationState,
                ErrorResponse,
                StatusResponse,
                StreamDelta,
                StreamStatus,
            )
        ],
        ref_template=_REF,
    )
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "citas",
            "version": __version__,
            "description": "Appointment-booking assistant: the gateway API.",
        },
        "paths": {
            "/api/chat": {
                "post": {
                    "summary": "Answer one customer message.",
                    "requestBody": {"required": True, "content": _json("ChatRequest")},
                    "responses": {
                        "200": {
                            "description": "The reply (maybe an apology with `error`).",
                            "content": _json("ChatResponse"),
                        },
                        **_CHAT_ERRORS,
                    },
                }
            },
            "/api/chat/stream": {
                "post": {
                    "summary": "Answer one customer message as Server-Sent Events.",
                    "description": _STREAM_DESCRIPTION,
                    "requestBody": {"required": True, "content": _json("ChatRequest")},
                    "responses": {
                        "200": {
                            "description": "An event stream (see the operation's description).",
                            "content": {
                                "text/event-stream": {
                                    # One schema per event, as SSE parsers see it: the event
                                    # name and its `data`, a JSON text of the named model.
                                    "schema": {
                                        "oneOf": [
                                            _sse_event("status", "StreamStatus"),
                                            _sse_event("delta", "StreamDelta"),
                                            _sse_event("done", "ChatResponse"),
                                            _sse_event("error", "ErrorResponse"),
                                        ]
                                    },
                                }
                            },
                        },
                        **_CHAT_ERRORS,
                    },
                }
            },
            **_conversation_paths(),
            "/health": {
                "get": {
                    "summary": "Liveness.",
                    "responses": {
                        "200": {"description": "Alive.", "content": _json("StatusResponse")}
                    },
                }
            },
            "/ready": {
                "get": {
                    "summary": "Readiness.",
                    "responses": {
                        "200": {"description": "Ready.", "content": _json("StatusResponse")},
                        "503": {
                            "description": "Draining or store down.",
                            "content": _json("StatusResponse"),
                        },
                    },
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics.",
                    "responses": {
                        "200": {
                            "description": "Text exposition format.",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        }
                    },
                }
            },
            "/openapi.json": {
                "get": {
                    "summary": "This document.",
                    "responses": {
                        "200": {
                            "description": "OpenAPI 3.1.",
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        }
                    },
                }
            },
        },
        "components": {
            "schemas": definitions["$defs"],
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "CITAS_API_TOKEN; required only when it is set.",
                }
            },
        },
    }
    if max_message_chars is not None:
        message = definitions["$defs"]["ChatRequest"]["properties"]["message"]
        message["maxLength"] = max_message_chars
    paths = document["paths"]
    if api_auth:
        paths["/api/chat"]["post"]["security"] = _BEARER
        paths["/api/chat/stream"]["post"]["security"] = _BEARER
        for path in _conversation_paths():
            paths[path]["post"]["security"] = _BEARER
    if metrics_auth:
        paths["/metrics"]["get"]["security"] = _BEARER
        paths["/metrics"]["get"]["responses"]["401"] = _error("Missing or wrong bearer token.")
    return document
