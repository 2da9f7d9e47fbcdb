"""The Chat Completions wire on aiohttp: the request body as bytes, one session per client, the
SDK's retry rules, the SSE stream read into the chunks' JSON, and every failure as one of a few
exception types (`OpenAIChatModel` maps them to outcomes).

The OpenAI SDK did this before; its layers (httpx request and response objects, option
processing) cost more CPU per call than the rest of a turn's HTTP work, and its aiohttp transport
reports a dropped connection as a timeout. Everything the service needs from it is here.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import math
import random
import time
from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import structlog

from citas.agent.model import ToolSchema
from citas.agent.request_body import RequestEncoder
from citas.messages import Message

log = structlog.get_logger("citas.llm")

DEFAULT_BASE_URL = "https://api.openai.com/v1"

# The SDK's retry rules (openai 1.x to 3.x): exponential backoff from 0.5 s, at most 8 s, less up
# to a quarter of jitter; a server's `Retry-After` honoured when it asks for at most a minute.
INITIAL_RETRY_DELAY = 0.5
MAX_RETRY_DELAY = 8.0
MAX_RETRY_AFTER = 60.0
RETRY_STATUSES = frozenset({408, 409, 429})  # and every 5xx

# Idle connections are dropped before the usual servers drop them (uvicorn, so vLLM: 5 s), so a
# request never goes out on a connection the server is closing.
KEEPALIVE_SECONDS = 4.0
MAX_CONNECTIONS = 100


# --------------------------------------------------------------------------- failures


class ChatHTTPError(Exception):
    """The call failed on the wire; the subclass says how."""


class APIConnectionError(ChatHTTPError):
    """Connecting failed, or the connection broke (refused, reset, closed by the server)."""


class APITimeoutError(ChatHTTPError):
    """Nothing came for longer than the read timeout (or the connect timeout)."""


class APIStatusError(ChatHTTPError):
    """The endpoint answered an HTTP error status. `body` is the API's `error` object (the
    whole JSON body when it has none), or the raw text when the body is not JSON."""

    def __init__(self, status: int, body: object, retry_after: float | None = None) -> None:
        self.status = status
        self.body = body
        self.message = _error_message(body) or f"HTTP {status}"
        self.retry_after = retry_after
        super().__init__(f"HTTP {status}: {self.message}")


class StreamError(ChatHTTPError):
    """The endpoint reported an error inside the stream (an `error` event, or a chunk that is
    an `{"error": ...}` object, as OpenAI and vLLM send when generation fails midway)."""

    def __init__(self, body: object) -> None:
        self.body = body
        super().__init__(_error_message(body) or "an error occurred during streaming")


class MalformedStream(ChatHTTPError):
    """A chunk that is not JSON, or not the shape of a `chat.completion.chunk`."""


def _error_message(body: object) -> str:
    if isinstance(body, Mapping):
        message = body.get("message")
        return message if isinstance(message, str) else ""
    return body if isinstance(body, str) else ""


# --------------------------------------------------------------------------- the request


def encode_request(
    model: str,
    messages: Sequence[Message],
    tools: Sequence[ToolSchema],
    *,
    max_tokens: int | None = None,
    temperature: float | None = None,
    encoder: RequestEncoder | None = None,
) -> bytes:
    """The streamed Chat Completions request, as the bytes posted. With `encoder` (a
    long-lived one), messages and tools it has seen before are not serialized again."""
    fields: dict[str, Any] = {
        "model": model,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    # Only when set, so an endpoint's own defaults hold otherwise. `max_tokens`, not OpenAI's
    # newer `max_completion_tokens`: the local servers (llama.cpp, vLLM, Ollama) read it.
    if max_tokens is not None:
        fields["max_tokens"] = max_tokens
    if temperature is not None:
        fields["temperature"] = temperature
    # `body` leaves out an empty `tools` array, which the API refuses.
    if encoder is None:  # not `or`: an encoder with nothing in it yet is falsy (`__len__`)
        encoder = RequestEncoder(max_entries=len(messages) + 1)
    return encoder.body(fields, messages, tools)


# --------------------------------------------------------------------------- the client


class ChatHTTPClient:
    """POSTs to `{base_url}/chat/completions` over one aiohttp session (made on first use, in
    the running loop; `close()` ends it), retrying as the OpenAI SDK does.

    Retried, up to `max_retries` times, only before the answer has begun (no 2xx headers yet):
    connection errors, timeouts, and HTTP 408, 409, 429 and 5xx, unless the answer says
    `x-should-retry: false` (`true` retries any status). The wait is the answer's
    `retry-after-ms` or `Retry-After` (seconds or an HTTP date) when it is at most a minute,
    else 0.5 s doubled per retry, at most 8 s, less up to 25% of jitter. Nothing here bounds the
    whole call: the caller does (`OpenAIChatModel` runs it within `asyncio.timeout`).
    """

    def __init__(
        self,
        api_key: str | None,
        base_url: str | None = None,
        *,
        max_retries: int = 2,
        connect_timeout: float | None = None,
        max_connections: int = MAX_CONNECTIONS,
    ) -> None:
        self.base_url = (base_url or DEFAULT_BASE_URL).rstrip("/")
        self.url = f"{self.base_url}/chat/completions"
        self.max_retries = max_retries
        self.connect_timeout = connect_timeout
        self.max_connections = max_connections
        self._headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(
            limit=self.max_connections, keepalive_timeout=KEEPALIVE_SECONDS
        )
        self._session = aiohttp.ClientSession(
            connector=connector, cookie_jar=aiohttp.DummyCookieJar(), raise_for_status=False
        )
        return self._session

    async def close(self) -> None:
        """Close the session and its connections; idempotent. A later call opens a new one."""
        if self._session is not None:
            await self._session.close()
        self._session = None

    @asynccontextmanager
    async def stream(
        self, body: bytes, *, read_timeout: float | None = None
    ) -> AsyncIterator[AsyncIterator[object]]:
        """POST `body` (retrying as above) and yield the answer's chunks, each the JSON of one
        SSE `data:` line, up to `[DONE]`. `read_timeout` is the longest silence waited through:
        for the answer's headers and first byte, and between two reads of the body."""
        response = await self._send(body, read_timeout)
        chunks = _chunks(response)
        try:
            yield chunks
        finally:
            await chunks.aclose()  # now, not when the garbage collector finds it
            response.release()  # an answer not read to its end closes its connection

    async def _send(self, body: bytes, read_timeout: float | None) -> aiohttp.ClientResponse:
        session = self._session if self._session is not None else self._open()
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=self.connect_timeout, sock_read=read_timeout
        )
        retries = 0
        while True:
            error: ChatHTTPError
            try:
                response = await session.post(
                    self.url,
                    data=body,
                    headers=self._headers,
                    timeout=timeout,
                    allow_redirects=False,
                )
            except aiohttp.ServerTimeoutError as exc:  # before ClientError: it is one
                error = APITimeoutError(f"no answer within the read timeout: {exc!r}")
                error.__cause__ = exc
                retry = True
            except aiohttp.ClientError as exc:
                error = APIConnectionError(repr(exc))
                error.__cause__ = exc
                retry = True
            else:
                if 200 <= response.status < 300:
                    return response
                error = await _status_error(response)
                retry = _should_retry(response.status, response.headers)
            if not retry or retries >= self.max_retries:
                raise error
            wait = _retry_wait(retries, error)
            retries += 1
            log.info(
                "llm_retry",
                retry=retries,
                max_retries=self.max_retries,
                wait_seconds=round(wait, 3),
                reason=str(error)[:200],
            )
            await asyncio.sleep(wait)


async def _status_error(response: aiohttp.ClientResponse) -> ChatHTTPError:
    """The error an HTTP error answer is (reading its body), or how reading it failed."""
    try:
        raw = await response.read()
    except aiohttp.ServerTimeoutError as exc:
        return APITimeoutError(f"HTTP {response.status}, its body not read in time: {exc!r}")
    except aiohttp.ClientError as exc:
        return APIConnectionError(f"HTTP {response.status}, its body cut: {exc!r}")
    finally:
        response.release()
    text = raw.decode("utf-8", errors="replace")
    try:
        parsed = json.loads(text)
    except ValueError:
        body: object = text
    else:
        # The API's `error` object; older vLLM puts its fields at the top level.
        body = parsed.get("error", parsed) if isinstance(parsed, dict) else parsed
    return APIStatusError(response.status, body, retry_after_seconds(response.headers))


def _should_retry(status: int, headers: Mapping[str, str]) -> bool:
    should = headers.get("x-should-retry")
    if should == "true":
        return True
    if should == "false":
        return False
    return status in RETRY_STATUSES or status >= 500


def _retry_wait(retries: int, error: ChatHTTPError) -> float:
    """How long to wait before retry number `retries + 1`."""
    asked = error.retry_after if isinstance(error, APIStatusError) else None
    if asked is not None and 0 < asked <= MAX_RETRY_AFTER:
        return asked
    backoff = min(INITIAL_RETRY_DELAY * 2.0 ** min(retries, 1000), MAX_RETRY_DELAY)
    return backoff * (1 - 0.25 * random.random())


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """The wait an answer asks for: `retry-after-ms`, else `Retry-After` in seconds (a float
    allowed) or as an HTTP date; None when absent or unreadable."""
    for name, divisor in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            seconds = float(value) / divisor
        except ValueError:
            continue
        return seconds if math.isfinite(seconds) else None
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        parsed = email.utils.parsedate_tz(value)
        if parsed is None:
            return None
        return float(email.utils.mktime_tz(parsed) - time.time())
    except (TypeError, ValueError, OverflowError):
        return None


# --------------------------------------------------------------------------- the stream


async def _chunks(response: aiohttp.ClientResponse) -> AsyncGenerator[object, None]:
    """The JSON of each SSE event's data, up to `[DONE]` (the body is still read to its end, so
    the connection can be reused)."""
    decoder = SSEDecoder()
    done = False
    try:
        async for block in response.content.iter_any():
            for event, data in decoder.feed(block):
                if done:
                    continue
                if data.strip() == b"[DONE]":
                    done = True
                    continue
                yield _parse(data, event)
    except aiohttp.ServerTimeoutError as exc:
        raise APITimeoutError(f"the stream went silent past the read timeout: {exc!r}") from exc
    except aiohttp.ClientError as exc:
        raise APIConnectionError(f"the stream broke: {exc!r}") from exc
    for event, data in decoder.end():
        if not done and data.strip() != b"[DONE]":
            yield _parse(data, event)


class SSEDecoder:
    """Server-sent events out of the body's bytes as they come: (event name, data) for each
    event that has data. Comments (keep-alives), `id:` and `retry:` lines are skipped; an
    event's several `data:` lines are joined with newlines, as SSE says."""

    def __init__(self) -> None:
        self._pending = b""
        self._event = b""
        self._data: list[bytes] = []

    def feed(self, block: bytes) -> list[tuple[bytes, bytes]]:
        lines = (self._pending + block).split(b"\n") if self._pending else block.split(b"\n")
        self._pending = lines.pop()
        events: list[tuple[bytes, bytes]] = []
        for line in lines:
            self._line(line, events)
        return events

    def end(self) -> list[tuple[bytes, bytes]]:
        """The last event, when the body ended without its blank line (it is whole)."""
        events: list[tuple[bytes, bytes]] = []
        if self._pending:
            self._line(self._pending, events)
            self._pending = b""
        self._line(b"", events)
        return events

    def _line(self, line: bytes, events: list[tuple[bytes, bytes]]) -> None:
        if line[-1:] == b"\r":
            line = line[:-1]
        if not line:  # a blank line ends an event
            if self._data:
                data = self._data[0] if len(self._data) == 1 else b"\n".join(self._data)
                events.append((self._event, data))
            self._event, self._data = b"", []
        elif line[:1] != b":":  # not a comment
            name, _, value = line.partition(b":")
            if value[:1] == b" ":
                value = value[1:]
            if name == b"data":
                self._data.append(value)
            elif name == b"event":
                self._event = value


def _parse(payload: bytes, event: bytes) -> object:
    try:
        chunk = json.loads(payload)
    except ValueError as exc:
        if event == b"error":
            raise StreamError(payload.decode("utf-8", errors="replace")) from exc
        raise MalformedStream(f"a chunk that is not JSON: {payload[:200]!r}") from exc
    if event == b"error":
        raise StreamError(chunk.get("error", chunk) if isinstance(chunk, dict) else chunk)
    if isinstance(chunk, dict) and chunk.get("error"):
        raise StreamError(chunk["error"])
    return chunk
