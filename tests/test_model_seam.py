"""The model seam: `FunctionModel` keeps the contract of `ChatModel.complete`, and the in-process
`ScriptedModel` sees (and refuses) exactly what the wire fake would."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest

from citas.agent.function_model import FunctionModel
from citas.agent.model import ModelReply, TextSink, ToolSchema
from citas.agent.openai_model import OpenAIChatModel, create_client, read_usage
from citas.agent.tools import TOOLS
from citas.errors import ContextTooLong, LLMUnavailable
from citas.messages import (
    Message,
    ToolCallRequest,
    assistant_message,
    system_message,
    tool_message,
    user_message,
)
from citas.testing import (
    FakeLLM,
    ModelScript,
    ScriptedModel,
    Step,
    ToolCall,
    call,
    reply,
    tool_calls,
)
from citas.testing.script import JSON, as_step, context_refusal
from citas.tokens import estimate_request_tokens

SCHEMAS = [tool.schema for tool in TOOLS]
HELLO: list[Message] = [system_message("Eres amable."), user_message("Hola")]
LOOKUP = ToolCallRequest("call_1", "search_products", '{"query": "limpieza"}')


async def test_a_function_answer_reaches_on_text_once_and_is_returned() -> None:
    seen: list[tuple[int, int]] = []

    def answer(messages: Sequence[Message], tools: Sequence[ToolSchema]) -> ModelReply:
        seen.append((len(messages), len(tools)))
        return ModelReply("¡Hola!")

    texts: list[str] = []
    model = FunctionModel(answer, name="reglas")
    reply_ = await model.complete(HELLO, SCHEMAS, timeout=1, on_text=texts.append)
    assert reply_ == ModelReply("¡Hola!")
    assert texts == ["¡Hola!"]
    assert seen == [(2, len(TOOLS))]
    assert model.name == "reglas"


async def test_text_that_comes_with_tool_calls_is_not_an_answer() -> None:
    async def preamble(_messages: Sequence[Message], _tools: Sequence[ToolSchema]) -> ModelReply:
        return ModelReply("Voy a revisar…", (LOOKUP,))

    texts: list[str] = []
    answer = await FunctionModel(preamble).complete(HELLO, SCHEMAS, timeout=1, on_text=texts.append)
    assert answer.tool_calls == (LOOKUP,)
    assert texts == []


async def test_a_function_slower_than_the_timeout_is_the_deadline() -> None:
    async def slow(_messages: Sequence[Message], _tools: Sequence[ToolSchema]) -> ModelReply:
        await asyncio.sleep(5)
        return ModelReply("tarde")

    with pytest.raises(LLMUnavailable) as raised:
        await FunctionModel(slow).complete(HELLO, SCHEMAS, timeout=0.05)
    assert raised.value.outcome == "deadline"


@pytest.mark.parametrize(
    ("text", "calls", "expected"),
    [
        (None, (), ""),  # an answer must have content
        ("", (LOOKUP,), None),  # beside tool calls, no empty content
        ("Un momento", (LOOKUP,), "Un momento"),
    ],
)
def test_a_reply_is_one_the_api_accepts_back(
    text: str | None, calls: tuple[ToolCallRequest, ...], expected: str | None
) -> None:
    made = ModelReply.of(text, calls)
    assert made.text == expected
    assert assistant_message(made.text, made.tool_calls)["content"] == expected


async def test_the_scripted_model_refuses_what_the_api_refuses() -> None:
    model = ScriptedModel([reply("no debería llegar")])
    orphan = [*HELLO, tool_message("call_x", "{}")]
    with pytest.raises(LLMUnavailable) as raised:
        await model.complete(orphan, SCHEMAS, timeout=1)
    assert raised.value.outcome == "http_400"
    [refusal] = model.script.rejections
    assert "must be a response to a preceding message with 'tool_calls'" in refusal
    assert model.script.pending == 1  # a refused request consumes no step


@pytest.mark.parametrize(("status", "outcome"), [(429, "rate_limited"), (503, "http_503")])
async def test_a_scripted_fault_is_the_outcome_the_wire_model_reports(
    status: int, outcome: str
) -> None:
    in_process = ScriptedModel()
    in_process.script.fail_next(status)
    with pytest.raises(LLMUnavailable) as local:
        await in_process.complete(HELLO, SCHEMAS, timeout=1)
    async with FakeLLM() as server:
        server.script.fail_next(status)
        client = create_client("k", server.base_url, timeout=5, max_retries=0)
        try:
            with pytest.raises(LLMUnavailable) as remote:
                await OpenAIChatModel(client, "gpt-4o-mini").complete(HELLO, SCHEMAS, timeout=5)
        finally:
            await client.close()
    assert local.value.outcome == remote.value.outcome == outcome


async def test_both_transports_send_the_script_the_same_request_and_read_the_same_reply() -> None:
    steps = [tool_calls(call("search_products", {"query": "limpieza"}, id="c1")), reply("S/ 80")]
    history: list[Message] = [
        *HELLO,
        assistant_message(None, (LOOKUP,)),
        tool_message("call_1", "{}"),
    ]
    in_process = ScriptedModel(steps)
    local = [await in_process.complete(history, SCHEMAS, timeout=1) for _ in steps]
    async with FakeLLM(steps) as server:
        client = create_client("k", server.base_url, timeout=5, max_retries=0)
        try:
            model = OpenAIChatModel(client, "gpt-4o-mini")
            remote = [await model.complete(history, SCHEMAS, timeout=5) for _ in steps]
        finally:
            await client.close()
    wire_only = ("stream", "stream_options")
    sent_over_wire: list[dict[str, Any]] = [
        {k: v for k, v in body.items() if k not in wire_only} for body in server.script.requests
    ]
    assert in_process.script.requests == sent_over_wire
    assert [(r.text, r.tool_calls) for r in local] == [(r.text, r.tool_calls) for r in remote]
    assert all(r.usage is not None and r.usage.prompt_tokens > 0 for r in local + remote)


async def test_a_step_without_call_ids_gets_fresh_ones_each_time() -> None:
    same = call("search_products", {"query": "a"})
    model = ScriptedModel(script=ModelScript([same, same]))
    first = await model.complete(HELLO, SCHEMAS, timeout=1)
    second = await model.complete(HELLO, SCHEMAS, timeout=1)
    assert first.tool_calls[0].id != second.tool_calls[0].id


# --------------------------------------------------------------------------- finish_reason


async def _over_the_wire(
    steps: Sequence[Step], on_text: TextSink | None = None
) -> list[ModelReply]:
    """Each step asked for once through the HTTP model (FakeLLM)."""
    async with FakeLLM(steps) as server:
        client = create_client("k", server.base_url, timeout=5, max_retries=0)
        try:
            model = OpenAIChatModel(client, "gpt-4o-mini")
            return [await model.complete(HELLO, SCHEMAS, timeout=5, on_text=on_text) for _ in steps]
        finally:
            await client.close()


@pytest.mark.parametrize(
    ("step", "expected"),
    [
        (reply("Hola"), "stop"),
        (call("search_products", {"query": "limpieza"}), "tool_calls"),
        (reply("Hola, el martes tenemos libre a las", finish_reason="length"), "length"),
        (tool_calls(call("search_products", '{"query": "limp'), finish_reason="length"), "length"),
    ],
)
async def test_both_transports_report_the_finish_reason(
    step: Step | ToolCall, expected: str
) -> None:
    local = await ScriptedModel([step]).complete(HELLO, SCHEMAS, timeout=1)
    [remote] = await _over_the_wire([as_step(step)])
    assert local.finish_reason == remote.finish_reason == expected
    assert local.text == remote.text


async def test_a_function_model_passes_its_finish_reason_on() -> None:
    def cut(_messages: Sequence[Message], _tools: Sequence[ToolSchema]) -> ModelReply:
        return ModelReply("Hola, te cu", finish_reason="length")

    answer = await FunctionModel(cut).complete(HELLO, SCHEMAS, timeout=1)
    assert answer == ModelReply("Hola, te cu", finish_reason="length")


async def test_a_reply_cut_short_is_not_handed_to_on_text() -> None:
    # A truncated answer is not the answer: the loop decides what the customer gets.
    steps = [reply("Hola, el martes tenemos", finish_reason="length"), reply("Hola.")]
    remote_texts: list[str] = []
    await _over_the_wire(steps, remote_texts.append)
    local_texts: list[str] = []
    model = ScriptedModel(steps)
    for _ in steps:
        await model.complete(HELLO, SCHEMAS, timeout=1, on_text=local_texts.append)
    assert remote_texts == local_texts == ["Hola."]


# --------------------------------------------------------------------------- context too long


async def _wire_failure(script: ModelScript, messages: Sequence[Message] = HELLO) -> LLMUnavailable:
    """What the HTTP model raises when `script` refuses the request."""
    async with FakeLLM(script=script) as server:
        client = create_client("k", server.base_url, timeout=5, max_retries=0)
        try:
            with pytest.raises(LLMUnavailable) as raised:
                await OpenAIChatModel(client, "gpt-4o-mini").complete(messages, SCHEMAS, timeout=5)
        finally:
            await client.close()
    return raised.value


# What servers answer, with HTTP 400, to a request longer than the model's context.
CONTEXT_REFUSALS = {
    "openai": {
        "error": {
            "message": "This model's maximum context length is 128000 tokens. However, your "
            "messages resulted in 130415 tokens. Please reduce the length of the messages.",
            "type": "invalid_request_error",
            "param": "messages",
            "code": "context_length_exceeded",
        }
    },
    "llama.cpp": context_refusal(9000, 8192),
    "llama.cpp, older": {
        "error": {
            "code": 400,
            "message": "the request exceeds the available context size, try increasing it",
            "type": "invalid_request_error",
        }
    },
    "vllm": {
        "error": {
            "message": "This model's maximum context length is 4096 tokens. However, you "
            "requested 5000 tokens (4000 in the messages, 1000 in the completion). Please reduce "
            "the length of the messages or completion.",
            "type": "BadRequestError",
            "param": None,
            "code": 400,
        }
    },
    "vllm, older": {
        "object": "error",
        "message": "This model's maximum context length is 4096 tokens. However, you requested "
        "5000 tokens in the messages, Please reduce the length of the messages.",
        "type": "BadRequestError",
        "param": None,
        "code": 400,
    },
}


@pytest.mark.parametrize("body", CONTEXT_REFUSALS.values(), ids=CONTEXT_REFUSALS.keys())
async def test_a_context_refusal_is_context_too_long_on_both_transports(body: JSON) -> None:
    remote = ModelScript()
    remote.fail_next(400, body=body)
    over_wire = await _wire_failure(remote)
    in_process = ScriptedModel()
    in_process.script.fail_next(400, body=body)
    with pytest.raises(ContextTooLong) as local:
        await in_process.complete(HELLO, SCHEMAS, timeout=1)
    assert isinstance(over_wire, ContextTooLong)
    assert over_wire.outcome == local.value.outcome == "context_length"


async def test_other_400s_keep_their_outcome() -> None:
    template = ModelScript([reply("no")], system_message_first_only=True)
    late_system = [*HELLO, system_message("Fecha: hoy"), user_message("Hola")]
    refused = await _wire_failure(template, late_system)
    template.rejections.clear()
    injected = ModelScript()
    injected.fail_next(400)
    for failure in (refused, await _wire_failure(injected)):
        assert not isinstance(failure, ContextTooLong)
        assert failure.outcome == "http_400"


async def test_a_request_over_the_context_limit_is_refused_like_llama_cpp() -> None:
    estimate = estimate_request_tokens(HELLO, SCHEMAS)
    limit = estimate - 1
    remote = ModelScript([reply("no cabe")], context_limit_tokens=limit)
    over_wire = await _wire_failure(remote)
    assert isinstance(over_wire, ContextTooLong)
    assert "exceeds the available context size" in str(over_wire)
    in_process = ScriptedModel([reply("no cabe")])
    in_process.script.context_limit_tokens = limit
    with pytest.raises(ContextTooLong):
        await in_process.complete(HELLO, SCHEMAS, timeout=1)
    for script in (remote, in_process.script):
        assert script.context_refusals == [estimate]
        assert script.pending == 1 and not script.rejections  # well formed: no step consumed
    # Shorter fits: the same script answers.
    in_process.script.context_limit_tokens = estimate
    assert (await in_process.complete(HELLO, SCHEMAS, timeout=1)).text == "no cabe"


async def test_the_context_limit_counts_the_room_asked_for_the_answer() -> None:
    estimate = estimate_request_tokens(HELLO, SCHEMAS)
    script = ModelScript([reply("cabe")], context_limit_tokens=estimate + 100)
    async with FakeLLM(script=script) as server:
        client = create_client("k", server.base_url, timeout=5, max_retries=0)
        try:
            roomy = OpenAIChatModel(client, "gpt-4o-mini", max_tokens=101)
            with pytest.raises(ContextTooLong):
                await roomy.complete(HELLO, SCHEMAS, timeout=5)
            fits = OpenAIChatModel(client, "gpt-4o-mini", max_tokens=100)
            assert (await fits.complete(HELLO, SCHEMAS, timeout=5)).text == "cabe"
        finally:
            await client.close()
    assert script.context_refusals == [estimate + 101]


# --------------------------------------------------------------------------- usage


async def test_cached_tokens_read_alike_from_openai_usage_and_llama_cpp_timings() -> None:
    system = system_message("Eres Sofía, la recepcionista. " * 50)
    first: list[Message] = [system, user_message("Hola")]
    second: list[Message] = [*first, assistant_message("uno"), user_message("Gracias")]
    cached: dict[str, list[int]] = {}
    for timings in (False, True):
        steps = [reply("uno"), reply("dos")]
        async with FakeLLM(script=ModelScript(steps, timings=timings)) as server:
            client = create_client("k", server.base_url, timeout=5, max_retries=0)
            try:
                model = OpenAIChatModel(client, "gpt-4o-mini")
                replies = [await model.complete(m, SCHEMAS, timeout=5) for m in (first, second)]
            finally:
                await client.close()
        in_process = ScriptedModel(script=ModelScript(steps, timings=timings))
        local = [await in_process.complete(m, SCHEMAS, timeout=1) for m in (first, second)]
        for where, answers in (("wire", replies), ("in-process", local)):
            key = f"{where}, {'timings' if timings else 'usage'}"
            cached[key] = [r.usage.cached_tokens if r.usage else -1 for r in answers]
    [expected] = {tuple(counts) for counts in cached.values()}
    assert expected[0] == 0 and expected[1] > 0, cached


@pytest.mark.parametrize(
    ("usage", "timings", "cached"),
    [
        ({"prompt_tokens": 9, "prompt_tokens_details": {"cached_tokens": 5}}, None, 5),
        ({"prompt_tokens": 9}, {"cache_n": 7, "prompt_n": 2}, 7),
        # Both said: the usage's own field wins (llama.cpp's newer servers send both, alike).
        ({"prompt_tokens_details": {"cached_tokens": 5}}, {"cache_n": 7}, 5),
        ({"prompt_tokens": 9}, {"cache_n": -1}, 0),  # llama.cpp's "unknown"
        ({"prompt_tokens": 9}, None, 0),
    ],
)
def test_read_usage_takes_cache_hits_from_either_place(
    usage: JSON, timings: JSON | None, cached: int
) -> None:
    read = read_usage(usage, timings)
    assert read is not None and read.cached_tokens == cached
    assert read_usage(None, timings) is None
