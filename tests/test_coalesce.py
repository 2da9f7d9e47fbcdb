"""`CITAS_COALESCE_MS`: a burst of messages of one conversation is answered as one turn, by its
last message; the others get `{"reply": null, "coalesced": true}`. On one instance and on two
sharing Redis, with `message_id` dedupe and arrival order kept."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from citas.config import Settings
from citas.errors import StoreUnavailable
from citas.runtime import RUNTIME
from citas.testing import ModelScript, reply
from citas.testing.harness import LocalCitas
from tests.conftest import chat_body

MakeClient = Callable[..., Awaitable[LocalCitas]]
BURST = ["Hola", "quiero una cita", "para mañana"]
COALESCED = {"reply": None, "coalesced": True}


async def _send(client: LocalCitas, message: str, message_id: str, path: str = "/api/chat") -> Any:
    body = {**chat_body(message), "message_id": message_id}
    response = await client.post(path, json=body)
    assert response.status == 200
    return await (response.json() if path == "/api/chat" else response.text())


async def _burst(clients: list[LocalCitas], gap: float = 0.03) -> list[Any]:
    """The burst's messages sent a little apart (as a person types), alternating instances."""

    async def one(n: int) -> Any:
        await asyncio.sleep(n * gap)
        return await _send(clients[n % len(clients)], BURST[n], f"wamid.{n}")

    return await asyncio.gather(*(one(n) for n in range(len(BURST))))


def _user_messages(request: dict[str, Any]) -> list[str]:
    return [m["content"] for m in request["messages"] if m["role"] == "user"]


async def _check_one_turn(answers: list[Any], llm: ModelScript) -> None:
    assert answers[:2] == [COALESCED, COALESCED]
    assert answers[2]["reply"] == "¡Hola! ¿A qué hora te acomoda mañana?"
    [request] = llm.requests  # one turn, one model call
    assert _user_messages(request) == BURST  # each its own user message, in arrival order


async def test_a_burst_is_one_turn_answered_by_its_last_message(
    make_client: MakeClient, settings: Settings, llm: ModelScript
) -> None:
    client = await make_client(settings.with_updates(coalesce_ms=500))
    llm.add(reply("¡Hola! ¿A qué hora te acomoda mañana?"), reply("Anotado."))
    await _check_one_turn(await _burst([client]), llm)
    # The history keeps the three messages and the one reply.
    await _send(client, "a las 10", "wamid.3")
    assert _user_messages(llm.requests[-1]) == [*BURST, "a las 10"]
    assistant = [m["content"] for m in llm.requests[-1]["messages"] if m["role"] == "assistant"]
    assert assistant == ["¡Hola! ¿A qué hora te acomoda mañana?"]
    # Redeliveries get what each message got the first time, and run nothing.
    assert await _send(client, BURST[0], "wamid.0") == COALESCED
    again = await _send(client, BURST[2], "wamid.2")
    assert again["reply"] == "¡Hola! ¿A qué hora te acomoda mañana?"
    assert len(llm.requests) == 2


async def test_a_burst_across_two_instances_sharing_redis(
    make_client: MakeClient, redis_settings: Settings, llm: ModelScript
) -> None:
    settings = redis_settings.with_updates(coalesce_ms=500)
    a, b = await make_client(settings), await make_client(settings)
    llm.add(reply("¡Hola! ¿A qué hora te acomoda mañana?"))
    await _check_one_turn(await _burst([a, b]), llm)


async def test_messages_sent_while_a_turn_runs_are_answered_together(
    make_client: MakeClient, settings: Settings, llm: ModelScript
) -> None:
    client = await make_client(settings.with_updates(coalesce_ms=50))
    llm.add(reply("Uno."), reply("Dos y tres."))
    llm.delay_next(1.0)  # the first turn is slow: the next two wait for it
    answers = await _burst([client], gap=0.3)
    assert answers[0]["reply"] == "Uno." and answers[1] == COALESCED
    assert answers[2]["reply"] == "Dos y tres."
    assert _user_messages(llm.requests[-1]) == BURST


async def test_a_coalesced_stream_ends_with_no_text(
    make_client: MakeClient, settings: Settings, llm: ModelScript
) -> None:
    client = await make_client(settings.with_updates(coalesce_ms=400))
    llm.add(reply("¡Hola!"))
    first = asyncio.create_task(_send(client, "Hola", "wamid.a", "/api/chat/stream"))
    await asyncio.sleep(0.03)
    last = await _send(client, "quiero una cita", "wamid.b", "/api/chat/stream")
    assert "event: delta" not in await first
    assert 'data: {"reply":null,"coalesced":true}' in await first
    assert 'event: delta\ndata: {"text":"¡Hola!"}' in last


@pytest.mark.parametrize("value", ["-1", "10001"])
def test_the_window_is_bounded(value: str) -> None:
    with pytest.raises(Exception, match="CITAS_COALESCE_MS"):
        Settings.from_env({"CITAS_COALESCE_MS": value})
    assert Settings.from_env({}).coalesce_ms == 0


async def test_a_retry_after_a_failed_burst_answers_the_whole_burst(
    make_client: MakeClient, settings: Settings, llm: ModelScript, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = await make_client(settings.with_updates(coalesce_ms=400))
    store = client.app[RUNTIME].store
    saved = store.save

    async def down(*args: Any) -> None:
        raise StoreUnavailable("save", "redis down")

    monkeypatch.setattr(store, "save", down)
    llm.add(reply("¡Hola! ¿A qué hora?"), reply("¡Hola! ¿A qué hora?"))
    first = asyncio.create_task(_send(client, "Hola", "wamid.0"))
    await asyncio.sleep(0.03)
    response = await client.post(
        "/api/chat", json={**chat_body("para mañana"), "message_id": "wamid.1"}
    )
    assert response.status == 503  # the turn ran, its save failed: the gateway retries
    assert await first == COALESCED
    monkeypatch.setattr(store, "save", saved)
    retried = await _send(client, "para mañana", "wamid.1")
    assert retried["reply"] == "¡Hola! ¿A qué hora?"
    assert _user_messages(llm.requests[-1]) == ["Hola", "para mañana"]  # nothing lost or doubled
