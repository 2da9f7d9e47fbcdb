"""`POST /api/chat/stream`: events, the held text before tool calls, errors, redelivery, limits,
and a client that disconnects while a booking is in progress."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from citas.agent.loop import LLM_APOLOGY, Agent
from citas.agent.model import ChatModel
from citas.agent.openai_model import _MalformedStream, _StreamedReply
from citas.agent.tools import ToolRegistry
from citas.app import create_app
from citas.clock import frozen_clock
from citas.config import Settings
from citas.domain import ConversationKey
from citas.errors import StoreUnavailable
from citas.metrics import REGISTRY
from citas.runtime import RUNTIME
from citas.sandbox import Fault, RunningSandbox
from citas.testing import FakeLLM, ModelScript, call, reply, tool_calls
from citas.testing.harness import LocalCitas
from tests.conftest import chat_body, tool_results

Client = LocalCitas
Event = tuple[str, dict[str, Any]]

SLOT = {"date": "2026-12-01", "time": "15:00"}
CUSTOMER = {"customer_name": "Ana Pérez", "customer_email": "ana.perez@example.com"}
STREAM = "/api/chat/stream"


def parse_events(raw: str) -> list[Event]:
    """The events of an SSE body: each block of `event:` and `data:` lines (comment blocks,
    the keep-alives, skipped as SSE clients skip them)."""
    events = []
    for block in raw.split("\n\n"):
        if not block.strip() or block.startswith(":"):
            continue
        fields = dict(line.split(": ", 1) for line in block.split("\n"))
        events.append((fields["event"], json.loads(fields["data"])))
    return events


async def stream(client: Client, message: str, **kwargs: Any) -> list[Event]:
    message_id = kwargs.pop("message_id", None)
    body = chat_body(message, **kwargs)
    if message_id:
        body["message_id"] = message_id
    response = await client.post(STREAM, json=body, headers={"X-Request-ID": "gw-42"})
    assert response.status == 200
    assert response.headers["Content-Type"] == "text/event-stream; charset=utf-8"
    assert response.headers["X-Request-ID"] == "gw-42"
    return parse_events(await response.text())


def streamed_text(events: list[Event]) -> str:
    return "".join(data["text"] for name, data in events if name == "delta")


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait for state that other tasks change without an event to wait on."""
    async with asyncio.timeout(timeout):
        while not predicate():  # noqa: ASYNC110
            await asyncio.sleep(0.01)


@pytest.mark.wire
async def test_booking_over_the_stream(
    client: Client, llm: ModelScript, sandbox: RunningSandbox
) -> None:
    llm.add(call("check_availability", SLOT), reply("El martes a las 15:00 está libre."))
    first = await stream(client, "Quiero una cita el martes 1 a las 3pm")
    assert first[-1] == ("done", {"reply": "El martes a las 15:00 está libre.", "url": None})
    assert tool_results(llm.requests[-1])[-1]["disponible"] is True

    llm.add(call("create_booking", {**SLOT, **CUSTOMER}), reply("¡Listo! Tu cita quedó."))
    events = await stream(client, "Ana Pérez, ana.perez@example.com")

    [booked] = sandbox.backend.events
    assert [name for name, _ in events] == ["status", "delta", "done"]
    assert events[0][1] == {"stage": "booking"}
    done = events[-1][1]
    assert done["url"] == booked.url and booked.url in done["reply"]
    assert done["reply"].startswith("¡Listo! Tu cita quedó.\n\n")  # details added by the guard
    assert streamed_text(events) == events[-1][1]["reply"]
    assert tool_results(llm.requests[-1])[-1]["reservado"] is True
    assert all(r["stream"] is True for r in llm.requests)
    assert all(r["stream_options"] == {"include_usage": True} for r in llm.requests)


@pytest.mark.wire
async def test_usage_chunk_is_counted(client: Client, llm: ModelScript) -> None:
    before = metric("citas_llm_tokens_total", kind="completion")
    llm.add(reply("Hola, ¿en qué te ayudo?"))
    await stream(client, "Hola")
    assert metric("citas_llm_tokens_total", kind="completion") > before


@pytest.mark.wire
async def test_text_before_tool_calls_is_not_sent(
    client: Client, llm: ModelScript, sandbox: RunningSandbox
) -> None:
    preamble = "Voy a revisar la agenda del martes, un momento."
    llm.add(
        tool_calls(call("check_availability", SLOT), text=preamble),
        reply("Sí, el martes a las 15:00 está libre."),
    )
    response = await client.post(STREAM, json=chat_body("¿El martes a las 3pm?"))
    raw = await response.text()

    assert "revisar" not in raw
    events = parse_events(raw)
    assert streamed_text(events) == "Sí, el martes a las 15:00 está libre."
    assert events[-1][1]["reply"] == "Sí, el martes a las 15:00 está libre."
    # The model did say it: the history keeps it beside its tool call.
    [asked] = [m for m in llm.requests[-1]["messages"] if m.get("tool_calls")]
    assert asked["content"] == preamble


async def test_the_answer_is_sent_before_the_turn_ends(
    client: Client, llm: ModelScript, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = client.app[RUNTIME].store
    saved = store.save
    release = asyncio.Event()

    async def save_when_released(*args: Any) -> None:
        await release.wait()
        await saved(*args)

    monkeypatch.setattr(store, "save", save_when_released)
    llm.add(reply("Hola, ¿en qué te ayudo?"))
    response = await client.post(STREAM, json=chat_body("Hola"))
    try:
        # Only the first event can arrive while the turn is still waiting to be saved.
        async with asyncio.timeout(5):
            first = await response.content.readuntil(b"\n\n")
    finally:
        release.set()
    assert parse_events(first.decode()) == [("delta", {"text": "Hola, ¿en qué te ayudo?"})]
    rest = parse_events((await response.content.read()).decode())
    assert rest == [("done", {"reply": "Hola, ¿en qué te ayudo?", "url": None})]


async def test_llm_failure_ends_with_the_apology_in_done(client: Client, llm: ModelScript) -> None:
    llm.fail_next(500)
    events = await stream(client, "Hola")
    assert events[0] == ("delta", {"text": LLM_APOLOGY})
    name, done = events[-1]
    assert (name, done["reply"], done["error"]["code"]) == ("done", LLM_APOLOGY, "llm_unavailable")


@pytest.mark.wire
async def test_a_stream_slower_than_the_deadline_is_an_llm_failure(
    make_client: Callable[..., Awaitable[Client]],
    settings: Settings,
    llm: ModelScript,
    fake_llm: FakeLLM,
) -> None:
    client = await make_client(settings.with_updates(turn_deadline_seconds=0.3))
    fake_llm.chunk_delay = 0.05
    llm.add(reply("Una respuesta larga que el modelo escribe muy despacio, pieza a pieza."))
    events = await stream(client, "Hola")
    assert events[-1][1]["error"]["code"] == "llm_unavailable"


async def test_busy_conversation_is_an_error_event(
    make_client: Callable[..., Awaitable[Client]], settings: Settings, llm: ModelScript
) -> None:
    client = await make_client(settings.with_updates(turn_deadline_seconds=0.2))
    store = client.app[RUNTIME].store
    before = metric("citas_streams_total", outcome="error")
    busy_before = metric("citas_rejected_requests_total", reason="conversation_busy")
    async with store.lock(ConversationKey(12, "51987654321")):
        events = await stream(client, "Hola")
    # Counted under the same reason /api/chat's 503 uses (one mapping for both endpoints).
    assert metric("citas_rejected_requests_total", reason="conversation_busy") == busy_before + 1
    [(name, data)] = events
    assert name == "error"
    assert data["error"]["code"] == "unavailable"
    assert set(data["error"]) == {"code", "message"}
    assert llm.requests == []
    assert metric("citas_streams_total", outcome="error") == before + 1


async def test_unexpected_failure_is_an_internal_error_event(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(*args: Any) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(Agent, "run_turn", broken)
    events = await stream(client, "Hola")
    assert events == [
        ("error", {"error": {"code": "internal", "message": "Unexpected internal error."}})
    ]


async def test_store_down_mid_stream_is_an_unavailable_error_event(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def store_down(*args: Any) -> None:
        raise StoreUnavailable("redis: connection refused")

    monkeypatch.setattr(Agent, "run_turn", store_down)
    [(kind, body)] = await stream(client, "Hola")
    assert (kind, body["error"]["code"]) == ("error", "unavailable")


async def test_invalid_request_is_a_json_400_before_any_stream(client: Client) -> None:
    response = await client.post(STREAM, json=chat_body("   ", id_empresa=0))
    assert response.status == 400
    assert response.content_type == "application/json"
    message = (await response.json())["error"]["message"]
    assert "message:" in message and "context.config.id_empresa:" in message


async def test_overload_is_a_json_503_before_any_stream(client: Client, llm: ModelScript) -> None:
    client.app[RUNTIME].admission.draining = True
    response = await client.post(STREAM, json=chat_body("Hola"))
    assert response.status == 503
    assert (await response.json())["error"]["code"] == "unavailable"
    assert response.headers["Retry-After"]
    assert llm.requests == []


async def test_redelivered_message_gets_the_first_reply_as_one_delta(
    client: Client, llm: ModelScript
) -> None:
    llm.add(reply("Hola, ¿en qué te ayudo?"))
    first = await stream(client, "Hola", message_id="wamid.7")
    again = await stream(client, "Hola", message_id="wamid.7")
    assert again == [
        ("delta", {"text": "Hola, ¿en qué te ayudo?"}),
        ("done", {"reply": "Hola, ¿en qué te ayudo?", "url": None}),
    ]
    assert first == again
    assert len(llm.requests) == 1


async def test_stream_and_chat_share_the_redelivery_record(
    client: Client, llm: ModelScript
) -> None:
    llm.add(reply("Hola."))
    events = await stream(client, "Hola", message_id="wamid.8")
    response = await client.post("/api/chat", json={**chat_body("Hola"), "message_id": "wamid.8"})
    assert await response.json() == events[-1][1]
    assert len(llm.requests) == 1


# --------------------------------------------------------------------------- disconnect


@pytest.fixture(params=[True, False], ids=["handler-cancelled", "handler-kept"])
async def server(
    request: pytest.FixtureRequest, settings: Settings, now: datetime, model: ChatModel | None
) -> AsyncIterator[tuple[str, web.Application, bool]]:
    """citas on its own runner, cancelling the handlers of a client that disconnects or not
    (`web.run_app`, production, by default does not): both must be safe."""
    app = create_app(settings, model=model, clock=frozen_clock(now))
    runner = web.AppRunner(app, handler_cancellation=request.param)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    yield f"http://{host}:{port}", app, request.param
    await runner.cleanup()


async def test_disconnect_mid_booking_still_books_and_saves(
    server: tuple[str, web.Application, bool],
    llm: ModelScript,
    sandbox: RunningSandbox,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    base, app, cancels_handlers = server
    booking_started = asyncio.Event()
    original = ToolRegistry.dispatch

    async def dispatch(self: ToolRegistry, ctx: Any, tool_call: Any, emit: Any) -> str:
        if tool_call.name == "create_booking":
            booking_started.set()
        return await original(self, ctx, tool_call, emit)

    monkeypatch.setattr(ToolRegistry, "dispatch", dispatch)
    gone_before = metric("citas_streams_total", outcome="client_gone")
    closed_before = metric("citas_chat_requests_total", endpoint=STREAM, status="499")
    async with aiohttp.ClientSession() as http:
        llm.add(call("check_availability", SLOT), reply("Libre."))
        async with http.post(f"{base}/api/chat", json=chat_body("martes 3pm")) as first:
            assert first.status == 200

        # The backend takes a while to book: the client gives up in the middle of it.
        sandbox.backend.faults.add("CREAR_EVENTO", Fault("latency", seconds=0.5))
        llm.add(call("create_booking", {**SLOT, **CUSTOMER}), reply("¡Listo!"))
        body = {**chat_body("Ana Pérez, ana.perez@example.com"), "message_id": "wamid.9"}
        response = await http.post(f"{base}{STREAM}", json=body)
        assert response.status == 200
        async with asyncio.timeout(5):
            await booking_started.wait()
        response.close()

        admission = app[RUNTIME].admission
        if cancels_handlers:
            # The handler is gone (logged as 499) while the booking is still in the backend:
            # the turn keeps its admission slot, so draining would wait for it.
            await until(
                lambda: (
                    metric("citas_chat_requests_total", endpoint=STREAM, status="499")
                    > closed_before
                )
            )
            assert not sandbox.backend.events
            assert admission.in_flight == 1
        await until(lambda: admission.in_flight == 0)
        await until(lambda: metric("citas_streams_total", outcome="client_gone") > gone_before)

        [booked] = sandbox.backend.events
        assert llm.pending == 0  # the turn went on to the model's closing answer
        # Saved and remembered: a redelivery gets the reply with the link, without the model.
        async with http.post(f"{base}/api/chat", json=body) as again:
            remembered = await again.json()
            assert remembered["url"] == booked.url and booked.url in remembered["reply"]
        assert len(llm.requests) == 4
        # And the next turn's history holds the booking.
        llm.add(reply("Tu cita sigue en pie."))
        async with http.post(f"{base}/api/chat", json=chat_body("¿Quedó?")) as follow_up:
            assert (await follow_up.json())["reply"] == "Tu cita sigue en pie."
        assert any(r.get("reservado") for r in tool_results(llm.requests[-1]))
    assert len(sandbox.backend.events) == 1


# --------------------------------------------------------------------------- assembly


def _chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    choice = {"index": 0, "delta": delta, "finish_reason": finish}
    return {"id": "c", "object": "chat.completion.chunk", "choices": [choice]}


def _fragment(index: int, arguments: str, **head: str) -> dict[str, Any]:
    return {"tool_calls": [{"index": index, **head, "function": {"arguments": arguments}}]}


def test_interleaved_tool_call_fragments_are_assembled_by_index() -> None:
    assembled = _StreamedReply()
    chunks = [
        _chunk({"role": "assistant", "content": "Reviso."}),
        _chunk(
            {"tool_calls": [{"index": 0, "id": "a", "function": {"name": "check_availability"}}]}
        ),
        _chunk({"tool_calls": [{"index": 1, "id": "b", "function": {"name": "search_products"}}]}),
        _chunk(_fragment(1, '{"que')),
        _chunk(_fragment(0, '{"date": "2026-')),
        _chunk(_fragment(1, 'ry": "corte"}')),
        _chunk(_fragment(0, '12-01"}')),
    ]
    assert [assembled.add(c) for c in chunks] == [False] * len(chunks)
    assert assembled.add(_chunk({}, "tool_calls")) is True
    assembled.add({"id": "c", "choices": [], "usage": {"prompt_tokens": 9}})

    result = assembled.result()
    assert result.text == "Reviso."
    assert [(c.id, c.name, json.loads(c.arguments)) for c in result.tool_calls] == [
        ("a", "check_availability", {"date": "2026-12-01"}),
        ("b", "search_products", {"query": "corte"}),
    ]
    assert assembled.usage == {"prompt_tokens": 9}


@pytest.mark.parametrize(
    "chunk",
    [
        [],
        {"choices": {"index": 0}},
        {"choices": [{"index": 0, "delta": "hola"}]},
        {"choices": [{"index": 0, "delta": {"tool_calls": [{"index": "abc"}]}}]},
        {"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 10**9}]}}]},
    ],
    ids=[
        "not-an-object",
        "choices-not-a-list",
        "delta-not-an-object",
        "tool-call-index-not-a-number",
        "tool-call-index-huge",
    ],
)
def test_a_chunk_of_the_wrong_shape_is_malformed(chunk: Any) -> None:
    with pytest.raises(_MalformedStream):
        _StreamedReply().add(chunk)


async def test_each_tool_round_is_told_as_a_status_before_the_answer(
    client: Client, llm: ModelScript
) -> None:
    llm.add(
        tool_calls(
            call("check_availability", SLOT),
            call("check_availability", {"date": "2026-12-02", "time": "15:00"}),
            call("search_products", {"query": "limpieza"}),
        ),
        call("check_availability", {"date": "2026-12-03", "time": "15:00"}),
        call("not_a_tool", {}),
        reply("El martes a las 15:00 está libre."),
    )
    events = await stream(client, "¿Martes, miércoles o jueves a las 3pm? ¿y la limpieza?")
    told = "El martes a las 15:00 está libre.\n\nEncontré: Limpieza dental (servicio): S/ 80.00."
    assert events == [
        # Round 1: one status per stage, in the order the calls started.
        ("status", {"stage": "checking_availability"}),
        ("status", {"stage": "searching"}),
        ("status", {"stage": "checking_availability"}),  # round 2
        ("status", {"stage": "working"}),  # round 3: a tool this stream has no name for
        # The price the customer asked for, which the answer left out, goes after it.
        ("delta", {"text": told}),
        ("done", {"reply": told, "url": None}),
    ]


async def test_a_quiet_stream_gets_keep_alive_comments(
    client: Client, llm: ModelScript, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("citas.api.stream.KEEPALIVE_SECONDS", 0.05)
    llm.add(call("check_availability", SLOT), reply("Libre."))
    llm.delay_next(0.3, times=2)  # both model calls slow: the stream is quiet meanwhile
    response = await client.post(STREAM, json=chat_body("¿El martes a las 3pm?"))
    raw = await response.text()
    blocks = [b for b in raw.split("\n\n") if b]
    assert blocks.count(": keep-alive") >= 4
    assert blocks[-1].startswith("event: done")
    assert parse_events(raw) == [
        ("status", {"stage": "checking_availability"}),
        ("delta", {"text": "Libre."}),
        ("done", {"reply": "Libre.", "url": None}),
    ]


async def test_the_status_event_is_documented(client: Client) -> None:
    document = await (await client.get("/openapi.json")).json()
    status = document["components"]["schemas"]["StreamStatus"]
    assert set(status["properties"]["stage"]["enum"]) == {
        "checking_availability",
        "booking",
        "searching",
        "working",
    }
    stream_op = document["paths"][STREAM]["post"]
    assert "keep-alive" in stream_op["description"]
    events = stream_op["responses"]["200"]["content"]["text/event-stream"]["schema"]
    assert {"const": "status"} in [e["properties"]["event"] for e in events["oneOf"]]
