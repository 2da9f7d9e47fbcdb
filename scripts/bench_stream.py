"""Latency of `POST /api/chat/stream`: from the model's first text chunk to the client's first
`delta` event.

Everything runs in this process on 127.0.0.1: the fake LLM (streaming real chunks), the sandbox
backend, citas, and an HTTP client reading the event stream. Each turn is one tool round
(`check_availability`, its arguments in fragments) and an answer streamed in small pieces.

    python scripts/bench_stream.py [--turns 300] [--warmup 30] [--chunk-delay 0] [--json]

Two figures per turn: from the first text chunk leaving the fake server, and from the finish
chunk leaving it, to the client having read the first `delta` event. citas holds an answer's text
until the model finishes it (text before tool calls must not be sent), so with `--chunk-delay`
the first figure grows by the answer's generation time and the second stays our own overhead.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import statistics
import sys
import time
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
from aiohttp import web

from citas.app import create_app
from citas.clock import frozen_clock
from citas.config import Settings
from citas.logs import configure_logging
from citas.sandbox import SandboxBackend, SandboxSeed, start_sandbox
from citas.testing import FakeLLM, Step, ToolCall, call, reply

NOW = datetime(2026, 11, 30, 10, 0, tzinfo=ZoneInfo("America/Lima"))
ANSWER = (
    "El martes 1 de diciembre a las 15:00 está disponible. Para reservarla, ¿me das tu nombre "
    "completo y tu correo electrónico?"
)


def responder(body: dict[str, Any]) -> Step | ToolCall:
    """A tool round for a customer's message, then the answer once the tool has answered."""
    if body["messages"][-1]["role"] == "user":
        return call("check_availability", {"date": "2026-12-01", "time": "15:00"})
    return reply(ANSWER)


class ChunkClock:
    """When the fake LLM sent the current turn's first text chunk and its finish chunk."""

    def __init__(self) -> None:
        self.first_text: float | None = None
        self.finish: float | None = None

    def reset(self) -> None:
        self.first_text = self.finish = None

    def __call__(self, chunk: dict[str, Any]) -> None:
        now = time.perf_counter()
        for choice in chunk["choices"]:
            if choice["delta"].get("content") and self.first_text is None:
                self.first_text = now
            if choice["finish_reason"] == "stop" and self.finish is None:
                self.finish = now


async def one_turn(
    http: aiohttp.ClientSession, url: str, session_id: str, clock: ChunkClock
) -> tuple[float, float, float]:
    """(first text chunk → first delta, finish chunk → first delta, whole turn), in seconds."""
    clock.reset()
    body = {
        "message": "¿Tienen el martes a las 3pm?",
        "session_id": session_id,
        "context": {"config": {"id_empresa": 12, "usuario_id": 7, "duracion_cita_minutos": 30}},
    }
    started = time.perf_counter()
    first_delta: float | None = None
    text = ""
    done: dict[str, Any] | None = None
    async with http.post(url, json=body) as response:
        if response.status != 200:
            raise RuntimeError(f"HTTP {response.status}: {await response.text()}")
        event = ""
        async for raw in response.content:
            line = raw.decode().rstrip("\n")
            if line.startswith("event: "):
                event = line.removeprefix("event: ")
            elif line.startswith("data: "):
                data = json.loads(line.removeprefix("data: "))
                if event == "delta":
                    first_delta = first_delta or time.perf_counter()
                    text += data["text"]
                elif event == "done":
                    done = data
                elif event == "status":
                    continue  # the tool round starting: not text
                else:
                    raise RuntimeError(f"unexpected event {event}: {data}")
    ended = time.perf_counter()
    if first_delta is None or done is None or text != done["reply"] or text != ANSWER:
        raise RuntimeError(f"unexpected stream: {text!r} / {done!r}")
    if clock.first_text is None or clock.finish is None:
        raise RuntimeError("the fake LLM sent no text")
    return first_delta - clock.first_text, first_delta - clock.finish, ended - started


def summary(values: list[float]) -> dict[str, float]:
    ms = sorted(v * 1000 for v in values)
    quantiles = statistics.quantiles(ms, n=100)
    return {
        "median_ms": round(statistics.median(ms), 3),
        "p90_ms": round(quantiles[89], 3),
        "p99_ms": round(quantiles[98], 3),
        "min_ms": round(ms[0], 3),
        "max_ms": round(ms[-1], 3),
    }


async def run(turns: int, warmup: int, chunk_delay: float) -> dict[str, Any]:
    clock = ChunkClock()
    async with FakeLLM(responder=responder, record=False) as llm:
        llm.chunk_delay = chunk_delay
        llm.on_chunk_sent = clock
        sandbox = await start_sandbox(SandboxBackend(SandboxSeed.load(), clock=frozen_clock(NOW)))
        settings = Settings.from_env(
            {},
            OPENAI_API_KEY="bench",
            OPENAI_BASE_URL=llm.base_url,
            CITAS_CALENDAR_API_URL=sandbox.calendar_url,
            CITAS_INFO_API_URL=sandbox.info_url,
            CITAS_LLM_MAX_RETRIES=0,
        )
        runner = web.AppRunner(create_app(settings, clock=frozen_clock(NOW)), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        url = f"http://{host}:{port}/api/chat/stream"
        try:
            async with aiohttp.ClientSession() as http:
                for i in range(warmup):
                    await one_turn(http, url, f"warmup-{i}", clock)
                samples = [await one_turn(http, url, f"bench-{i}", clock) for i in range(turns)]
        finally:
            await runner.cleanup()
            await sandbox.close()
    from_text, from_finish, whole = zip(*samples, strict=True)
    return {
        "turns": turns,
        "chunk_delay_s": chunk_delay,
        "answer_chars": len(ANSWER),
        "first_text_chunk_to_first_delta": summary(list(from_text)),
        "finish_chunk_to_first_delta": summary(list(from_finish)),
        "whole_turn": summary(list(whole)),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--turns", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--chunk-delay", type=float, default=0.0, help="seconds between chunks")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    configure_logging("json", level=logging.WARNING)
    result = asyncio.run(run(args.turns, args.warmup, args.chunk_delay))
    if args.json:
        print(json.dumps(result))
        return 0
    print(
        f"{result['turns']} turns, answer of {result['answer_chars']} chars in 4-char chunks, "
        f"{args.chunk_delay * 1000:g} ms between chunks"
    )
    for name in ("first_text_chunk_to_first_delta", "finish_chunk_to_first_delta", "whole_turn"):
        figures = result[name]
        print(
            f"{name:34} median {figures['median_ms']:8.3f} ms  p90 {figures['p90_ms']:8.3f}  "
            f"p99 {figures['p99_ms']:8.3f}  max {figures['max_ms']:8.3f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
