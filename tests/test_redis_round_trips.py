"""How many times a turn waits on Redis (issue 17): every request the app writes to a Redis
connection is recorded, one entry per round trip (a pipeline or a script call is one), with the
commands it carried, so a failure shows what the turn did.

Counted after a first turn of the same conversation: connections are open and the scripts are
loaded (a fresh process pays a SCRIPT LOAD once per script, not per turn).
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from redis.asyncio.connection import Connection

import citas.ratelimit
import citas.store.redis
from citas.config import Settings
from citas.testing import ModelScript, call, reply
from citas.testing.harness import LocalCitas
from tests.conftest import chat_body

MakeClient = Callable[..., Awaitable[LocalCitas]]
SLOT = {"date": "2026-12-01", "time": "15:00"}
MAX_TRIPS_PER_TURN = 4


def _script_names() -> dict[str, str]:
    """The SHA1 of each Lua script of the app, to name an EVALSHA by its script."""
    names = {}
    for module in (citas.store.redis, citas.ratelimit):
        for name, value in vars(module).items():
            if isinstance(value, str) and "redis.call(" in value:
                names[hashlib.sha1(value.encode()).hexdigest()] = name.strip("_")
    return names


def _commands(packed: bytes) -> list[list[bytes]]:
    """The RESP arrays (one per command) in what a connection sends."""
    commands, at = [], 0
    while at < len(packed):
        assert packed[at : at + 1] == b"*", packed[at:]
        end = packed.index(b"\r\n", at)
        count, at = int(packed[at + 1 : end]), end + 2
        args = []
        for _ in range(count):
            end = packed.index(b"\r\n", at)
            size, at = int(packed[at + 1 : end]), end + 2
            args.append(packed[at : at + size])
            at += size + 2
        commands.append(args)
    return commands


class RoundTrips:
    """The app's Redis round trips while `counting()`, described as `"GET reply:wamid.1"`,
    `"EVALSHA ACQUIRE lock"`, `"MULTI | RPUSH burst | EXPIRE burst | EXEC"`."""

    def __init__(self) -> None:
        self.trips: list[str] = []
        self._on = False
        self._scripts = _script_names()

    @contextmanager
    def counting(self) -> Iterator[list[str]]:
        self.trips = []
        self._on = True
        try:
            yield self.trips
        finally:
            self._on = False

    def record(self, command: bytes | str | Iterable[bytes]) -> None:
        if not self._on:
            return
        if isinstance(command, str):
            command = command.encode()
        packed = command if isinstance(command, bytes) else b"".join(bytes(c) for c in command)
        self.trips.append(" | ".join(self._describe(args) for args in _commands(packed)))

    def _describe(self, args: list[bytes]) -> str:
        name = args[0].decode().upper()
        if name in {"EVALSHA", "EVAL"}:
            script = self._scripts.get(args[1].decode(), "?")
            keys = [self._short(k) for k in args[3 : 3 + int(args[2])]]
            return f"{name} {script} {','.join(keys)}"
        if len(args) > 1 and name not in {"MULTI", "EXEC", "PING"}:
            return f"{name} {self._short(args[1])}"
        return name

    @staticmethod
    def _short(key: bytes) -> str:
        # `P:vN:{E:S}:conv` → `conv`: the conversation is the same throughout a test.
        text = key.decode(errors="replace")
        return text.rsplit("}:", 1)[-1] if "}:" in text else text.rsplit(":", 2)[-2]


@pytest.fixture
def trips(monkeypatch: pytest.MonkeyPatch) -> RoundTrips:
    counter = RoundTrips()
    send = Connection.send_packed_command

    async def counted(
        self: Connection, command: bytes | str | Iterable[bytes], check_health: bool = True
    ) -> None:
        counter.record(command)
        await send(self, command, check_health)

    monkeypatch.setattr(Connection, "send_packed_command", counted)
    return counter


async def _chat(client: LocalCitas, message: str, message_id: str) -> dict[str, Any]:
    response = await client.post("/api/chat", json={**chat_body(message), "message_id": message_id})
    assert response.status == 200, await response.text()
    body: dict[str, Any] = await response.json()
    return body


def _report(kind: str, trips: list[str]) -> str:
    lines = "\n".join(f"  {n}. {trip}" for n, trip in enumerate(trips, 1))
    text = f"{kind} turn: {len(trips)} Redis round trips\n{lines}"
    print(text)
    return text


async def test_a_turn_with_a_tool_round_takes_at_most_four_round_trips(
    make_client: MakeClient, redis_settings: Settings, llm: ModelScript, trips: RoundTrips
) -> None:
    client = await make_client(redis_settings)
    llm.add(reply("¡Hola!"))
    await _chat(client, "Hola", "wamid.0")  # warm: connections open, scripts loaded
    llm.add(call("check_availability", SLOT), reply("Libre a las 3pm."))
    with trips.counting() as normal:
        body = await _chat(client, "¿El martes a las 3pm?", "wamid.1")
    assert body["reply"] == "Libre a las 3pm."
    report = _report("normal", normal)
    assert len(normal) <= MAX_TRIPS_PER_TURN, report

    with trips.counting() as duplicate:
        again = await _chat(client, "¿El martes a las 3pm?", "wamid.1")
    assert again == body
    report = _report("duplicate", duplicate)
    # The reply read before the rate limit (a redelivery takes no token), then read again as the
    # turn would hold the conversation: found, it takes neither the lock nor a place in line.
    assert len(duplicate) <= 2, report


async def test_a_paused_conversation_turn_takes_at_most_four_round_trips(
    make_client: MakeClient, redis_settings: Settings, llm: ModelScript, trips: RoundTrips
) -> None:
    client = await make_client(redis_settings)
    llm.add(call("request_human", {"reason": "pidió hablar con una persona"}))
    await _chat(client, "Quiero hablar con una persona", "wamid.0")
    with trips.counting() as paused:
        body = await _chat(client, "¿Hola?", "wamid.1")
    assert body["paused"] is True
    report = _report("paused", paused)
    assert len(paused) <= MAX_TRIPS_PER_TURN, report


async def test_a_coalescing_turn_counts_its_round_trips(
    make_client: MakeClient, redis_settings: Settings, llm: ModelScript, trips: RoundTrips
) -> None:
    client = await make_client(redis_settings.with_updates(coalesce_ms=50))
    llm.add(reply("¡Hola!"), reply("Anotado."))
    await _chat(client, "Hola", "wamid.0")
    with trips.counting() as coalescing:
        body = await _chat(client, "quiero una cita", "wamid.1")
    assert body["reply"] == "Anotado."
    report = _report("coalescing", coalescing)
    # The burst is shared through Redis: joining it is a round trip of its own, before the
    # window; the turn's own two then read it and clear what they answered.
    assert len(coalescing) <= 5, report


async def test_a_booking_turn_adds_only_its_intent_record(
    make_client: MakeClient, redis_settings: Settings, llm: ModelScript, trips: RoundTrips
) -> None:
    client = await make_client(redis_settings)
    llm.add(call("check_availability", SLOT), reply("Libre."))
    await _chat(client, "¿El martes a las 3pm?", "wamid.0")
    customer = {"customer_name": "Ana Pérez", "customer_email": "ana.perez@example.com"}
    llm.add(call("create_booking", {**SLOT, **customer}), reply("¡Listo!"))
    with trips.counting() as booking:
        body = await _chat(client, "Ana Pérez, ana.perez@example.com", "wamid.1")
    assert body["url"]
    report = _report("booking", booking)
    # The intent is read and written before CREAR_EVENTO goes out (booking idempotency).
    assert len(booking) <= MAX_TRIPS_PER_TURN + 2, report
