"""The Chat Completions request citas sends through the SDK's low-level `post`."""

from __future__ import annotations

import pytest
from openai._utils import async_maybe_transform
from openai.types.chat import completion_create_params

from citas.agent.openai_model import OpenAIChatModel, create_client
from citas.agent.tools import TOOLS
from citas.config import Settings
from citas.messages import system_message, user_message
from citas.testing import FakeLLM, ModelScript, call, reply
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
