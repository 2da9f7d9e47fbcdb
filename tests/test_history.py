"""Conversation history: isolation per business, trimming by whole turns, the stable prefix."""

from __future__ import annotations

import json
import math
from typing import Any

from citas.conversation import Conversation
from citas.testing import ModelScript, call, reply, validate_request
from citas.tokens import estimate_tokens
from tests.conftest import ChatFn


def _contents(request: dict[str, Any]) -> list[str]:
    return [m.get("content") or "" for m in request["messages"]]


async def test_same_session_id_in_two_businesses_is_two_conversations(
    chat: ChatFn, llm: ModelScript
) -> None:
    llm.add(reply("Hola clínica"), reply("Hola barbería"))
    await chat("Soy cliente de la clínica", session_id="shared", id_empresa=12)
    await chat("Soy cliente de la barbería", session_id="shared", id_empresa=27)
    barber_request = _contents(llm.requests[-1])
    assert "Soy cliente de la barbería" in barber_request
    assert not any("clínica" in c and c.startswith("Soy") for c in barber_request)
    assert "Hola clínica" not in barber_request


async def test_system_prompt_is_byte_identical_and_clock_separate(
    chat: ChatFn, llm: ModelScript
) -> None:
    llm.add(reply("uno"), reply("dos"))
    await chat("Hola")
    await chat("¿Qué horario tienen?")
    first, second = llm.requests
    assert first["messages"][0] == second["messages"][0]
    assert first["messages"][0]["role"] == "system"
    assert "Fecha y hora actuales" not in first["messages"][0]["content"]
    clock = second["messages"][-2]
    assert clock["role"] == "system"
    assert clock["content"].startswith("Fecha y hora actuales: lunes 2026-11-30 10:00")
    # The clock note is sent each turn and not kept: the earlier turn, without it, is an exact
    # part of the later request right after the prompt (prompt caching).
    earlier = [m for m in first["messages"] if m is not first["messages"][-2]]
    assert second["messages"][: len(earlier)] == earlier
    assert [m["content"] for m in second["messages"]].count(clock["content"]) == 1
    assert first["tools"] == second["tools"]


async def test_long_conversation_trims_whole_turns_and_stays_valid(
    make_client: Any, settings: Any, llm: ModelScript
) -> None:
    client = await make_client(settings.with_updates(history_max_messages=12))
    for turn in range(15):
        llm.add(call("search_products", {"query": f"limpieza {turn}"}), reply(f"respuesta {turn}"))
        body = {
            "message": f"pregunta {turn}",
            "session_id": "long",
            "context": {"config": {"id_empresa": 12}},
        }
        response = await client.post("/api/chat", json=body)
        assert (await response.json())["reply"] == f"respuesta {turn}"
    assert not llm.rejections
    for request in llm.requests:
        validate_request(request)  # raises on any orphan or unanswered tool call
        history = len(request["messages"]) - 1 - 5  # system prompt, this turn (≤5)
        assert history <= 12
    last = _contents(llm.requests[-1])
    assert "pregunta 14" in last and "pregunta 0" not in last


def _turn(n: int, with_tools: bool) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = [{"role": "user", "content": f"u{n}"}]
    if with_tools:
        messages += [
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": f"c{n}",
                        "type": "function",
                        "function": {"name": "t", "arguments": "{}"},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": f"c{n}", "content": "{}"},
        ]
    messages.append({"role": "assistant", "content": f"a{n}"})
    return messages


def test_trim_drops_oldest_whole_turns_in_chunks() -> None:
    conversation = Conversation(turns=[_turn(n, n % 2 == 0) for n in range(10)])
    conversation.trim(20)
    assert conversation.message_count() <= 20 * 2 // 3
    assert conversation.turns[-1] == _turn(9, False)
    first = conversation.turns[0]
    assert first[0]["role"] == "user"  # a turn is never cut in the middle
    untouched = Conversation(turns=[_turn(0, True)] * 3)
    untouched.trim(20)
    assert len(untouched.turns) == 3


def test_trim_keeps_the_latest_turn_even_when_alone_over_budget() -> None:
    conversation = Conversation(turns=[_turn(0, True), [*_turn(1, True), *_turn(2, True)]])
    conversation.trim(4)
    assert len(conversation.turns) == 1


# --------------------------------------------------------------------------- by estimated tokens


def _long_turn(n: int) -> list[dict[str, Any]]:
    """A turn with a tool call whose arguments and result are long, as real ones are."""
    turn = _turn(n, with_tools=True)
    turn[1]["tool_calls"][0]["function"]["arguments"] = json.dumps({"query": "x" * 300})
    turn[2]["content"] = json.dumps({"ok": True, "productos": ["limpieza dental"] * 20})
    return turn


def _valid_history(conversation: Conversation) -> None:
    """Raises unless the history is one the API accepts (no orphan or unanswered tool call)."""
    system = {"role": "system", "content": "s"}
    validate_request({"model": "m", "messages": [system, *conversation.messages()]})


def test_estimate_counts_text_tool_arguments_and_a_per_message_overhead() -> None:
    assert estimate_tokens([{"role": "user", "content": "a" * 35}]) == 10 + 4
    call_ = _turn(0, with_tools=True)[1]  # a call `t` with arguments `{}`
    assert estimate_tokens([call_]) == math.ceil(3 / 3.5) + 4 + 4
    longer = _long_turn(0)[1]
    assert estimate_tokens([longer]) > estimate_tokens([call_]) + 80  # the arguments count
    assert estimate_tokens(_long_turn(0)) == sum(estimate_tokens([m]) for m in _long_turn(0))


def test_trim_to_tokens_fits_a_long_conversation_in_the_budget() -> None:
    conversation = Conversation(turns=[_long_turn(n) for n in range(40)])
    assert conversation.estimated_tokens() > 5000
    dropped = conversation.trim_to_tokens(1000)
    assert dropped > 0 and len(conversation.turns) == 40 - dropped
    assert conversation.estimated_tokens() <= 1000
    # Down to about two thirds, like `trim`, so the next turns keep their prompt prefix.
    assert conversation.estimated_tokens() <= 1000 * 2 // 3
    assert conversation.turns[-1] == _long_turn(39)
    assert conversation.turns[0][0]["role"] == "user"  # whole turns only
    _valid_history(conversation)


def test_trim_to_tokens_leaves_a_history_within_budget_alone() -> None:
    conversation = Conversation(turns=[_long_turn(n) for n in range(3)])
    assert conversation.trim_to_tokens(conversation.estimated_tokens()) == 0
    assert len(conversation.turns) == 3


def test_trim_to_tokens_keeps_the_latest_turn_even_when_alone_over_budget() -> None:
    conversation = Conversation(turns=[_long_turn(0), _long_turn(1)])
    conversation.trim_to_tokens(10)
    assert conversation.turns == [_long_turn(1)]
    _valid_history(conversation)


def test_shrink_after_context_error_halves_the_history_by_whole_turns() -> None:
    conversation = Conversation(turns=[_long_turn(n) for n in range(10)])
    before = conversation.estimated_tokens()
    assert conversation.shrink_after_context_error()
    assert conversation.estimated_tokens() <= before // 2
    assert conversation.turns[-1] == _long_turn(9)
    _valid_history(conversation)
    alone = Conversation(turns=[_long_turn(0)])
    assert alone.shrink_after_context_error()  # the latest turn goes too if need be
    assert alone.turns == []
    assert not alone.shrink_after_context_error()  # nothing left to drop: no retry
