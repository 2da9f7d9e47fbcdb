"""Below the app: idle, half-sent and trickling connections are closed, a flood of slow
connections cannot keep `/health` out, aiohttp's own parse errors are JSON, and a process out of
file descriptors logs it a bounded number of times."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest

from citas.api.connections import CONNECTION_GUARD, AcceptErrorFilter
from citas.config import Settings
from citas.testing.harness import LocalCitas

MakeClient = Callable[..., Awaitable[LocalCitas]]


def _address(client: LocalCitas) -> tuple[str, int]:
    url = aiohttp.client.URL(client.base_url)
    assert url.host is not None and url.port is not None
    return url.host, url.port


async def _closed_within(reader: asyncio.StreamReader, seconds: float) -> bytes:
    """What the server sent before closing the connection (fails if it stays open)."""
    async with asyncio.timeout(seconds):
        return await reader.read()


async def _raw(client: LocalCitas, data: bytes) -> tuple[int, dict[str, Any], str]:
    reader, writer = await asyncio.open_connection(*_address(client))
    writer.write(data)
    await writer.drain()
    answer = await _closed_within(reader, 5)
    writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
    content_type = next(v for k, v in headers.items() if k.lower() == "content-type")
    return status, json.loads(body), content_type


async def test_idle_and_half_sent_connections_are_closed(
    make_client: MakeClient, settings: Settings
) -> None:
    client = await make_client(settings.with_updates(http_idle_timeout_seconds=0.3))
    idle_reader, idle = await asyncio.open_connection(*_address(client))
    half_reader, half = await asyncio.open_connection(*_address(client))
    half.write(b"POST /api/chat HTTP/1.1\r\nHost: citas\r\nContent-Type: app")
    await half.drain()
    assert await _closed_within(idle_reader, 3) == b""
    assert await _closed_within(half_reader, 3) == b""
    idle.close()
    half.close()


async def test_a_body_that_trickles_in_gets_408(
    make_client: MakeClient, settings: Settings
) -> None:
    client = await make_client(settings.with_updates(http_body_timeout_seconds=0.3))
    reader, writer = await asyncio.open_connection(*_address(client))
    writer.write(
        b"POST /api/chat HTTP/1.1\r\nHost: citas\r\nContent-Type: application/json\r\n"
        b'Content-Length: 200\r\n\r\n{"message": '
    )
    await writer.drain()
    async with asyncio.timeout(3):  # the answer; aiohttp then lingers to drain the body
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        body = await reader.readexactly(length)
    writer.close()
    assert head.startswith(b"HTTP/1.1 408")
    assert b"connection: close" in head.lower()
    assert json.loads(body)["error"]["code"] == "request_timeout"


async def test_health_answers_while_slow_clients_hold_connections(
    make_client: MakeClient, settings: Settings
) -> None:
    client = await make_client(
        settings.with_updates(max_connections=16, http_idle_timeout_seconds=60)
    )
    slow = []
    for _ in range(60):  # far more half-sent requests than connections allowed
        reader, writer = await asyncio.open_connection(*_address(client))
        writer.write(b"GET /health HTTP/1.1\r\nHost: citas\r\nX-Slow: ")
        slow.append((reader, writer))
    await asyncio.sleep(0.1)
    async with (
        asyncio.timeout(1),
        aiohttp.ClientSession() as http,
        http.get(client.base_url + "/health") as response,
    ):
        assert response.status == 200
    guard = client.app[CONNECTION_GUARD]
    assert len(guard) <= 16 and guard.evicted >= 60 - 16
    for _, writer in slow:
        writer.close()


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"B@D / HTTP/1.1\r\nHost: citas\r\n\r\n",
        b"POST /api/chat HTTP/1.1\r\nHost: citas\r\nContent-Length: 5\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"GET /health HTTP/1.1\r\nHost: citas\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n",
    ],
    ids=["invalid-method", "length-and-chunked", "header-too-long"],
)
async def test_requests_aiohttp_cannot_parse_are_answered_in_json(
    client: LocalCitas, request_bytes: bytes
) -> None:
    status, body, content_type = await _raw(client, request_bytes)
    assert 400 <= status < 500
    assert content_type.startswith("application/json")
    assert set(body["error"]) == {"code", "message"}
    assert body["error"]["code"] == "invalid_request"


def test_accept_errors_are_logged_once_per_interval() -> None:
    flood = AcceptErrorFilter(every=10.0)

    def record() -> logging.LogRecord:
        return logging.LogRecord(
            "asyncio",
            logging.ERROR,
            __file__,
            1,
            "socket.accept() out of system resource",
            None,
            None,
        )

    passed = [flood.filter(record()) for _ in range(1000)]
    assert passed.count(True) == 1
    assert flood.suppressed == 999
    other = logging.LogRecord("asyncio", logging.ERROR, __file__, 1, "something else", None, None)
    assert flood.filter(other)
