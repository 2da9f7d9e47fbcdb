"""Every route of the gateway API, registered in one place."""

from __future__ import annotations

from aiohttp import web

from citas.api.handlers import (
    chat,
    health,
    metrics,
    openapi,
    ready,
    record_message,
    resume_conversation,
)
from citas.api.stream import chat_stream


def setup_routes(app: web.Application) -> None:
    app.router.add_post("/api/chat", chat)
    app.router.add_post("/api/chat/stream", chat_stream)
    conversation = "/api/conversations/{id_empresa}/{session_id}"
    app.router.add_post(conversation + "/resume", resume_conversation)
    app.router.add_post(conversation + "/messages", record_message)
    app.router.add_get("/health", health)
    app.router.add_get("/ready", ready)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/openapi.json", openapi)
