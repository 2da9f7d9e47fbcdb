#!/usr/bin/env python3
"""The bench's floors: the least any agent must do for the bench's turn, each a server of its own.

Every floor reads the request, keeps the history, calls the model (streamed, with citas's own
system prompt and tool schemas, from PROMPT_FILE), calls the backend for the one tool, calls
the model again and answers. How it calls the model is PROMPT_FILE's `client`:

- `raw`: plain aiohttp and the standard json module: the body serialized with `json.dumps`, the
  SSE stream read line by line. No SDK: the floor that `scripts/bench.py`'s targets compare to.
- `sdk`: the OpenAI SDK's generic streamed `post` (its httpx2 stack, its SSE parser).
- `create`: the SDK's typed `chat.completions.create`, which walks every message (not streamed).

`scripts/bench.py` starts them:

    python scripts/bench_floor.py --port P LLM_URL CALENDAR_URL PROMPT_FILE KEEP
"""

from __future__ import annotations

import argparse
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

Complete = Callable[[list[dict[str, Any]]], Awaitable[dict[str, Any]]]


def serve_floor(port: int, llm_url: str, calendar_url: str, prompt_file: str, keep: int) -> None:
    from aiohttp import ClientSession, TCPConnector, web

    http_key = web.AppKey("http", ClientSession)
    complete_key = web.AppKey("complete", object)
    prompt = json.loads(Path(prompt_file).read_text())
    system, tools = {"role": "system", "content": prompt["system"]}, prompt["tools"]
    sessions: dict[tuple[int, str], list[dict[str, Any]]] = {}

    async def chat(request: web.Request) -> web.Response:
        body = await request.json()
        config, http = body["context"]["config"], request.app[http_key]
        complete: Complete = request.app[complete_key]  # type: ignore[assignment]
        history = sessions.pop((config["id_empresa"], body["session_id"]), [])
        turn: list[dict[str, Any]] = [{"role": "user", "content": body["message"]}]
        asked = await complete([system, *history, *turn])
        turn.append(asked)
        for call in asked.get("tool_calls") or ():
            args = json.loads(call["function"]["arguments"])
            start = datetime.fromisoformat(f"{args['date']}T{args['time']}")
            end = start + timedelta(minutes=config["duracion_cita_minutos"])
            payload = {"codOpe": "CONSULTAR_DISPONIBILIDAD", "id_empresa": config["id_empresa"]}
            payload |= {"usuario_id": config["usuario_id"], "fecha_inicio": f"{start:%F %T}"}
            async with http.post(calendar_url, json={**payload, "fecha_fin": f"{end:%F %T}"}) as r:
                free = (await r.json())["disponible"]
            result = json.dumps({"ok": True, "disponible": free})
            turn.append({"role": "tool", "tool_call_id": call["id"], "content": result})
        if len(turn) > 2:  # tool results: the model answers them
            turn.append(await complete([system, *history, *turn]))
        text = turn[-1]["content"]
        sessions[(config["id_empresa"], body["session_id"])] = history + turn
        if len(sessions) > keep:  # bounded like citas's store: the oldest goes
            del sessions[next(iter(sessions))]
        return web.json_response({"reply": text, "url": None})

    async def health(_request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def clients(app: web.Application) -> AsyncIterator[None]:
        async with ClientSession(connector=TCPConnector(limit=0)) as app[http_key]:
            if prompt["client"] == "raw":
                app[complete_key] = raw_client(app[http_key], llm_url, tools)
                yield
                return
            from openai import AsyncOpenAI

            llm = AsyncOpenAI(api_key="bench", base_url=llm_url, max_retries=2, timeout=30)
            app[complete_key] = sdk_client(llm, tools, typed=prompt["client"] == "create")
            yield
            await llm.close()

    app = web.Application()
    app.router.add_post("/api/chat", chat)
    app.router.add_get("/health", health)
    app.cleanup_ctx.append(clients)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


def raw_client(http: Any, llm_url: str, tools: list[dict[str, Any]]) -> Complete:
    """Chat Completions over plain aiohttp: one POST, the SSE stream read line by line."""
    url = llm_url.rstrip("/") + "/chat/completions"
    headers = {"Authorization": "Bearer bench", "Content-Type": "application/json"}

    async def complete(messages: list[dict[str, Any]]) -> dict[str, Any]:
        body = {"model": "gpt-4o-mini", "messages": messages, "tools": tools, "stream": True}
        async with http.post(url, data=json.dumps(body), headers=headers) as answer:
            answer.raise_for_status()
            return await assemble(chunks(answer.content))

    return complete


async def chunks(lines: AsyncIterator[bytes]) -> AsyncIterator[dict[str, Any]]:
    async for line in lines:
        if line.startswith(b"data: "):
            data = line[6:].strip()
            if data == b"[DONE]":
                return
            yield json.loads(data)


def sdk_client(llm: Any, tools: list[dict[str, Any]], *, typed: bool) -> Complete:
    from openai import AsyncStream

    async def complete(messages: list[dict[str, Any]]) -> dict[str, Any]:
        if typed:  # the SDK's typed call: it walks every message
            done = await llm.chat.completions.create(
                model="gpt-4o-mini", messages=messages, tools=tools
            )
            return done.choices[0].message.model_dump(include={"role", "content", "tool_calls"})  # type: ignore[no-any-return]
        body = {"model": "gpt-4o-mini", "messages": messages, "tools": tools, "stream": True}
        stream = await llm.post(
            "/chat/completions",
            cast_to=object,
            body=body,
            stream=True,
            stream_cls=AsyncStream[object],
        )
        return await assemble(stream)

    return complete


async def assemble(stream: AsyncIterator[Any]) -> dict[str, Any]:
    """The floor's reading of a streamed reply: text, and tool-call fragments joined by index."""
    text, calls = "", {}  # type: ignore[var-annotated]
    async for chunk in stream:
        for choice in chunk["choices"]:
            text += choice["delta"].get("content") or ""
            for part in choice["delta"].get("tool_calls") or ():
                old = calls.get(
                    part["index"], {"id": None, "function": {"name": "", "arguments": ""}}
                )
                fn = part.get("function") or {}
                calls[part["index"]] = {
                    "id": part.get("id") or old["id"],
                    "type": "function",
                    "function": {
                        "name": old["function"]["name"] + (fn.get("name") or ""),
                        "arguments": old["function"]["arguments"] + (fn.get("arguments") or ""),
                    },
                }
    message = {"role": "assistant", "content": text or None}
    return message | ({"tool_calls": list(calls.values())} if calls else {})


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("llm_url")
    parser.add_argument("calendar_url")
    parser.add_argument("prompt_file")
    parser.add_argument("keep", type=int, help="conversations kept (the oldest goes first)")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    serve_floor(args.port, args.llm_url, args.calendar_url, args.prompt_file, args.keep)


if __name__ == "__main__":
    main()
