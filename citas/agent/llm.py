"""The Chat Completions wire: message shapes, the streamed call, its chunks put back together,
and its errors → `LLMUnavailable`."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import openai
import structlog
from openai import AsyncOpenAI, AsyncStream

from citas.conversation import Message
from citas.errors import LLMUnavailable
from citas.metrics import LLM_CALLS, LLM_SECONDS, LLM_TOKENS, SWALLOWED_ERRORS

log = structlog.get_logger("citas.llm")

TextSink = Callable[[str], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class ToolCallRequest:
    id: str
    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class ModelReply:
    text: str | None
    tool_calls: tuple[ToolCallRequest, ...] = ()


def system_message(text: str) -> Message:
    return {"role": "system", "content": text}


def user_message(text: str) -> Message:
    return {"role": "user", "content": text}


def assistant_message(reply: ModelReply) -> Message:
    message: Message = {"role": "assistant", "content": reply.text}
    if reply.tool_calls:
        message["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in reply.tool_calls
        ]
    return message


def tool_message(call_id: str, content: str) -> Message:
    return {"role": "tool", "tool_call_id": call_id, "content": content}


def create_client(
    api_key: str | None, base_url: str | None, timeout: float, max_retries: int
) -> AsyncOpenAI:
    """The one retry layer for the LLM is the SDK's own (it honours `Retry-After`)."""
    return AsyncOpenAI(
        api_key=api_key or "unused", base_url=base_url, timeout=timeout, max_retries=max_retries
    )


class ChatModel:
    """Calls the model with the tools, streamed, and returns its text or tool calls.

    `call_timeout` bounds each HTTP attempt (the SDK's `timeout`); `complete(timeout=...)`
    bounds the whole call, the SDK's retries and their `Retry-After` waits included.
    """

    def __init__(self, client: AsyncOpenAI, model: str, call_timeout: float | None = None) -> None:
        self.client = client
        self.model = model
        self.call_timeout = call_timeout

    async def complete(
        self,
        messages: Sequence[Message],
        tools: Sequence[dict[str, Any]],
        *,
        timeout: float,
        on_text: TextSink | None = None,
    ) -> ModelReply:
        """One streamed model call within `timeout` seconds. `on_text` gets the reply's whole text
        once the stream shows it is an answer (it ended without tool calls), before the trailing
        usage chunk; text that comes with tool calls never reaches it."""
        start = time.perf_counter()
        outcome = "ok"
        attempt_timeout = min(timeout, self.call_timeout or timeout)
        reply = _StreamedReply()
        try:
            # One deadline for the whole call: the SDK's `timeout` bounds each attempt, and it
            # would honour a Retry-After of up to two minutes; the turn's deadline wins.
            async with asyncio.timeout(timeout):
                async with await self._stream(messages, tools, attempt_timeout) as stream:
                    async for chunk in stream:
                        # Text is held until the finish_reason: a model may write "Voy a revisar
                        # la agenda..." and then call a tool, and nothing on the wire says which
                        # it will be before the end. Held text never reaches the customer as if
                        # it were the answer; it stays in the history as what the model said.
                        if reply.add(chunk) and on_text is not None and not reply.calls:
                            await on_text(reply.text)
            if reply.finish_reason is None:
                # A body that ends cleanly but early is a truncated answer, not an answer.
                outcome = "incomplete"
                raise LLMUnavailable("incomplete: the stream ended without a finish_reason")
        except (openai.APIError, TimeoutError, _MalformedStream, json.JSONDecodeError) as exc:
            if reply.finish_reason is None:
                # A bare TimeoutError is the turn's deadline (the SDK raises APITimeoutError).
                outcome = "deadline" if type(exc) is TimeoutError else _outcome(exc)
                raise LLMUnavailable(f"{outcome}: {exc!r}") from exc
            # The reply is whole (and may already be on its way to the customer); only the
            # trailing usage chunk was lost, so its tokens go uncounted.
            SWALLOWED_ERRORS.labels(where="llm_stream_tail").inc()
            log.warning("llm_stream_tail_lost", error=repr(exc))
        except asyncio.CancelledError:
            outcome = "cancelled"
            raise
        finally:
            elapsed = time.perf_counter() - start
            LLM_CALLS.labels(outcome=outcome).inc()
            LLM_SECONDS.labels(outcome=outcome).observe(elapsed)
            log.info(
                "llm_call",
                model=self.model,
                outcome=outcome,
                duration_ms=round(elapsed * 1000, 1),
                messages=len(messages),
                tool_calls=len(reply.calls),
                text_chars=len(reply.text),
            )
        _count_tokens(reply.usage)
        return reply.result()

    async def _stream(
        self, messages: Sequence[Message], tools: Sequence[dict[str, Any]], timeout: float
    ) -> AsyncStream[object]:
        # The SDK's generic `post` keeps its auth, retries, timeouts, SSE parsing and error types,
        # but leaves the body and the chunks as the wire's JSON: `chat.completions.create` would
        # re-walk every message of the history through its TypedDicts on each call and build a
        # pydantic object per chunk (about 60 µs of CPU each, one chunk per token).
        body: dict[str, Any] = {
            "model": self.model,
            "messages": list(messages),
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if tools:  # the API refuses an empty `tools` array
            body["tools"] = list(tools)
        return await self.client.post(
            "/chat/completions",
            cast_to=object,
            body=body,
            options={"timeout": timeout},
            stream=True,
            stream_cls=AsyncStream[object],
        )


class _MalformedStream(Exception):
    """A chunk that is not the shape of a `chat.completion.chunk`."""


@dataclass
class _PartialCall:
    id: str = ""
    name: str = ""
    arguments: str = ""


@dataclass
class _StreamedReply:
    """One streamed reply put back together: text pieces, tool calls whose fragments arrive by
    `index` (id and name first, then the arguments in pieces), the finish reason, the usage."""

    pieces: list[str] = field(default_factory=list)
    calls: dict[int, _PartialCall] = field(default_factory=dict)
    finish_reason: str | None = None
    usage: Mapping[str, Any] | None = None

    @property
    def text(self) -> str:
        return "".join(self.pieces)

    def add(self, chunk: object) -> bool:
        """Take one chunk; True when it is the one that ends the reply (its finish_reason)."""
        if not isinstance(chunk, dict):
            raise _MalformedStream(f"chunk is not an object: {chunk!r:.200}")
        if isinstance(chunk.get("usage"), dict):
            self.usage = chunk["usage"]
        for choice in _objects(chunk.get("choices")):
            if choice.get("index", 0) != 0:
                continue
            delta = _object(choice.get("delta"))
            if delta.get("content"):
                self.pieces.append(str(delta["content"]))
            for fragment in _objects(delta.get("tool_calls")):
                call = self.calls.setdefault(int(fragment.get("index", 0)), _PartialCall())
                call.id = call.id or str(fragment.get("id") or "")
                function = _object(fragment.get("function"))
                call.name += str(function.get("name") or "")
                call.arguments += str(function.get("arguments") or "")
            if choice.get("finish_reason") is not None and self.finish_reason is None:
                self.finish_reason = str(choice["finish_reason"])
                return True
        return False

    def result(self) -> ModelReply:
        calls = tuple(
            ToolCallRequest(c.id, c.name, c.arguments)
            for _, c in sorted(self.calls.items(), key=lambda item: item[0])
        )
        # An assistant message needs content unless it carries tool calls.
        text = self.text if self.text or not calls else None
        return ModelReply(text, calls)


def _object(value: object) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _MalformedStream(f"expected an object: {value!r:.200}")
    return value


def _objects(value: object) -> list[dict[str, Any]]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise _MalformedStream(f"expected a list of objects: {value!r:.200}")
    return value


def _outcome(exc: Exception) -> str:
    if isinstance(exc, openai.APITimeoutError | TimeoutError):
        return "timeout"
    if isinstance(exc, openai.APIConnectionError):
        return "connection_error"
    if isinstance(exc, openai.RateLimitError):
        return "rate_limited"
    if isinstance(exc, openai.APIStatusError):
        return f"http_{exc.status_code}"
    if isinstance(exc, _MalformedStream | json.JSONDecodeError):
        return "malformed"
    return "error"


def _count_tokens(usage: Mapping[str, Any] | None) -> None:
    if usage is None:
        return
    LLM_TOKENS.labels(kind="prompt").inc(usage.get("prompt_tokens") or 0)
    LLM_TOKENS.labels(kind="completion").inc(usage.get("completion_tokens") or 0)
    details = usage.get("prompt_tokens_details") or {}
    LLM_TOKENS.labels(kind="cached").inc(details.get("cached_tokens") or 0)
