"""`OpenAIChatModel`: the Chat Completions wire. The streamed call through `ChatHTTPClient`
(aiohttp), its chunks put back together, and its errors → `LLMUnavailable`."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog

from citas.agent.chat_http import (
    MAX_CONNECTIONS,
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    ChatHTTPClient,
    ChatHTTPError,
    MalformedStream,
    encode_request,
)
from citas.agent.model import CUT_SHORT, ModelReply, TextSink, ToolSchema, Usage
from citas.agent.request_body import RequestEncoder
from citas.errors import ContextTooLong, LLMUnavailable
from citas.messages import Message, ToolCallRequest
from citas.metrics import SWALLOWED_ERRORS

log = structlog.get_logger("citas.llm")

# The name the stream's tests know a chunk of the wrong shape by.
_MalformedStream = MalformedStream


def create_client(
    api_key: str | None,
    base_url: str | None,
    timeout: float,
    max_retries: int,
    *,
    max_connections: int = MAX_CONNECTIONS,
) -> ChatHTTPClient:
    """The one retry layer for the LLM (it honours `Retry-After`: see `ChatHTTPClient`).
    `timeout` bounds connecting; each call's own limits bound the rest."""
    return ChatHTTPClient(
        api_key,
        base_url,
        max_retries=max_retries,
        connect_timeout=timeout,
        max_connections=max_connections,
    )


class OpenAIChatModel:
    """Calls the model with the tools, streamed, and returns its text or tool calls.

    Time limits, all of the call's own:
    - `call_timeout` (`CITAS_LLM_TIMEOUT_SECONDS`) bounds the whole call: the request, the
      client's retries and their `Retry-After` waits, and every chunk of the stream. Past it the
      call fails with outcome `timeout`. `complete(timeout=...)` (the turn's remaining time)
      bounds it too; when that is the shorter and runs out, the outcome is `deadline`.
    - `read_timeout` (`CITAS_LLM_READ_TIMEOUT_SECONDS`; unset: the whole call's limit) is the
      longest silence the HTTP client waits through: for the answer's first byte (a local
      model reading a long prompt is silent until then) and between two chunks. A stream that
      stalls longer fails with outcome `timeout` (`APITimeoutError`, also mid-stream).
    """

    def __init__(
        self,
        client: ChatHTTPClient,
        name: str,
        call_timeout: float | None = None,
        *,
        read_timeout: float | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
    ) -> None:
        self.client = client
        self.name = name
        self.call_timeout = call_timeout
        self.read_timeout = read_timeout
        self.max_tokens = max_tokens
        self.temperature = temperature
        # One per model: the history's messages are serialized once, not on every call.
        self.encoder = RequestEncoder()

    async def complete(
        self,
        messages: Sequence[Message],
        tools: Sequence[ToolSchema],
        *,
        timeout: float,
        on_text: TextSink | None = None,
    ) -> ModelReply:
        """See `ChatModel.complete`. `on_text` is called as soon as the chunk with the
        finish_reason arrives, before the trailing usage chunk."""
        own_limit = math.inf if self.call_timeout is None else self.call_timeout
        limit = min(timeout, own_limit)
        # Which bound ran out names the failure: the call's own limit, or the turn's deadline.
        expired = "timeout" if own_limit <= timeout else "deadline"
        # The HTTP client's read limit bounds each silence (a stream whose chunks keep coming
        # never trips it), hence the limit on the whole call around it. One at or past the
        # whole call's is left to that.
        read_timeout = self.read_timeout if (self.read_timeout or math.inf) < limit else None
        body = encode_request(
            self.name,
            messages,
            tools,
            max_tokens=self.max_tokens,
            temperature=self.temperature,
            encoder=self.encoder,
        )
        reply = _StreamedReply()
        try:
            # One limit for the whole call, every chunk and every retry's wait included.
            async with asyncio.timeout(limit):
                async with self.client.stream(body, read_timeout=read_timeout) as stream:
                    async for chunk in stream:
                        # Text is held until the finish_reason: a model may write "Voy a revisar
                        # la agenda..." and then call a tool, and nothing on the wire says which
                        # it will be before the end. Held text never reaches the customer as if
                        # it were the answer; it stays in the history as what the model said.
                        if reply.add(chunk) and on_text is not None and reply.is_answer:
                            on_text(reply.text)
            if reply.finish_reason is None:
                # A body that ends cleanly but early is a truncated answer, not an answer.
                raise LLMUnavailable(
                    "incomplete: the stream ended without a finish_reason", "incomplete"
                )
        except (ChatHTTPError, TimeoutError) as exc:
            if (
                isinstance(exc, APIStatusError)
                and exc.status == 400
                and is_context_length_error(exc.body)
            ):
                raise ContextTooLong(f"context_length: {exc!r}") from exc
            if reply.finish_reason is None:
                # A bare TimeoutError is the limit around the call (the client raises
                # APITimeoutError for its own).
                outcome = expired if type(exc) is TimeoutError else _outcome(exc)
                raise LLMUnavailable(f"{outcome}: {exc!r}", outcome) from exc
            # The reply is whole (and may already be on its way to the customer); only the
            # trailing usage chunk was lost, so its tokens go uncounted.
            SWALLOWED_ERRORS.labels(where="llm_stream_tail").inc()
            log.warning("llm_stream_tail_lost", error=repr(exc))
        return reply.result()


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
    timings: Mapping[str, Any] | None = None  # llama.cpp's, on its last chunk

    @property
    def text(self) -> str:
        return "".join(self.pieces)

    @property
    def is_answer(self) -> bool:
        """A whole answer: no tool calls, and not cut short (`max_tokens`, a filter)."""
        return not self.calls and self.finish_reason not in CUT_SHORT

    def add(self, chunk: object) -> bool:
        """Take one chunk; True when it is the one that ends the reply (its finish_reason)."""
        if not isinstance(chunk, dict):
            raise MalformedStream(f"chunk is not an object: {chunk!r:.200}")
        if isinstance(chunk.get("usage"), dict):
            self.usage = chunk["usage"]
        if isinstance(chunk.get("timings"), dict):
            self.timings = chunk["timings"]
        for choice in _objects(chunk.get("choices")):
            if choice.get("index", 0) != 0:
                continue
            delta = _object(choice.get("delta"))
            if delta.get("content"):
                self.pieces.append(str(delta["content"]))
            for fragment in _objects(delta.get("tool_calls")):
                index = fragment.get("index", 0)
                if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < 128:
                    raise MalformedStream(f"tool call index is not a small integer: {index!r:.50}")
                call = self.calls.setdefault(index, _PartialCall())
                call.id = call.id or str(fragment.get("id") or "")
                function = _object(fragment.get("function"))
                call.name += str(function.get("name") or "")
                call.arguments += str(function.get("arguments") or "")
            if choice.get("finish_reason") is not None and self.finish_reason is None:
                self.finish_reason = str(choice["finish_reason"])
                return True
        return False

    def result(self) -> ModelReply:
        calls = [
            ToolCallRequest(c.id, c.name, c.arguments)
            for _, c in sorted(self.calls.items(), key=lambda item: item[0])
        ]
        return ModelReply.of(
            self.text, calls, read_usage(self.usage, self.timings), self.finish_reason
        )


def _object(value: object) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise MalformedStream(f"expected an object: {value!r:.200}")
    return value


def _objects(value: object) -> list[dict[str, Any]]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise MalformedStream(f"expected a list of objects: {value!r:.200}")
    return value


# How endpoints say a request is longer than the model's context, in the code, type or message
# of their HTTP 400's error object (lower case):
_CONTEXT_MARKERS = (
    "context_length_exceeded",  # OpenAI's `code`
    "exceed_context_size",  # llama.cpp's `type` (exceed_context_size_error)
    "exceeds the available context size",  # llama.cpp's message
    "maximum context length",  # vLLM's and OpenAI's message ("This model's maximum context...")
)
# ...and other servers' wordings: the context, with one of these words.
_CONTEXT_WORDS = ("exceed", "too long", "too large", "maximum")


def is_context_length_error(body: object) -> bool:
    """Whether an HTTP 400's error body (the API's `error` object, or the raw text when the
    body was not JSON) says the request does not fit in the model's context. Any other 400
    (a malformed request, a template that refuses a message) is not: shortening would not help.
    """
    if isinstance(body, dict):
        text = " ".join(str(body.get(key) or "") for key in ("code", "type", "message"))
    elif isinstance(body, str):
        text = body
    else:
        return False
    text = text.lower()
    if any(marker in text for marker in _CONTEXT_MARKERS):
        return True
    return "context" in text and any(word in text for word in _CONTEXT_WORDS)


def _outcome(exc: Exception) -> str:
    """The metrics label of a failed call (see `LLMUnavailable`)."""
    if isinstance(exc, APITimeoutError | TimeoutError):
        return "timeout"
    if isinstance(exc, APIConnectionError):
        return "connection_error"
    if isinstance(exc, APIStatusError):
        return "rate_limited" if exc.status == 429 else f"http_{exc.status}"
    if isinstance(exc, MalformedStream):
        return "malformed"
    # StreamError: the endpoint's own error inside the stream, as the SDK reported it.
    return "error"


def read_usage(
    usage: Mapping[str, Any] | None, timings: Mapping[str, Any] | None = None
) -> Usage | None:
    """The token counts of a reply's `usage`, None when the endpoint sent none.

    Prompt tokens served from the endpoint's cache: OpenAI (and vLLM) say it in
    `usage.prompt_tokens_details.cached_tokens`; llama.cpp, in the `timings` object of its last
    chunk (`cache_n`, the prompt tokens it did not have to read again), which is read when
    `cached_tokens` is absent."""
    if usage is None:
        return None
    details = usage.get("prompt_tokens_details")
    cached = _count(details, "cached_tokens")
    if cached is None:
        cached = _count(timings, "cache_n")
    return Usage(
        prompt_tokens=_count(usage, "prompt_tokens") or 0,
        completion_tokens=_count(usage, "completion_tokens") or 0,
        cached_tokens=cached or 0,
    )


def _count(source: object, key: str) -> int | None:
    """A token count, or None when it is absent or not one (llama.cpp writes -1 for unknown)."""
    value = source.get(key) if isinstance(source, Mapping) else None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return None
    return value
