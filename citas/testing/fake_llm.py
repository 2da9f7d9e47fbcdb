"""A fake OpenAI-compatible Chat Completions server for wire-level tests, replay and benchmarks.

citas talks to the model over HTTP (`citas/agent/chat_http.py`), so the LLM is faked as a real
server on 127.0.0.1: the client's serialization, retries and stream parsing are exercised as in
production (and the OpenAI SDK, in tests/test_fake_llm.py, proves it answers like the API). What
it answers comes from a `ModelScript` (`citas/testing/script.py`), which refuses what the real
API refuses; tests of the loop and the tools use the same script in-process (`ScriptedModel`).
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from aiohttp import web

from citas.testing.script import (
    ModelScript,
    Refusal,
    Responder,
    Step,
    ToolCall,
    error_body,
)

__all__ = ["FakeLLM"]

JSON = dict[str, Any]


# --------------------------------------------------------------------------- the wire


def _wire_calls(step: Step) -> list[JSON]:
    return [
        {
            "id": c.id or f"call_{secrets.token_hex(12)}",
            "type": "function",
            "function": {"name": c.name, "arguments": c.arguments},
        }
        for c in step.tool_calls
    ]


@dataclass(frozen=True, slots=True)
class _Meta:
    """What every chunk of one completion repeats."""

    id: str
    created: int
    model: str

    def envelope(self, kind: str) -> JSON:
        return {
            "id": self.id,
            "object": kind,
            "created": self.created,
            "model": self.model,
            "system_fingerprint": "fp_fake",
        }


def _completion(
    meta: _Meta, step: Step, calls: list[JSON], usage: JSON, timings: JSON | None
) -> JSON:
    message: JSON = {"role": "assistant", "content": step.text, "refusal": None}
    if calls:
        message["tool_calls"] = calls
    choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": step.finish_reason}
    completion = {**meta.envelope("chat.completion"), "choices": [choice], "usage": usage}
    return completion if timings is None else {**completion, "timings": timings}


def _pieces(text: str, size: int) -> Iterator[str]:
    for start in range(0, len(text), size):
        yield text[start : start + size]


def _stream_deltas(step: Step, calls: list[JSON], size: int) -> Iterator[JSON]:
    """Deltas as real models emit them: role, text pieces, then tool calls in fragments."""
    yield {"role": "assistant", "content": ""}
    for piece in _pieces(step.text or "", size):
        yield {"content": piece}
    for index, wire in enumerate(calls):
        function = wire["function"]
        head = {"name": function["name"], "arguments": ""}
        yield {
            "tool_calls": [{"index": index, "id": wire["id"], "type": "function", "function": head}]
        }
        # Fragments are longer than text pieces, like real models, but still split mid-token.
        for piece in _pieces(function["arguments"], size * 2):
            yield {"tool_calls": [{"index": index, "function": {"arguments": piece}}]}


def _stream_chunks(
    meta: _Meta,
    step: Step,
    calls: list[JSON],
    usage: JSON | None,
    *,
    size: int,
    timings: JSON | None = None,
) -> Iterator[JSON]:
    base = meta.envelope("chat.completion.chunk")
    extra: JSON = {"usage": None} if usage is not None else {}
    # llama.cpp puts its `timings` on the last chunk: the usage chunk, or the finish chunk.
    last: JSON = {} if timings is None else {"timings": timings}

    def chunk(delta: JSON, finish: str | None, tail: JSON | None = None) -> JSON:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return {**base, "choices": [choice], **extra, **(tail or {})}

    for delta in _stream_deltas(step, calls, size):
        yield chunk(delta, None)
    yield chunk({}, step.finish_reason, None if usage is not None else last)
    if usage is not None:
        yield {**base, "choices": [], "usage": usage, **last}


# --------------------------------------------------------------------------- the server


class FakeLLM:
    """OpenAI-compatible `/v1/chat/completions` on 127.0.0.1 answering from `script` (or from a
    new one made of the arguments before it)."""

    def __init__(
        self,
        steps: Iterable[Step | ToolCall] = (),
        *,
        responder: Responder | None = None,
        record: bool = True,
        script: ModelScript | None = None,
        models: Sequence[str] = ("gpt-4o-mini",),
        api_key: str | None = None,
        chunk_size: int = 4,
    ) -> None:
        self.script = script or ModelScript(steps, responder=responder, record=record)
        self.chunk_delay: float = 0.0
        self._stalls: deque[tuple[int, float]] = deque()
        # Called with each streamed chunk right after it is written (benchmarks time them).
        self.on_chunk_sent: Callable[[JSON], None] | None = None
        self.models = tuple(models)
        self.api_key = api_key
        self.chunk_size = chunk_size
        self._runner: web.AppRunner | None = None
        self._base_url: str | None = None

    # lifecycle ---------------------------------------------------------------

    async def start(self) -> str:
        """Start listening on a free port; returns the base_url (`http://127.0.0.1:PORT/v1`)."""
        if self._base_url is not None:
            return self._base_url
        app = web.Application(client_max_size=32 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_get("/v1/models", self._models)
        # handler_cancellation: a client that times out cancels the handler, so a delayed
        # request does not consume a script step nobody will read.
        self._runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self._base_url = f"http://{host}:{port}/v1"
        return self._base_url

    async def close(self) -> None:
        """Stop the server; idempotent."""
        if self._runner is not None:
            await self._runner.cleanup()
        self._runner = None
        self._base_url = None

    async def __aenter__(self) -> FakeLLM:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def stall_next(self, seconds: float, after_chunks: int = 1, times: int = 1) -> None:
        """Go silent for `seconds` after the first `after_chunks` chunks of the next `times`
        streamed answers, as a model whose server hangs mid-answer (the headers and the first
        chunks have arrived; a read timeout is what notices)."""
        if after_chunks < 1:
            raise ValueError("stall_next stalls after at least one chunk")
        self._stalls.extend((after_chunks, seconds) for _ in range(times))

    @property
    def base_url(self) -> str:
        """The `/v1` URL to give a client (`OPENAI_BASE_URL`); only after start()."""
        if self._base_url is None:
            raise RuntimeError("FakeLLM is not started")
        return self._base_url

    # handlers ----------------------------------------------------------------

    async def _models(self, request: web.Request) -> web.Response:
        data = [
            {"id": m, "object": "model", "created": 0, "owned_by": "citas-fake"}
            for m in self.models
        ]
        return web.json_response({"object": "list", "data": data})

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await self._read_body(request)
            step = await self.script.serve(body)
        except Refusal as refusal:
            return web.json_response(refusal.body, status=refusal.status, headers=refusal.headers)
        return await self._answer(request, body, step)

    async def _read_body(self, request: web.Request) -> JSON:
        if (
            self.api_key is not None
            and request.headers.get("Authorization") != f"Bearer {self.api_key}"
        ):
            body = error_body(
                "Incorrect API key provided.", "invalid_request_error", None, "invalid_api_key"
            )
            raise Refusal(401, body)
        try:
            parsed = await request.json()
        except ValueError:
            parsed = None
        if not isinstance(parsed, dict):
            raise self.script.reject(
                "We could not parse the JSON body of your request.", None, None
            )
        return parsed

    async def _answer(self, request: web.Request, body: JSON, step: Step) -> web.StreamResponse:
        meta = _Meta(f"chatcmpl-{secrets.token_hex(12)}", int(time.time()), body["model"])
        calls = _wire_calls(step)
        usage, timings = self.script.report(body, step)
        if not body.get("stream"):
            return web.json_response(_completion(meta, step, calls, usage, timings))
        options = body.get("stream_options") or {}
        with_usage = usage if options.get("include_usage") else None
        chunks = _stream_chunks(
            meta, step, calls, with_usage, size=self.chunk_size, timings=timings
        )
        return await self._stream(request, chunks)

    async def _stream(self, request: web.Request, chunks: Iterable[JSON]) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        stall_after, stall = self._stalls.popleft() if self._stalls else (0, 0.0)
        for sent, chunk in enumerate(chunks, start=1):
            await response.write(f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n".encode())
            if self.on_chunk_sent is not None:
                self.on_chunk_sent(chunk)
            if self.chunk_delay:
                await asyncio.sleep(self.chunk_delay)
            if sent == stall_after:
                await asyncio.sleep(stall)
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response
