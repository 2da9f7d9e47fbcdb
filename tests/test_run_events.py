"""Run events: what a turn tells its listeners, in order, whatever happens in it."""

from __future__ import annotations

import json

import pytest

from citas.agent.events import (
    AnswerText,
    ModelCallFinished,
    ModelCallStarted,
    RunEvent,
    ToolCallFinished,
    ToolCallStarted,
    TurnFinished,
)
from citas.agent.loop import LLM_APOLOGY
from citas.agent.turn import TurnRequest
from citas.api.turns import finish_turn, start_turn
from citas.domain import Tenant
from citas.runtime import RUNTIME
from citas.testing import ModelScript, call, reply
from citas.testing.harness import LocalCitas, MetricsDelta
from tests.conftest import LIMA, ChatFn

SLOT = {"date": "2026-12-01", "time": "15:00"}


class Listener:
    def __init__(self) -> None:
        self.seen: list[tuple[TurnRequest, RunEvent]] = []

    def __call__(self, turn: TurnRequest, event: RunEvent) -> None:
        self.seen.append((turn, event))

    @property
    def events(self) -> list[RunEvent]:
        return [event for _, event in self.seen]


@pytest.fixture
def listener(client: LocalCitas) -> Listener:
    heard = Listener()
    client.runtime.agent.listeners.append(heard)
    return heard


def kinds(events: list[RunEvent]) -> list[str]:
    return [type(event).__name__ for event in events]


async def test_a_tool_round_is_told_step_by_step(
    chat: ChatFn, llm: ModelScript, listener: Listener
) -> None:
    llm.add(call("check_availability", SLOT, id="c1"), reply("El martes a las 15:00 está libre."))
    await chat("¿El martes a las 3pm?", message_id="wamid.1")
    events = listener.events
    assert kinds(events) == [
        "ModelCallStarted",
        "ModelCallFinished",
        "ToolCallStarted",
        "ToolCallFinished",
        "ModelCallStarted",
        "ModelCallFinished",
        "AnswerText",  # once the reply guard has checked the model's answer
        "TurnFinished",
    ]
    first, tool, second, answer, done = (
        events[1],
        events[3],
        events[5],
        events[6],
        events[7],
    )
    assert isinstance(first, ModelCallFinished) and first.outcome == "ok"
    assert first.reply is not None and [c.name for c in first.reply.tool_calls] == [
        "check_availability"
    ]
    assert first.reply.usage is not None and first.reply.usage.prompt_tokens > 0
    assert (first.round, first.model, first.messages) == (0, "gpt-4o-mini", 3)
    assert isinstance(tool, ToolCallFinished)
    assert (tool.call.id, tool.tool, tool.outcome) == ("c1", "check_availability", "ok")
    assert json.loads(tool.result)["disponible"] is True
    assert answer == AnswerText("El martes a las 15:00 está libre.")
    assert isinstance(second, ModelCallFinished) and second.round == 1
    assert isinstance(done, TurnFinished) and done.outcome == "ok"
    assert done.result is not None and done.result.reply == answer.text
    assert {turn.message_id for turn, _ in listener.seen} == {"wamid.1"}

    # A redelivered message runs nothing, so it tells nothing.
    await chat("¿El martes a las 3pm?", message_id="wamid.1")
    assert len(listener.events) == len(events)


async def test_a_failed_model_call_is_told_with_its_outcome(
    chat: ChatFn, llm: ModelScript, listener: Listener
) -> None:
    llm.fail_next(500)
    await chat("Hola")
    started, failed, apology, done = listener.events
    assert isinstance(started, ModelCallStarted)
    assert isinstance(failed, ModelCallFinished) and failed.reply is None
    assert failed.outcome == "http_500"
    assert isinstance(apology, AnswerText) and apology.text == LLM_APOLOGY
    assert isinstance(done, TurnFinished) and done.outcome == "llm_unavailable"


async def test_unknown_tools_are_told_under_a_label_that_is_not_the_model_text(
    chat: ChatFn, llm: ModelScript, listener: Listener
) -> None:
    llm.add(call("borrar_todo", {}), reply("No puedo hacer eso."))
    await chat("Borra todo")
    [finished] = [e for e in listener.events if isinstance(e, ToolCallFinished)]
    assert (finished.call.name, finished.tool, finished.outcome) == (
        "borrar_todo",
        "unknown",
        "unknown_tool",
    )
    assert [e for e in listener.events if isinstance(e, ToolCallStarted)]


async def test_a_listener_that_raises_costs_the_turn_nothing(
    chat: ChatFn, llm: ModelScript, listener: Listener, client: LocalCitas
) -> None:
    def broken(_turn: TurnRequest, _event: RunEvent) -> None:
        raise RuntimeError("a listener's bug")

    client.runtime.agent.listeners.insert(0, broken)
    delta = MetricsDelta()
    llm.add(reply("Hola, ¿en qué te ayudo?"))
    response = await chat("Hola")
    assert (await response.json())["reply"] == "Hola, ¿en qué te ayudo?"
    assert len(listener.events) == 4  # the listeners after it still hear everything
    assert delta.of("citas_handled_errors_total", where="run_listener") == 4
    # Metrics are a listener too, and kept counting.
    assert delta.of("citas_turn_duration_seconds_count", outcome="ok") == 1


async def test_a_turn_listener_hears_only_its_own_turn(
    client: LocalCitas, llm: ModelScript, listener: Listener
) -> None:
    mine = Listener()
    llm.add(reply("uno"), reply("dos"))
    runtime = client.app[RUNTIME]
    own = TurnRequest(Tenant(12, LIMA, 30), "51900000001", "Hola")
    other = TurnRequest(Tenant(12, LIMA, 30), "51900000002", "Hola")
    await finish_turn(start_turn(runtime, own, mine))
    await finish_turn(start_turn(runtime, other))
    assert {turn.session_id for turn, _ in mine.seen} == {"51900000001"}
    assert {turn.session_id for turn, _ in listener.seen} == {"51900000001", "51900000002"}
    assert mine.events == [e for turn, e in listener.seen if turn.session_id == "51900000001"]
