#!/usr/bin/env python3
"""The bench's floor: the least any agent must do for the bench's turn, as a server of its own.

It reads the request, keeps the history, calls the model through the same SDK in the same way
citas does (streamed, with citas's own system prompt and tool schemas, from PROMPT_FILE), calls
the backend for the one tool, calls the model again and answers. `scripts/bench.py` starts it:

    python scripts/bench_floor.py --port P LLM_URL CALENDAR_URL PROMPT_FILE KEEP
"""

from __future__ import annotations

import argparse
import json
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any


def serve_floor(port: int, llm_url: str, calendar_url: str, prompt_file: str, keep: int) -> None:
    from aiohttp import ClientSession, web
    from openai import AsyncOpenAI, AsyncStream

    llm_key, http_key = web.AppKey("llm", AsyncOpenAI), web.AppKey("http", ClientSession)
    prompt = json.loads(Path(prompt_file).read_text())
    system, tools = {"role": "system", "content": prompt["system"]}, prompt["tools"]
    sessions: dict[tuple[int, str], list[dict[str, Any]]] = {}

    async def complete(llm: AsyncOpenAI, messages: list[dict[str, Any]]) -> dict[str, Any]:
        if prompt["sdk_call"] == "create":  # the SDK's typed call: it walks every message
            done = await llm.chat.completions.create(
                model="gpt-4o-mini",
                messages=messages,
                tools=tools,  # type: ignore[arg-type]
            )
            return done.choices[0].message.model_dump(include={"role", "content", "tool_calls"})
        # Streamed like citas (its loop streams every round): text and tool-call fragments.
        body = {"model": "gpt-4o-mini", "messages": messages, "tools": tools, "stream": True}
        stream = await llm.post(
            "/chat/completions",
            cast_to=object,
            body=body,
            stream=True,
            stream_cls=AsyncStream[object],
        )
        return await assemble(stream)

    async def chat(request: web.Request) -> web.Response:
        body = await request.json()
        config, llm, http = body["context"]["config"], request.app[llm_key], request.app[http_key]
        history = sessions.pop((config["id_empresa"], body["session_id"]), [])
        turn: list[dict[str, Any]] = [{"role": "user", "content": body["message"]}]
        asked = await complete(llm, [system, *history, *turn])
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
        text = (await complete(llm, [system, *history, *turn]))["content"]
        turn.append({"role": "assistant", "content": text})
        sessions[(config["id_empresa"], body["session_id"])] = history + turn
        if len(sessions) > keep:  # bounded like citas's store: the oldest goes
            del sessions[next(iter(sessions))]
        return web.json_response({"reply": text, "url": None})

    async def health(_request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def clients(app: web.Application) -> AsyncIterator[None]:
        app[llm_key] = AsyncOpenAI(api_key="bench", base_url=llm_url, max_retries=2, timeout=30)
        async with ClientSession() as app[http_key]:
            yield
        await app[llm_key].close()

    app = web.Application()
    app.router.add_post("/api/chat", chat)
    app.router.add_get("/health", health)
    app.cleanup_ctx.append(clients)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


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
