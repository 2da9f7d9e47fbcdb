"""The HTTP surface: validation errors, limits, operations endpoints, the OpenAPI document."""

from __future__ import annotations

import json
from typing import Any

import pytest

from citas.api.models import ChatResponse, ErrorResponse
from citas.sandbox import RunningSandbox
from citas.testing import ModelScript, reply
from citas.testing.harness import LocalCitas
from tests.conftest import chat_body

Client = LocalCitas
JSON_TYPE = {"Content-Type": "application/json"}


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
        chat_body("hola", zona_horaria="localtime"), "context.config.zona_horaria", id="localtime"
    ),
    pytest.param(
        chat_body("hola", zona_horaria="Factory"), "context.config.zona_horaria", id="factory"
    ),
    pytest.param(
        chat_body("hola", id_empresa=10**400), "context.config.id_empresa", id="empresa-huge"
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
    response = await client.post("/api/chat", data=raw, headers=JSON_TYPE)
    assert response.status == 400
    assert (await response.json())["error"]["code"] == "invalid_request"


@pytest.mark.parametrize("path", ["/api/chat", "/api/chat/stream"])
async def test_deeply_nested_json_is_400_not_a_traceback(
    client: Client, llm: ModelScript, path: str
) -> None:
    raw = b'{"message": "hola", "session_id": "s", "context": ' + b"[" * 1000 + b"]" * 1000 + b"}"
    response = await client.post(path, data=raw, headers=JSON_TYPE)
    assert response.status == 400
    assert (await response.json())["error"]["code"] == "invalid_request"
    assert llm.requests == []


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", None],
)
async def test_a_body_not_declared_json_is_415(
    client: Client, llm: ModelScript, content_type: str | None
) -> None:
    # text/plain and form bodies are what a browser may POST cross-origin without a preflight.
    raw = json.dumps(chat_body("hola")).encode()
    headers = {} if content_type is None else {"Content-Type": content_type}
    response = await client.post("/api/chat", data=raw, headers=headers)
    assert response.status == 415
    error = ErrorResponse.model_validate(await response.json()).error
    assert error.code == "unsupported_media_type"
    assert llm.requests == []


@pytest.mark.parametrize("content_type", ["application/json", "application/json; charset=utf-8"])
async def test_json_content_types_are_read(
    client: Client, llm: ModelScript, content_type: str
) -> None:
    llm.add(reply("Hola."))
    raw = json.dumps(chat_body("hola")).encode()
    response = await client.post("/api/chat", data=raw, headers={"Content-Type": content_type})
    assert response.status == 200


async def test_body_over_64_kib_is_413(client: Client) -> None:
    big = b"{" + b" " * (64 * 1024 + 1) + b"}"
    response = await client.post("/api/chat", data=big, headers=JSON_TYPE)
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
        "moneda",
        "correo_obligatorio",
    }


async def test_an_unknown_business_is_a_clear_error_without_the_model_and_is_remembered(
    client: Client, llm: ModelScript, sandbox: RunningSandbox
) -> None:
    for n in range(3):
        response = await client.post("/api/chat", json=chat_body(f"hola {n}", id_empresa=999))
        assert response.status == 404
        error = ErrorResponse.model_validate(await response.json()).error
        assert error.code == "unknown_business" and "999" in error.message
    assert llm.requests == []  # no model call for a business nobody set up
    # The five business operations were asked once; the next messages were answered from memory.
    assert len(sandbox.backend.calls_of("OBTENER_CONTEXTO_NEGOCIO")) == 1
    assert len(sandbox.backend.calls) == 5
