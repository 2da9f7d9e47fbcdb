"""The fake LLM server, checked through the real OpenAI SDK (httpx2 transport, retries, parser)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import openai
import pytest

from citas.testing import (
    FakeLLM,
    InvalidRequestError,
    ModelScript,
    Step,
    call,
    reply,
    tool_calls,
    validate_request,
)

USER: list[dict[str, Any]] = [{"role": "user", "content": "Hola"}]
TOOL = {
    "type": "function",
    "function": {
        "name": "check_availability",
        "parameters": {"type": "object", "properties": {"date": {"type": "string"}}},
    },
}


@pytest.fixture
async def fake() -> AsyncIterator[FakeLLM]:
    async with FakeLLM() as server:
        yield server


@pytest.fixture
async def client(fake: FakeLLM) -> AsyncIterator[openai.AsyncOpenAI]:
    sdk = openai.AsyncOpenAI(base_url=fake.base_url, api_key="test", max_retries=0)
    yield sdk
    await sdk.close()


async def create(client: openai.AsyncOpenAI, messages: Any = USER, **kwargs: Any) -> Any:
    return await client.chat.completions.create(model="gpt-4o-mini", messages=messages, **kwargs)


def assistant_calls(*ids: str) -> dict[str, Any]:
    calls = [
        {"id": i, "type": "function", "function": {"name": "check_availability", "arguments": "{}"}}
        for i in ids
    ]
    return {"role": "assistant", "content": None, "tool_calls": calls}


def tool_result(call_id: str) -> dict[str, Any]:
    return {"role": "tool", "tool_call_id": call_id, "content": '{"ok": true}'}


# --------------------------------------------------------------------------- plain answers


async def test_text_reply_is_a_real_chat_completion(
    fake: FakeLLM, client: openai.AsyncOpenAI
) -> None:
    fake.script.add(reply("¡Hola! ¿En qué te ayudo?"))
    completion = await create(client)
    choice = completion.choices[0]
    assert completion.object == "chat.completion"
    assert completion.model == "gpt-4o-mini"
    assert choice.finish_reason == "stop"
    assert choice.message.role == "assistant"
    assert choice.message.content == "¡Hola! ¿En qué te ayudo?"
    assert choice.message.tool_calls is None
    usage = completion.usage
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert usage.prompt_tokens_details.cached_tokens == 0
    assert fake.script.requests == [{"model": "gpt-4o-mini", "messages": USER}]


async def test_tool_calls_are_parsed_by_the_sdk(fake: FakeLLM, client: openai.AsyncOpenAI) -> None:
    fake.script.add(
        tool_calls(
            call("check_availability", {"date": "2026-12-01", "time": "15:00"}, id="call_a"),
            call("search_products", {"query": "limpieza"}),
        )
    )
    choice = (await create(client)).choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    first, second = choice.message.tool_calls
    assert first.id == "call_a"
    assert first.type == "function"
    assert first.function.name == "check_availability"
    assert json.loads(first.function.arguments) == {"date": "2026-12-01", "time": "15:00"}
    assert second.id.startswith("call_")
    assert second.id != first.id
    assert json.loads(second.function.arguments) == {"query": "limpieza"}


async def test_bare_tool_call_is_a_step_and_malformed_arguments_pass_through(
    fake: FakeLLM, client: openai.AsyncOpenAI
) -> None:
    fake.script.add(call("create_booking", '{"date": "2026-12-01", '))
    tool_call = (await create(client)).choices[0].message.tool_calls[0]
    assert tool_call.function.arguments == '{"date": "2026-12-01", '


async def test_generated_call_ids_are_unique_across_requests(
    fake: FakeLLM, client: openai.AsyncOpenAI
) -> None:
    fake.script.add(
        call("search_products", {"query": "a"}), call("search_products", {"query": "a"})
    )
    first = (await create(client)).choices[0].message.tool_calls[0].id
    second = (await create(client)).choices[0].message.tool_calls[0].id
    assert first != second


async def test_text_with_tool_calls(fake: FakeLLM, client: openai.AsyncOpenAI) -> None:
    fake.script.add(tool_calls(call("search_products", {"query": "corte"}), text="Un momento..."))
    message = (await create(client)).choices[0].message
    assert message.content == "Un momento..."
    assert len(message.tool_calls) == 1


async def test_cached_tokens_model_the_shared_prefix(
    fake: FakeLLM, client: openai.AsyncOpenAI
) -> None:
    fake.script.add(reply("uno"), reply("dos"))
    system = {"role": "system", "content": "Eres Sofía. " * 200}
    first = await create(client, [system, *USER])
    second = await create(client, [system, *USER, {"role": "assistant", "content": "uno"}])
    assert first.usage.prompt_tokens_details.cached_tokens == 0
    cached = second.usage.prompt_tokens_details.cached_tokens
    assert first.usage.prompt_tokens - 10 < cached < second.usage.prompt_tokens


async def test_timings_ride_on_the_last_chunk_like_llama_cpp(
    fake: FakeLLM, client: openai.AsyncOpenAI
) -> None:
    fake.script.timings = True
    fake.script.add(reply("hola"), reply("hola"))
    for options in ({"include_usage": True}, None):
        body: dict[str, Any] = {"model": "m", "messages": USER, "stream": True}
        if options:
            body["stream_options"] = options
        stream = await client.post(
            "/chat/completions",
            cast_to=object,
            body=body,
            stream=True,
            stream_cls=openai.AsyncStream[object],
        )
        chunks: list[Any] = [chunk async for chunk in stream]
        *before, last = chunks
        assert set(last["timings"]) >= {"cache_n", "prompt_n", "predicted_n"}
        assert not any("timings" in chunk for chunk in before)
        if options:  # the usage chunk is the last; its cache hits are in timings only
            assert "prompt_tokens_details" not in last["usage"]
        else:
            assert last["choices"][0]["finish_reason"] == "stop"


# --------------------------------------------------------------------------- scripting


async def test_script_is_served_in_order_then_exhausted(client: openai.AsyncOpenAI) -> None:
    async with FakeLLM([reply("uno"), reply("dos")]) as server:
        sdk = openai.AsyncOpenAI(base_url=server.base_url, api_key="test", max_retries=0)
        assert (await create(sdk)).choices[0].message.content == "uno"
        server.script.add(reply("tres"))
        assert (await create(sdk)).choices[0].message.content == "dos"
        assert (await create(sdk)).choices[0].message.content == "tres"
        assert server.script.pending == 0
        with pytest.raises(openai.BadRequestError, match="fake LLM script exhausted"):
            await create(sdk)
        assert server.script.rejections == ["fake LLM script exhausted"]
        await sdk.close()


async def test_responder_computes_steps_and_script_takes_precedence() -> None:
    def echo(body: dict[str, Any]) -> Step:
        return reply(f"eco: {body['messages'][-1]['content']}")

    async with FakeLLM([reply("guion")], responder=echo) as server:
        sdk = openai.AsyncOpenAI(base_url=server.base_url, api_key="test", max_retries=0)
        assert (await create(sdk)).choices[0].message.content == "guion"
        assert (await create(sdk)).choices[0].message.content == "eco: Hola"
        await sdk.close()


async def test_a_failing_responder_is_reported() -> None:
    def broken(body: dict[str, Any]) -> Step:
        raise KeyError("messages")

    async with FakeLLM(responder=broken) as server:
        sdk = openai.AsyncOpenAI(base_url=server.base_url, api_key="test", max_retries=0)
        with pytest.raises(openai.InternalServerError):
            await create(sdk)
        assert server.script.rejections == ["responder failed: KeyError('messages')"]
        await sdk.close()


async def test_recording_can_be_turned_off_for_benchmarks() -> None:
    async with FakeLLM([reply("ok")], record=False) as server:
        sdk = openai.AsyncOpenAI(base_url=server.base_url, api_key="test", max_retries=0)
        await create(sdk)
        assert server.script.requests == []
        await sdk.close()


def test_fail_next_needs_an_error_status() -> None:
    with pytest.raises(ValueError, match="error status"):
        FakeLLM().script.fail_next(200)


def test_tool_calls_needs_a_call() -> None:
    with pytest.raises(ValueError, match="at least one call"):
        tool_calls()


async def test_models_endpoint_and_base_url(fake: FakeLLM, client: openai.AsyncOpenAI) -> None:
    assert fake.base_url.startswith("http://127.0.0.1:")
    assert fake.base_url.endswith("/v1")
    models = await client.models.list()
    assert [m.id for m in models.data] == ["gpt-4o-mini"]


async def test_base_url_before_start_is_an_error() -> None:
    with pytest.raises(RuntimeError):
        _ = FakeLLM().base_url


async def test_api_key_is_checked_when_configured() -> None:
    async with FakeLLM([reply("ok")], api_key="secret") as server:
        wrong = openai.AsyncOpenAI(base_url=server.base_url, api_key="nope", max_retries=0)
        with pytest.raises(openai.AuthenticationError):
            await create(wrong)
        right = openai.AsyncOpenAI(base_url=server.base_url, api_key="secret", max_retries=0)
        assert (await create(right)).choices[0].message.content == "ok"
        await wrong.close()
        await right.close()


async def test_system_message_first_only_refuses_a_late_system_message_like_llama_cpp() -> None:
    system = {"role": "system", "content": "Eres Sofía."}
    clock = {"role": "system", "content": "Hoy es lunes."}
    strict = ModelScript([reply("ok")], system_message_first_only=True)
    async with FakeLLM(script=strict) as server:
        sdk = openai.AsyncOpenAI(base_url=server.base_url, api_key="test", max_retries=0)
        with pytest.raises(openai.BadRequestError) as caught:
            await create(sdk, [system, *USER, clock])
        assert caught.value.body == {
            "code": 400,
            "message": server.script.rejections[0],
            "type": "invalid_request_error",
        }
        assert "System message must be at the beginning." in server.script.rejections[0]
        assert server.script.pending == 1  # a refused request consumes no step
        # One leading system message is what such a template accepts.
        assert (await create(sdk, [system, *USER])).choices[0].message.content == "ok"
        assert len(server.script.rejections) == 1
        await sdk.close()


async def test_a_late_system_message_is_accepted_by_default(
    fake: FakeLLM, client: openai.AsyncOpenAI
) -> None:
    fake.script.add(reply("ok"))
    messages = [{"role": "system", "content": "a"}, *USER, {"role": "system", "content": "b"}]
    assert (await create(client, messages)).choices[0].message.content == "ok"
    assert fake.script.rejections == []


async def test_non_json_body_is_rejected(fake: FakeLLM) -> None:
    async with aiohttp.ClientSession() as http:
        url = f"{fake.base_url}/chat/completions"
        async with http.post(
            url, data=b"{not json", headers={"Content-Type": "application/json"}
        ) as r:
            assert r.status == 400
            body = await r.json()
    assert body["error"]["type"] == "invalid_request_error"
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert len(fake.script.rejections) == 1


# --------------------------------------------------------------------------- streaming


async def test_streamed_text_is_reassembled_with_usage_chunk(
    fake: FakeLLM, client: openai.AsyncOpenAI
) -> None:
    text = "Tenemos disponible mañana a las 15:00."
    fake.script.add(reply(text))
    stream = await create(client, stream=True, stream_options={"include_usage": True})
    chunks = [chunk async for chunk in stream]
    with_choices = [c for c in chunks if c.choices]
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert with_choices[0].choices[0].delta.role == "assistant"
    pieces = [c.choices[0].delta.content for c in with_choices if c.choices[0].delta.content]
    assert "".join(pieces) == text
    assert len(pieces) > 5
    assert max(len(p) for p in pieces) <= 4
    assert with_choices[-1].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens > 0
    assert all(c.usage is None for c in chunks[:-1])


async def test_stream_without_usage_option_has_no_usage_chunk(
    fake: FakeLLM, client: openai.AsyncOpenAI
) -> None:
    fake.script.add(reply("hola"))
    chunks = [chunk async for chunk in await create(client, stream=True)]
    assert all(c.choices for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"


async def test_streamed_tool_calls_arrive_in_fragments(
    fake: FakeLLM, client: openai.AsyncOpenAI
) -> None:
    args_a = {"date": "2026-12-01", "time": "15:00"}
    args_b = {"query": "limpieza dental"}
    fake.script.add(
        tool_calls(
            call("check_availability", args_a, id="call_a"),
            call("search_products", args_b, id="call_b"),
        )
    )
    chunks = [chunk async for chunk in await create(client, stream=True)]
    deltas = [d for c in chunks for d in c.choices[0].delta.tool_calls or ()]
    heads = [d for d in deltas if d.id is not None]
    assert [(h.index, h.id, h.type, h.function.name) for h in heads] == [
        (0, "call_a", "function", "check_availability"),
        (1, "call_b", "function", "search_products"),
    ]
    tails = [d for d in deltas if d.id is None]
    assert all(d.function.name is None for d in tails)
    assert len([d for d in tails if d.index == 0]) > 1
    rebuilt = {0: "", 1: ""}
    for delta in deltas:
        rebuilt[delta.index] += delta.function.arguments or ""
    assert json.loads(rebuilt[0]) == args_a
    assert json.loads(rebuilt[1]) == args_b
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


async def test_sdk_stream_helper_accumulates_the_final_completion(
    fake: FakeLLM, client: openai.AsyncOpenAI
) -> None:
    fake.script.add(tool_calls(call("search_products", {"query": "corte"}), text="Busco..."))
    async with client.chat.completions.stream(
        model="gpt-4o-mini", messages=USER, stream_options={"include_usage": True}
    ) as stream:
        final = await stream.get_final_completion()
    message = final.choices[0].message
    assert message.content == "Busco..."
    assert message.tool_calls[0].function.arguments == '{"query": "corte"}'
    assert final.usage is not None


async def test_chunk_delay_paces_the_stream(fake: FakeLLM, client: openai.AsyncOpenAI) -> None:
    fake.chunk_delay = 0.02
    fake.script.add(reply("abcdefgh"))  # role + 2 pieces + finish = 4 chunks
    started = time.monotonic()
    _ = [chunk async for chunk in await create(client, stream=True)]
    assert time.monotonic() - started >= 0.07


async def test_on_chunk_sent_sees_every_streamed_chunk_in_order(
    fake: FakeLLM, client: openai.AsyncOpenAI
) -> None:
    seen: list[dict[str, Any]] = []
    fake.on_chunk_sent = seen.append
    fake.script.add(reply("abcdefgh"))
    stream = await create(client, stream=True, stream_options={"include_usage": True})
    received = [chunk async for chunk in stream]
    assert len(seen) == len(received)
    texts = [c["choices"][0]["delta"].get("content") for c in seen if c["choices"]]
    assert texts == ["", "abcd", "efgh", None]
    assert seen[-1]["usage"]["completion_tokens"] > 0


# --------------------------------------------------------------------------- validation

REJECTED: list[tuple[str, dict[str, Any]]] = [
    ("missing model", {"messages": USER}),
    ("empty model", {"model": "", "messages": USER}),
    ("missing messages", {"model": "m"}),
    ("empty messages", {"model": "m", "messages": []}),
    ("unknown role", {"model": "m", "messages": [{"role": "robot", "content": "x"}]}),
    ("missing role", {"model": "m", "messages": [{"content": "x"}]}),
    ("user without content", {"model": "m", "messages": [{"role": "user"}]}),
    ("system null content", {"model": "m", "messages": [{"role": "system", "content": None}]}),
    ("content wrong type", {"model": "m", "messages": [{"role": "user", "content": 3}]}),
    (
        "assistant without content or tool_calls",
        {"model": "m", "messages": [*USER, {"role": "assistant"}]},
    ),
    (
        "tool without tool_call_id",
        {
            "model": "m",
            "messages": [*USER, assistant_calls("c1"), {"role": "tool", "content": "x"}],
        },
    ),
    (
        "tool without content",
        {
            "model": "m",
            "messages": [*USER, assistant_calls("c1"), {"role": "tool", "tool_call_id": "c1"}],
        },
    ),
    ("orphan tool message at start", {"model": "m", "messages": [tool_result("c1"), *USER]}),
    (
        "tool message answering an unknown id",
        {"model": "m", "messages": [*USER, assistant_calls("c1"), tool_result("c2")]},
    ),
    (
        "tool message after the group closed",
        {
            "model": "m",
            "messages": [*USER, assistant_calls("c1"), tool_result("c1"), *USER, tool_result("c1")],
        },
    ),
    (
        "tool call answered twice",
        {
            "model": "m",
            "messages": [*USER, assistant_calls("c1"), tool_result("c1"), tool_result("c1")],
        },
    ),
    (
        "unanswered tool calls at the end",
        {"model": "m", "messages": [*USER, assistant_calls("c1", "c2"), tool_result("c1")]},
    ),
    (
        "user message before all tool results",
        {"model": "m", "messages": [*USER, assistant_calls("c1"), *USER, tool_result("c1")]},
    ),
    (
        "duplicate tool_call ids in one message",
        {
            "model": "m",
            "messages": [*USER, assistant_calls("c1", "c1"), tool_result("c1"), tool_result("c1")],
        },
    ),
    (
        "duplicate tool_call ids across messages",
        {
            "model": "m",
            "messages": [
                *USER,
                assistant_calls("c1"),
                tool_result("c1"),
                assistant_calls("c1"),
                tool_result("c1"),
            ],
        },
    ),
    (
        "empty tool_calls array",
        {"model": "m", "messages": [*USER, {"role": "assistant", "tool_calls": []}]},
    ),
    (
        "tool call arguments not a string",
        {
            "model": "m",
            "messages": [
                *USER,
                {
                    "role": "assistant",
                    "tool_calls": [
                        {"id": "c1", "type": "function", "function": {"name": "f", "arguments": {}}}
                    ],
                },
                tool_result("c1"),
            ],
        },
    ),
    ("tools empty", {"model": "m", "messages": USER, "tools": []}),
    (
        "tool of wrong type",
        {"model": "m", "messages": USER, "tools": [{"type": "code", "function": TOOL["function"]}]},
    ),
    ("tool without function", {"model": "m", "messages": USER, "tools": [{"type": "function"}]}),
    (
        "tool without parameters",
        {
            "model": "m",
            "messages": USER,
            "tools": [{"type": "function", "function": {"name": "f"}}],
        },
    ),
    (
        "tool parameters not an object schema",
        {
            "model": "m",
            "messages": USER,
            "tools": [
                {"type": "function", "function": {"name": "f", "parameters": {"type": "string"}}}
            ],
        },
    ),
    (
        "tool name with spaces",
        {
            "model": "m",
            "messages": USER,
            "tools": [
                {"type": "function", "function": {"name": "a b", "parameters": {"type": "object"}}}
            ],
        },
    ),
    ("duplicate tool names", {"model": "m", "messages": USER, "tools": [TOOL, TOOL]}),
    (
        "tool_choice names an unknown tool",
        {
            "model": "m",
            "messages": USER,
            "tools": [TOOL],
            "tool_choice": {"type": "function", "function": {"name": "create_booking"}},
        },
    ),
    (
        "tool_choice unknown mode",
        {"model": "m", "messages": USER, "tools": [TOOL], "tool_choice": "always"},
    ),
    ("tool_choice without tools", {"model": "m", "messages": USER, "tool_choice": "auto"}),
    (
        "stream_options without stream",
        {"model": "m", "messages": USER, "stream_options": {"include_usage": True}},
    ),
    ("max_tokens zero", {"model": "m", "messages": USER, "max_tokens": 0}),
    ("max_tokens not an integer", {"model": "m", "messages": USER, "max_tokens": "100"}),
    ("temperature above 2", {"model": "m", "messages": USER, "temperature": 2.5}),
    ("temperature not a number", {"model": "m", "messages": USER, "temperature": "0.2"}),
]


@pytest.mark.parametrize("body", [b for _, b in REJECTED], ids=[name for name, _ in REJECTED])
async def test_invalid_requests_are_rejected_like_openai(
    fake: FakeLLM, client: openai.AsyncOpenAI, body: dict[str, Any]
) -> None:
    fake.script.add(reply("no debería servirse"))
    # A raw post: the SDK's typed create() refuses some of these bodies before sending them.
    with pytest.raises(openai.BadRequestError) as caught:
        await client.post("/chat/completions", cast_to=object, body=body)
    error = caught.value.body
    assert isinstance(error, dict)
    assert error["type"] == "invalid_request_error"
    assert error["message"] == fake.script.rejections[0]
    assert len(fake.script.rejections) == 1
    assert fake.script.requests == [body]
    assert fake.script.pending == 1  # a rejected request consumes no step


@pytest.mark.parametrize("body", [b for _, b in REJECTED], ids=[name for name, _ in REJECTED])
def test_validate_request_is_usable_without_a_server(body: dict[str, Any]) -> None:
    with pytest.raises(InvalidRequestError):
        validate_request(body)


async def test_orphan_tool_message_through_create(
    fake: FakeLLM, client: openai.AsyncOpenAI
) -> None:
    fake.script.add(reply("no debería servirse"))
    with pytest.raises(openai.BadRequestError, match="must be a response to a preceding"):
        await create(client, [*USER, tool_result("call_x")])


async def test_a_complete_history_is_accepted(fake: FakeLLM, client: openai.AsyncOpenAI) -> None:
    fake.script.add(reply("listo"))
    messages = [
        {"role": "system", "content": "Eres Sofía."},
        *USER,
        assistant_calls("c1", "c2"),
        tool_result("c2"),  # parallel results may come back in any order
        tool_result("c1"),
        {"role": "assistant", "content": "Hay disponibilidad."},
        {"role": "user", "content": [{"type": "text", "text": "Perfecto"}]},
        {**assistant_calls("c3"), "content": "Reviso..."},
        tool_result("c3"),
    ]
    choice = {"type": "function", "function": {"name": "check_availability"}}
    completion = await create(client, messages, tools=[TOOL], tool_choice=choice)
    assert completion.choices[0].message.content == "listo"
    assert fake.script.rejections == []


# --------------------------------------------------------------------------- faults


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (429, openai.RateLimitError),
        (500, openai.InternalServerError),
        (503, openai.InternalServerError),
    ],
)
async def test_fail_next_raises_the_sdk_errors(
    fake: FakeLLM, client: openai.AsyncOpenAI, status: int, error: type[openai.APIStatusError]
) -> None:
    fake.script.add(reply("después"))
    fake.script.fail_next(status)
    with pytest.raises(error) as caught:
        await create(client)
    assert caught.value.status_code == status
    assert isinstance(caught.value.body, dict)
    assert set(caught.value.body) == {"message", "type", "param", "code"}
    assert (await create(client)).choices[0].message.content == "después"


async def test_sdk_retries_once_after_retry_after(fake: FakeLLM) -> None:
    fake.script.add(reply("a la segunda"))
    fake.script.fail_next(429, retry_after=0.2)
    sdk = openai.AsyncOpenAI(base_url=fake.base_url, api_key="test", max_retries=1)
    started = time.monotonic()
    completion = await create(sdk)
    assert completion.choices[0].message.content == "a la segunda"
    assert time.monotonic() - started >= 0.2
    assert len(fake.script.requests) == 2
    await sdk.close()


async def test_faults_outlasting_retries_surface(fake: FakeLLM) -> None:
    fake.script.fail_next(500, times=2, retry_after=0.01)
    sdk = openai.AsyncOpenAI(base_url=fake.base_url, api_key="test", max_retries=1)
    with pytest.raises(openai.InternalServerError):
        await create(sdk)
    assert len(fake.script.requests) == 2
    await sdk.close()


async def test_delay_triggers_client_timeout_without_consuming_the_step(fake: FakeLLM) -> None:
    fake.script.add(reply("tarde"))
    fake.script.delay = 0.4
    sdk = openai.AsyncOpenAI(base_url=fake.base_url, api_key="test", max_retries=0, timeout=0.1)
    with pytest.raises(openai.APITimeoutError):
        await create(sdk)
    fake.script.delay = 0.0
    await asyncio.sleep(0.5)  # past the delay: an uncancelled handler would have taken the step
    assert fake.script.pending == 1
    assert (await create(sdk)).choices[0].message.content == "tarde"
    await sdk.close()


async def test_delay_next_lets_the_sdk_retry_after_a_timeout(fake: FakeLLM) -> None:
    fake.script.add(reply("a tiempo"))
    fake.script.delay_next(0.5)
    sdk = openai.AsyncOpenAI(base_url=fake.base_url, api_key="test", max_retries=1, timeout=0.2)
    assert (await create(sdk)).choices[0].message.content == "a tiempo"
    assert len(fake.script.requests) == 2
    await sdk.close()
