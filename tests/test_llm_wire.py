"""The Chat Completions request citas sends (checked against the SDK's own types) and its time
limits."""

from __future__ import annotations

import time

import pytest
from openai._utils import async_maybe_transform
from openai.types.chat import completion_create_params

from citas.agent.openai_model import OpenAIChatModel, create_client
from citas.agent.tools import TOOLS
from citas.config import Settings
from citas.errors import LLMUnavailable
from citas.messages import system_message, user_message
from citas.testing import FakeLLM, ModelScript, call, reply
from citas.testing.harness import MetricsDelta
from tests.conftest import ChatFn, MakeClient, chat_body

pytestmark = pytest.mark.wire


async def test_sdk_param_transform_would_change_nothing(chat: ChatFn, llm: ModelScript) -> None:
    # citas skips `chat.completions.create` and its typed-param walk; that is only lossless while
    # the walk leaves every body citas sends (all message kinds, the tools) exactly as it is.
    llm.add(
        call("check_availability", {"date": "2026-12-01", "time": "15:00"}),
        call("search_products", '{"query": "limpieza"'),  # malformed: an error result
        reply("Está libre. ¿Tu nombre?"),
    )
    await chat("¿Tienen libre el martes a las 3pm? ¿Y cuánto cuesta una limpieza?")
    llm.add(reply("Perfecto."))
    await chat("Gracias")
    last = llm.requests[-1]
    roles = [m["role"] for m in last["messages"]]
    assert {"system", "user", "assistant", "tool"} <= set(roles)
    assert any(m.get("tool_calls") for m in last["messages"])
    for body in llm.requests:
        params = completion_create_params.CompletionCreateParamsStreaming
        assert await async_maybe_transform(body, params) == body


async def test_request_carries_the_api_key_model_and_tools() -> None:
    async with FakeLLM([reply("Hola")], api_key="sk-bench") as fake:
        client = create_client("sk-bench", fake.base_url, timeout=5, max_retries=0)
        try:
            model = OpenAIChatModel(client, "gpt-4o-mini")
            schemas = [tool.schema for tool in TOOLS]
            answer = await model.complete(
                [system_message("Eres amable."), user_message("Hola")], schemas, timeout=5
            )
        finally:
            await client.close()
    assert answer.text == "Hola"
    assert not fake.script.rejections  # a missing bearer token would have been a 401
    [body] = fake.script.requests
    assert body == {
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "Eres amable."},
            {"role": "user", "content": "Hola"},
        ],
        "tools": schemas,
        "stream": True,
        "stream_options": {"include_usage": True},
    }


async def test_max_tokens_and_temperature_are_sent_only_when_set(
    make_client: MakeClient, settings: Settings, llm: ModelScript
) -> None:
    llm.add(reply("Hola"), reply("Hola otra vez"))
    plain = await make_client(settings)
    await plain.post("/api/chat", json=chat_body("Hola", session_id="plain"))
    tuned = await make_client(settings.with_updates(llm_max_tokens=256, llm_temperature=0.2))
    await tuned.post("/api/chat", json=chat_body("Hola", session_id="tuned"))
    default, chosen = llm.requests
    assert "max_tokens" not in default and "temperature" not in default
    assert (chosen["max_tokens"], chosen["temperature"]) == (256, 0.2)


# --------------------------------------------------------------------------- time limits

LONG_ANSWER = "Tenemos libre el martes a las 10:00, a las 11:00 y a las 15:00. " * 6  # 100+ chunks


async def _timed_failure(
    fake: FakeLLM, *, timeout: float, **limits: float
) -> tuple[LLMUnavailable, float]:
    """Ask `fake` once through the HTTP model with these limits; the failure and its seconds."""
    client = create_client("k", fake.base_url, timeout=60, max_retries=0)
    model = OpenAIChatModel(client, "gpt-4o-mini", **limits)
    started = time.monotonic()
    try:
        with pytest.raises(LLMUnavailable) as raised:
            await model.complete([user_message("Hola")], [], timeout=timeout)
    finally:
        await client.close()
    return raised.value, time.monotonic() - started


async def test_a_stream_that_keeps_coming_ends_at_the_call_timeout() -> None:
    # Every chunk within any read timeout, the whole answer far past the call's limit.
    async with FakeLLM([reply(LONG_ANSWER)]) as fake:
        fake.chunk_delay = 0.05  # about 6 s for the whole answer
        failure, seconds = await _timed_failure(fake, timeout=30, call_timeout=0.5)
    assert failure.outcome == "timeout"
    assert seconds < 3  # about 0.5 s; generous for a loaded machine


async def test_a_stream_that_goes_silent_ends_at_the_read_timeout() -> None:
    async with FakeLLM([reply(LONG_ANSWER)]) as fake:
        fake.stall_next(30, after_chunks=3)  # the answer has begun, then nothing
        failure, seconds = await _timed_failure(fake, timeout=30, call_timeout=20, read_timeout=0.3)
    assert failure.outcome == "timeout"
    assert seconds < 5  # about 0.3 s; far below the call's 20 s


async def test_the_turn_deadline_is_still_the_shorter_bound() -> None:
    async with FakeLLM([reply(LONG_ANSWER)]) as fake:
        fake.chunk_delay = 0.05
        failure, seconds = await _timed_failure(fake, timeout=0.5, call_timeout=20)
    assert failure.outcome == "deadline"
    assert seconds < 3


async def test_the_llm_timeout_setting_bounds_a_slow_stream_in_a_turn(
    make_client: MakeClient, settings: Settings, llm: ModelScript, fake_llm: FakeLLM
) -> None:
    client = await make_client(settings.with_updates(llm_timeout_seconds=0.5))
    fake_llm.chunk_delay = 0.05
    llm.add(reply(LONG_ANSWER))
    delta = MetricsDelta()
    started = time.monotonic()
    response = await client.post("/api/chat", json=chat_body("Hola"))
    assert (await response.json())["error"]["code"] == "llm_unavailable"
    assert time.monotonic() - started < 4
    assert delta.of("citas_llm_calls_total", outcome="timeout") == 1


async def test_the_read_timeout_setting_ends_a_stalled_stream_in_a_turn(
    make_client: MakeClient, settings: Settings, llm: ModelScript, fake_llm: FakeLLM
) -> None:
    limits = {"llm_timeout_seconds": 20, "llm_read_timeout_seconds": 0.3}
    client = await make_client(settings.with_updates(**limits))
    fake_llm.stall_next(30, after_chunks=2)
    llm.add(reply(LONG_ANSWER))
    delta = MetricsDelta()
    started = time.monotonic()
    response = await client.post("/api/chat", json=chat_body("Hola"))
    assert (await response.json())["error"]["code"] == "llm_unavailable"
    assert time.monotonic() - started < 6
    assert delta.of("citas_llm_calls_total", outcome="timeout") == 1


async def test_cache_hits_a_llama_cpp_server_reports_in_timings_are_counted(
    chat: ChatFn, llm: ModelScript
) -> None:
    llm.timings = True  # cache_n in the last chunk's `timings`, nothing in `usage`'s details
    llm.add(call("check_availability", {"date": "2026-12-01", "time": "15:00"}), reply("Libre"))
    delta = MetricsDelta()
    await chat("¿El martes a las 3?")
    # The second call repeats the first one's prompt: the fake reports it as cached.
    assert delta.of("citas_llm_tokens_total", kind="cached") > 0
