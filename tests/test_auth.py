"""Auth: the bearer token on /api/* (and /metrics when asked), operations endpoints open."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from yarl import URL

from citas.api import middlewares
from citas.config import Settings
from citas.errors import ConfigError
from citas.metrics import REGISTRY
from citas.testing import ModelScript, reply
from citas.testing.harness import LocalCitas
from tests.conftest import chat_body

Client = LocalCitas
MakeClient = Callable[..., Awaitable[Client]]
TOKEN = "s3cret-token-for-tests"
GOOD = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
async def secured(make_client: MakeClient, settings: Settings, llm: ModelScript) -> Client:
    llm.responder = lambda _body: reply("Hola")
    return await make_client(settings.with_updates(api_token=TOKEN))


def _unauthorized() -> float:
    labels = {"reason": "unauthorized"}
    return REGISTRY.get_sample_value("citas_rejected_requests_total", labels) or 0.0


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="missing"),
        pytest.param({"Authorization": f"Bearer {TOKEN}x"}, id="longer"),
        pytest.param({"Authorization": f"Bearer {TOKEN[:-1]}"}, id="shorter"),
        pytest.param({"Authorization": "Bearer "}, id="empty"),
        pytest.param({"Authorization": TOKEN}, id="no-scheme"),
        pytest.param({"Authorization": f"Basic {TOKEN}"}, id="basic"),
        pytest.param({"Authorization": f"Token {TOKEN}"}, id="other-scheme"),
        pytest.param({"X-Api-Token": TOKEN}, id="other-header"),
    ],
)
async def test_api_needs_the_token(
    secured: Client, llm: ModelScript, headers: dict[str, str]
) -> None:
    before = _unauthorized()
    response = await secured.post("/api/chat", json=chat_body("hola"), headers=headers)
    assert response.status == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert (await response.json())["error"]["code"] == "unauthorized"
    assert _unauthorized() == before + 1
    assert not llm.requests


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER"])
async def test_the_right_token_passes(secured: Client, scheme: str) -> None:
    headers = {"Authorization": f"{scheme} {TOKEN}"}
    response = await secured.post("/api/chat", json=chat_body("hola"), headers=headers)
    assert response.status == 200
    assert (await response.json())["reply"] == "Hola"


async def test_comparison_is_constant_time(
    secured: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        seen.append((a, b))
        return real(a, b)

    monkeypatch.setattr(middlewares.hmac, "compare_digest", spy)
    await secured.post("/api/chat", json=chat_body("hola"), headers=GOOD)
    await secured.post("/api/chat", json=chat_body("hola"), headers={"Authorization": "x y"})
    assert seen == [(TOKEN.encode(), TOKEN.encode()), (b"y", TOKEN.encode())]


@pytest.mark.parametrize(
    "path",
    [
        "//api/chat",
        "/api/chat/",
        "/api/./chat",
        "/api/../api/chat",
        "/x/../api/chat",
        "/api/%63hat",
        "/API/chat",
    ],
)
async def test_no_spelling_of_the_path_skips_auth(
    secured: Client, llm: ModelScript, path: str
) -> None:
    # Sent as written, as an absolute URL ("//api/chat" alone would read as a host).
    url = URL(f"{secured.base_url}{path}", encoded=True)
    async with aiohttp.ClientSession() as http, http.post(url, json=chat_body("hola")) as response:
        pass
    assert response.status in (401, 404, 405)
    assert not llm.requests


@pytest.mark.parametrize("path", ["/health", "/ready", "/openapi.json", "/metrics"])
async def test_operations_endpoints_stay_open(secured: Client, path: str) -> None:
    response = await secured.get(path)
    assert response.status == 200


async def test_metrics_can_require_the_token(make_client: MakeClient, settings: Settings) -> None:
    client = await make_client(settings.with_updates(api_token=TOKEN, metrics_require_token=True))
    assert (await client.get("/metrics")).status == 401
    assert (await client.get("/metrics", headers=GOOD)).status == 200
    assert (await client.get("/health")).status == 200
    assert (await client.get("/ready")).status == 200


def test_metrics_token_without_a_token_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="CITAS_METRICS_REQUIRE_TOKEN needs CITAS_API_TOKEN"):
        Settings.from_env({"CITAS_METRICS_REQUIRE_TOKEN": "true"})


async def test_without_a_token_the_api_is_open(client: Client, llm: ModelScript) -> None:
    llm.add(reply("Hola"))
    response = await client.post("/api/chat", json=chat_body("hola"))
    assert response.status == 200


@pytest.mark.parametrize(
    ("changes", "chat_secured", "metrics_secured"),
    [
        ({}, False, False),
        ({"api_token": TOKEN}, True, False),
        ({"api_token": TOKEN, "metrics_require_token": True}, True, True),
    ],
)
async def test_openapi_declares_the_security_enforced(
    make_client: MakeClient,
    settings: Settings,
    changes: dict[str, Any],
    chat_secured: bool,
    metrics_secured: bool,
) -> None:
    client = await make_client(settings.with_updates(**changes))
    document = await (await client.get("/openapi.json")).json()
    assert document["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    assert ("security" in document["paths"]["/api/chat"]["post"]) is chat_secured
    assert ("security" in document["paths"]["/metrics"]["get"]) is metrics_secured
    for path in ("/health", "/ready", "/openapi.json"):
        assert "security" not in document["paths"][path]["get"]
