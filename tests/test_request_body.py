"""`RequestEncoder`: request bodies built from each message's bytes, serialized once."""

from __future__ import annotations

import json
from typing import Any

import pytest

from citas.agent import request_body
from citas.agent.openai_model import OpenAIChatModel, create_client
from citas.agent.request_body import RequestEncoder
from citas.agent.tools import TOOLS
from citas.messages import (
    Message,
    assistant_message,
    system_message,
    tool_message,
    user_message,
)
from citas.messages import ToolCallRequest as Call
from citas.testing import FakeLLM, ModelScript, call, reply
from tests.conftest import ChatFn

FIELDS = {"model": "gpt-4o-mini", "stream": True, "stream_options": {"include_usage": True}}
SCHEMAS = [tool.schema for tool in TOOLS]


def conversation(turns: int) -> list[Message]:
    messages: list[Message] = [system_message('Eres la recepcionista. «Ñandú» — 10 % "off".')]
    for n in range(turns):
        arguments = json.dumps({"date": "2026-12-07", "time": f"1{n % 10}:00"})
        messages += [
            user_message(f"¿Tienen libre el lunes a las 1{n % 10}? 🙂"),
            assistant_message(None, [Call(f"call_{n}", "check_availability", arguments)]),
            tool_message(f"call_{n}", json.dumps({"ok": True, "mensaje": "lunes 7, libre"})),
            assistant_message("Está libre. ¿Te lo reservo?"),
        ]
    return messages


def test_the_body_is_the_request_as_json() -> None:
    messages = conversation(3)
    body = RequestEncoder().body(FIELDS, messages, SCHEMAS)
    assert json.loads(body) == {**FIELDS, "messages": messages, "tools": SCHEMAS}
    assert "Ñandú".encode() in body  # UTF-8 on the wire, not \\u escapes


def test_no_tools_means_no_tools_member_and_no_fields_still_parses() -> None:
    messages = conversation(1)
    assert "tools" not in json.loads(RequestEncoder().body(FIELDS, messages, []))
    assert json.loads(RequestEncoder().body({}, messages, [])) == {"messages": messages}


def test_a_message_is_serialized_once_across_requests(monkeypatch: pytest.MonkeyPatch) -> None:
    dumped: list[Any] = []
    real = request_body._dumps

    def counting(value: object) -> bytes:
        dumped.append(value)
        return real(value)

    monkeypatch.setattr(request_body, "_dumps", counting)
    encoder = RequestEncoder()
    history = conversation(15)  # 61 messages, as a long conversation has
    encoder.body(FIELDS, history, SCHEMAS)
    dumped.clear()
    new = user_message("¿Y el martes?")
    body = encoder.body(FIELDS, [*history, new], SCHEMAS)
    # Only the call's own fields and the new message: not the prompt, history or tools again.
    assert dumped == [FIELDS, new]
    assert json.loads(body)["messages"] == [*history, new]


def test_equal_messages_that_are_different_objects_are_each_right() -> None:
    encoder = RequestEncoder()
    first, second = user_message("hola"), user_message("hola")
    third = user_message("adiós")
    body = encoder.body(FIELDS, [first, second, third], [])
    assert [m["content"] for m in json.loads(body)["messages"]] == ["hola", "hola", "adiós"]


def test_the_cache_is_bounded_and_evicted_messages_are_serialized_again() -> None:
    encoder = RequestEncoder(max_entries=5)
    history = conversation(3)  # 13 messages
    for _ in range(3):
        body = encoder.body(FIELDS, history, SCHEMAS)
        assert len(encoder) <= 5
        assert json.loads(body)["messages"] == history


def test_max_entries_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_entries"):
        RequestEncoder(max_entries=0)


async def test_the_model_sends_a_growing_conversation_right_serializing_each_message_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    dumped: list[Any] = []
    real = request_body._dumps
    monkeypatch.setattr(request_body, "_dumps", lambda value: dumped.append(value) or real(value))
    history = conversation(2)
    async with FakeLLM([reply("Sí."), reply("Listo.")]) as server:
        client = create_client("k", server.base_url, timeout=5, max_retries=0)
        try:
            model = OpenAIChatModel(client, "gpt-4o-mini")
            await model.complete(history, SCHEMAS, timeout=5)
            dumped.clear()
            more = [*history, assistant_message("Sí."), user_message("Gracias")]
            await model.complete(more, SCHEMAS, timeout=5)
        finally:
            await client.close()
    # What the endpoint got is the conversation itself; only the new messages were serialized.
    assert [r["messages"] for r in server.script.requests] == [history, more]
    assert [value for value in dumped if isinstance(value, dict) and "role" in value] == more[-2:]


@pytest.mark.wire  # through the HTTP model, whose encoder this is
async def test_a_turn_serializes_its_clock_note_once_across_its_model_calls(
    chat: ChatFn, llm: ModelScript, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The note is made once per turn: a tool round's second call reuses its bytes.
    dumped: list[Any] = []
    real = request_body._dumps
    monkeypatch.setattr(request_body, "_dumps", lambda value: dumped.append(value) or real(value))
    llm.add(call("check_availability", {"date": "2026-12-02", "time": "10:00"}), reply("Libre."))
    await chat("¿Tienen libre mañana a las 10?")
    assert len(llm.requests) == 2
    notes = [m for r in llm.requests for m in r["messages"][1:] if m["role"] == "system"]
    assert len(notes) == 2 and notes[0] == notes[1]  # the note went in both calls...
    serialized = [v for v in dumped if isinstance(v, dict) and v.get("role") == "system"]
    assert sum(v["content"] == notes[0]["content"] for v in serialized) == 1  # ...serialized once
