"""The HTTP surface: validation errors, limits, operations endpoints, the OpenAPI document."""

from __future__ import annotations

from typing import Any

import pytest

from citas.api.models import ChatResponse, ErrorResponse
from citas.testing import ModelScript, reply
from citas.testing.harness import LocalCitas
from tests.conftest import chat_body

Client = LocalCitas


def _without(body: dict[str, Any], *path: str) -> dict[str, Any]:
    target = body
    for key in path[:-1]:
        target = target[key]
    del target[path[-1]]
    return body


def _with(body: dict[str, Any], value: Any, *path: str) -> dict[str, Any]:
    target = body
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return body


INVALID_BODIES = [
    pytest.param(_without(chat_body("hola"), "message"), "message", id="message-missing"),
    pytest.param(chat_body("   \n "), "message", id="message-blank"),
    pytest.param(chat_body("x" * 4097), "message", id="message-too-long"),
    pytest.param(_with(chat_body("hola"), 5, "message"), "message", id="message-not-text"),
    pytest.param(_without(chat_body("hola"), "session_id"), "session_id", id="session-missing"),
    pytest.param(chat_body("hola", session_id=""), "session_id", id="session-empty"),
    pytest.param(chat_body("hola", session_id="s" * 129), "session_id", id="session-too-long"),
    pytest.param(_without(chat_body("hola"), "context"), "context", id="context-missing"),
    pytest.param(
        _without(chat_body("hola"), "context", "config", "id_empresa"),
        "context.config.id_empresa",
        id="empresa-missing",
    ),
    pytest.param(chat_body("hola", id_empresa=0), "context.config.id_empresa", id="empresa-zero"),
    pytest.param(
        chat_body("hola", id_empresa="doce"), "context.config.id_empresa", id="empresa-text"
    ),
    pytest.param(
        chat_body("hola", zona_horaria="Lima/Peru"), "context.config.zona_horaria", id="zone"
    ),
    pytest.param(
        chat_body("hola", duracion_cita_minutos=0),
        "context.config.duracion_cita_minutos",
        id="duration",
    ),
    pytest.param(chat_body("hola", usuario_id=-1), "context.config.usuario_id", id="usuario"),
    pytest.param(_with(chat_body("hola"), "", "message_id"), "message_id", id="message-id"),
]


@pytest.mark.parametrize(("body", "field"), INVALID_BODIES)
async def test_invalid_fields_are_named(client: Client, body: dict[str, Any], field: str) -> None:
    response = await client.post("/api/chat", json=body)
    assert response.status == 400
    error = ErrorResponse.model_validate(await response.json()).error
    assert error.code == "invalid_request"
    assert f"{field}:" in error.message


async def test_several_bad_fields_are_all_named(client: Client) -> None:
    body = chat_body("", session_id="", id_empresa=-3)
    response = await client.post("/api/chat", json=body)
    message = (await response.json())["error"]["message"]
    for field in ("message:", "session_id:", "context.config.id_empresa:"):
        assert field in message


@pytest.mark.parametrize("raw", [b"{not json", b"[1, 2]", b"", b"null"])
async def test_non_object_bodies_are_400(client: Client, raw: bytes) -> None:
    response = await client.post("/api/chat", data=raw)
    assert response.status == 400
    assert (await response.json())["error"]["code"] == "invalid_request"


async def test_body_over_64_kib_is_413(client: Client) -> None:
    response = await client.post("/api/chat", data=b"{" + b" " * (64 * 1024 + 1) + b"}")
    assert response.status == 413
    assert (await response.json())["error"]["code"] == "payload_too_large"


async def test_unknown_route_and_method_answer_json(client: Client) -> None:
    missing = await client.get("/nope")
    wrong = await client.get("/api/chat")
    assert (missing.status, (await missing.json())["error"]["code"]) == (404, "not_found")
    assert (wrong.status, (await wrong.json())["error"]["code"]) == (405, "method_not_allowed")


async def test_reply_matches_the_documented_model(client: Client, llm: ModelScript) -> None:
    llm.add(reply("Hola"))
    response = await client.post("/api/chat", json=chat_body("hola"))
    assert ChatResponse.model_validate(await response.json()).reply == "Hola"
    assert response.headers["X-Request-ID"]


async def test_answers_are_utf8_as_written(client: Client, llm: ModelScript) -> None:
    llm.add(reply("¿Mañana a las 3? Está libre."))
    response = await client.post("/api/chat", json=chat_body("hola"))
    assert response.headers["Content-Type"] == "application/json; charset=utf-8"
    raw = await response.read()
    assert "¿Mañana a las 3? Está libre.".encode() in raw and b"\\u00" not in raw


async def test_request_id_is_echoed(client: Client) -> None:
    response = await client.get("/health", headers={"X-Request-ID": "gw-123"})
    assert response.headers["X-Request-ID"] == "gw-123"


async def test_operations_endpoints(client: Client) -> None:
    health = await client.get("/health")
    ready = await client.get("/ready")
    metrics = await client.get("/metrics")
    assert (health.status, await health.json()) == (200, {"status": "ok"})
    assert (ready.status, await ready.json()) == (200, {"status": "ready"})
    assert metrics.status == 200
    assert "citas_chat_requests_total" in await metrics.text()


async def test_openapi_describes_exactly_the_routes(client: Client) -> None:
    document = await (await client.get("/openapi.json")).json()
    documented = {
        (method.upper(), path) for path, ops in document["paths"].items() for method in ops
    }
    served = {
        (route.method, route.resource.canonical)
        for route in client.app.router.routes()
        if route.method != "HEAD" and route.resource is not None
    }
    assert documented == served
    schemas = document["components"]["schemas"]
    assert set(schemas["ChatRequest"]["required"]) == {"message", "session_id", "context"}
    assert set(schemas["BusinessConfig"]["properties"]) == {
        "id_empresa",
        "personalidad",
        "usuario_id",
        "duracion_cita_minutos",
        "zona_horaria",
    }
