#!/usr/bin/env python3
"""CPU per streamed Chat Completions call, by HTTP client, in one process and one run.

    python scripts/bench_wire.py [--calls 400] [--rounds 2]

Each client makes the same streamed call (a 6,000-character system prompt, four user messages,
six tool schemas; a 68-character answer in 17 chunks) against the in-process fake LLM, so every
figure includes the fake server's share, the same for all:

- `sdk-httpx2`: the OpenAI SDK's generic `post` on its default transport (httpx2);
- `sdk-aiohttp`: the same through `openai.DefaultAioHttpClient` (the SDK's aiohttp transport);
- `raw`: plain aiohttp and the json module, the least a client can do;
- `citas`: `OpenAIChatModel.complete` (citas's own client, `citas/agent/chat_http.py`), which
  also puts the reply back together and keeps each message's serialized bytes.

The SDK rows need the `openai` package (the `test` extra): citas itself does not use it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout

ANSWER = "Ese horario está libre. ¿Te lo reservo? Dime tu nombre y tu correo."
MESSAGES: list[Any] = [
    {"role": "system", "content": "x" * 6000},
    *({"role": "user", "content": "hola " * 20} for _ in range(4)),
]
TOOLS: list[Any] = [
    {
        "type": "function",
        "function": {
            "name": f"tool_{n}",
            "description": "d" * 300,
            "parameters": {"type": "object", "properties": {}},
        },
    }
    for n in range(6)
]
BODY = {"model": "m", "messages": MESSAGES, "tools": TOOLS, "stream": True}
BODY["stream_options"] = {"include_usage": True}

Call = Callable[[], Awaitable[None]]


async def measure(call: Call, calls: int) -> float:
    """CPU milliseconds per call, after one warm-up call."""
    await call()
    start = time.process_time()
    for _ in range(calls):
        await call()
    return 1000 * (time.process_time() - start) / calls


async def sdk_client(url: str, transport: str) -> tuple[Call, Callable[[], Awaitable[None]]]:
    import openai
    from openai import AsyncOpenAI, AsyncStream

    http = openai.DefaultAioHttpClient() if transport == "aiohttp" else None
    client = AsyncOpenAI(api_key="bench", base_url=url, http_client=http)

    async def call() -> None:
        stream = await client.post(
            "/chat/completions",
            cast_to=object,
            body=BODY,
            stream=True,
            stream_cls=AsyncStream[object],
        )
        async with stream:
            async for _chunk in stream:
                pass

    return call, client.close


async def raw_client(url: str) -> tuple[Call, Callable[[], Awaitable[None]]]:
    import aiohttp

    http = aiohttp.ClientSession()
    headers = {"Content-Type": "application/json", "Authorization": "Bearer bench"}

    async def call() -> None:
        data = json.dumps(BODY).encode()
        async with http.post(f"{url}/chat/completions", data=data, headers=headers) as answer:
            async for line in answer.content:
                if line.startswith(b"data: ") and line[6:].strip() != b"[DONE]":
                    json.loads(line[6:])

    return call, http.close


async def citas_client(url: str) -> tuple[Call, Callable[[], Awaitable[None]]]:
    from citas.agent.openai_model import OpenAIChatModel, create_client

    client = create_client("bench", url, timeout=30, max_retries=2)
    model = OpenAIChatModel(client, "m", call_timeout=30)

    async def call() -> None:
        await model.complete(MESSAGES, TOOLS, timeout=30)

    return call, client.close


async def main(calls: int, rounds: int) -> None:
    from citas.testing import FakeLLM, reply

    makers = {
        "sdk-httpx2": lambda url: sdk_client(url, "httpx2"),
        "sdk-aiohttp": lambda url: sdk_client(url, "aiohttp"),
        "raw": raw_client,
        "citas": citas_client,
    }
    found: dict[str, list[float]] = {name: [] for name in makers}
    async with FakeLLM(responder=lambda _body: reply(ANSWER), record=False) as llm:
        for _ in range(rounds):  # alternating, so other load weighs on every client
            for name, make in makers.items():
                call, close = await make(llm.base_url)
                try:
                    found[name].append(await measure(call, calls))
                finally:
                    await close()
    raw = min(found["raw"])
    print(f"CPU ms per streamed call ({calls} calls, best of {rounds}; fake LLM included)")
    for name, figures in found.items():
        print(f"  {name:<12} {min(figures):6.3f}   {min(figures) / raw:4.2f}× raw")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    asyncio.run(main(args.calls, args.rounds))
