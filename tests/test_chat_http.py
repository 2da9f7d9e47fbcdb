"""The LLM's HTTP client (`citas.agent.chat_http`) through real sockets: each way a call can fail
and the outcome it is, the retry rules, the request it sends, and its SSE reading.

A tiny HTTP/1.1 server written on asyncio's streams answers each request as the test scripts it
(an answer, a refusal, a stream cut or stalled midway, a reset), which FakeLLM cannot."""

from __future__ import annotations

import asyncio
import email.utils
import json
import socket
import struct
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from citas.agent.chat_http import (
    ChatHTTPClient,
    SSEDecoder,
    encode_request,
    retry_after_seconds,
)
from citas.agent.openai_model import OpenAIChatModel, create_client
from citas.errors import ContextTooLong, LLMUnavailable
from citas.messages import Message, system_message, user_message
from citas.metrics import SWALLOWED_ERRORS
from citas.testing import FakeLLM, reply

HELLO: list[Message] = [system_message("Eres amable."), user_message("Hola")]

Writer = asyncio.StreamWriter
Answer = Callable[[Writer], Awaitable[None]]


def chunk(text: str | None = None, finish: str | None = None, **extra: Any) -> bytes:
    """One SSE event with a `chat.completion.chunk`."""
    delta = {} if text is None else {"content": text}
    body = {
        "id": "c1",
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        **extra,
    }
    return f"data: {json.dumps(body)}\n\n".encode()


USAGE = b'data: {"choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 2}}\n\n'
DONE = b"data: [DONE]\n\n"


def respond(status: int, body: bytes | str = b"", headers: dict[str, str] | None = None) -> Answer:
    """A whole answer with a Content-Length; the connection stays open."""
    raw = body.encode() if isinstance(body, str) else body
    if isinstance(body, str) and body.startswith("{"):
        headers = {"Content-Type": "application/json", **(headers or {})}

    async def answer(writer: Writer) -> None:
        head = [f"HTTP/1.1 {status} X", f"Content-Length: {len(raw)}"]
        head += [f"{name}: {value}" for name, value in (headers or {}).items()]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + raw)
        await writer.drain()

    return answer


def error(status: int, message: str, headers: dict[str, str] | None = None) -> Answer:
    body = {"error": {"message": message, "type": "x", "param": None, "code": None}}
    return respond(status, json.dumps(body), headers)


def sse(*events: bytes, then: str = "end") -> Answer:
    """A 200 event stream, chunked: `events`, then the end of the body, a dropped connection
    (`drop`) or silence (`stall`)."""

    async def answer(writer: Writer) -> None:
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        for event in events:
            writer.write(b"%x\r\n%s\r\n" % (len(event), event))
            await writer.drain()
        if then == "drop":
            writer.close()
        elif then == "stall":
            await asyncio.sleep(30)
        else:
            writer.write(b"0\r\n\r\n")
            await writer.drain()

    return answer


def ok_stream(text: str = "Hola") -> Answer:
    return sse(chunk(text), chunk(finish="stop"), USAGE, DONE)


async def disconnect(writer: Writer) -> None:
    """Close without answering (the server went away before the answer)."""
    writer.close()


async def reset(writer: Writer) -> None:
    """Reset the connection (RST) without answering."""
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


@dataclass
class Request:
    at: float
    head: dict[str, str]
    body: bytes


@dataclass
class Server:
    """Answers the n-th request with `answers[n]` (the last one again when they run out)."""

    answers: list[Answer]
    requests: list[Request] = field(default_factory=list)
    connections: int = 0
    url: str = ""

    async def handle(self, reader: asyncio.StreamReader, writer: Writer) -> None:
        self.connections += 1
        try:
            while not writer.is_closing():
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode().split("\r\n")[1:]
                headers = {
                    k.strip().lower(): v.strip()
                    for k, _, v in (line.partition(":") for line in lines if line)
                }
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                self.requests.append(Request(time.monotonic(), headers, body))
                answer = self.answers[min(len(self.requests), len(self.answers)) - 1]
                await answer(writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@pytest.fixture
async def serve() -> AsyncIterator[Callable[..., Awaitable[Server]]]:
    servers: list[asyncio.Server] = []

    async def start(*answers: Answer) -> Server:
        server = Server(list(answers))
        listening = await asyncio.start_server(server.handle, "127.0.0.1", 0)
        servers.append(listening)
        port = listening.sockets[0].getsockname()[1]
        server.url = f"http://127.0.0.1:{port}/v1"
        return server

    yield start
    for listening in servers:
        listening.close()
        # Handlers still writing (a stall) are cancelled with the loop.


async def ask(
    url: str,
    *,
    retries: int = 0,
    timeout: float = 10,
    key: str | None = "sk-test",
    on_text: Callable[[str], None] | None = None,
    **limits: float,
) -> Any:
    """One call through the real model client; its reply, or the LLMUnavailable it raised."""
    client = create_client(key, url, timeout=5, max_retries=retries)
    try:
        model = OpenAIChatModel(client, "gpt-4o-mini", **limits)
        return await model.complete(HELLO, [], timeout=timeout, on_text=on_text)
    except LLMUnavailable as exc:
        return exc
    finally:
        await client.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# --------------------------------------------------------------------------- the request


async def test_the_request_carries_the_key_the_json_body_and_the_path(
    serve: Callable[..., Awaitable[Server]],
) -> None:
    server = await serve(ok_stream())
    answer = await ask(server.url)
    assert answer.text == "Hola" and answer.usage.prompt_tokens == 9
    [request] = server.requests
    assert request.head["authorization"] == "Bearer sk-test"
    assert request.head["content-type"] == "application/json"
    assert json.loads(request.body) == {
        "model": "gpt-4o-mini",
        "messages": HELLO,
        "stream": True,
        "stream_options": {"include_usage": True},
    }


async def test_no_key_sends_no_authorization(serve: Callable[..., Awaitable[Server]]) -> None:
    server = await serve(ok_stream())
    await ask(server.url, key=None)
    assert "authorization" not in server.requests[0].head


def test_encode_request_is_compact_utf8_json_in_one_function() -> None:
    tools = [{"type": "function", "function": {"name": "t", "parameters": {}}}]
    body = encode_request("m", [user_message("¿Mañana?")], tools, max_tokens=5, temperature=0)
    assert b'"messages":[{"role":"user","content":"\xc2\xbfMa\xc3\xb1ana?"}]' in body
    assert body.startswith(b'{"model":"m",') and b", " not in body and b'": ' not in body
    assert json.loads(body)["tools"] == tools
    assert (json.loads(body)["max_tokens"], json.loads(body)["temperature"]) == (5, 0)
    assert "tools" not in json.loads(encode_request("m", [user_message("a")], []))


async def test_calls_reuse_one_connection_and_close_ends_the_session(
    serve: Callable[..., Awaitable[Server]],
) -> None:
    server = await serve(ok_stream())
    client = ChatHTTPClient("k", server.url, max_retries=0)
    model = OpenAIChatModel(client, "m")
    for _ in range(3):
        assert (await model.complete(HELLO, [], timeout=5)).text == "Hola"
    assert (len(server.requests), server.connections) == (3, 1)
    await client.close()
    await client.close()  # idempotent
    assert (await model.complete(HELLO, [], timeout=5)).text == "Hola"  # a new session
    await client.close()
    assert server.connections == 2


# --------------------------------------------------------------------------- failures → outcomes


async def test_connection_refused_is_a_connection_error() -> None:
    failure = await ask(f"http://127.0.0.1:{free_port()}/v1")
    assert isinstance(failure, LLMUnavailable) and failure.outcome == "connection_error"


@pytest.mark.parametrize("answer", [disconnect, reset], ids=["closed", "reset"])
async def test_a_connection_lost_before_the_answer_is_a_connection_error(
    serve: Callable[..., Awaitable[Server]], answer: Answer
) -> None:
    server = await serve(answer)
    failure = await ask(server.url)
    assert isinstance(failure, LLMUnavailable) and failure.outcome == "connection_error"
    assert len(server.requests) == 1


@pytest.mark.parametrize("answer", [disconnect, reset], ids=["closed", "reset"])
async def test_a_connection_lost_before_the_answer_is_retried(
    serve: Callable[..., Awaitable[Server]], answer: Answer
) -> None:
    server = await serve(answer, ok_stream("a la segunda"))
    assert (await ask(server.url, retries=1)).text == "a la segunda"
    assert len(server.requests) == 2


async def test_a_stream_cut_midway_is_a_connection_error_and_not_retried(
    serve: Callable[..., Awaitable[Server]],
) -> None:
    server = await serve(sse(chunk("Hola, el mar"), then="drop"), ok_stream())
    texts: list[str] = []
    failure = await ask(server.url, retries=2, on_text=texts.append)
    assert isinstance(failure, LLMUnavailable) and failure.outcome == "connection_error"
    assert len(server.requests) == 1, "a stream that has begun is never asked again"
    assert texts == []


async def test_silence_past_the_read_timeout_is_a_timeout(
    serve: Callable[..., Awaitable[Server]],
) -> None:
    server = await serve(sse(chunk("Hola"), then="stall"))
    started = time.monotonic()
    failure = await ask(server.url, retries=2, call_timeout=20, read_timeout=0.2)
    assert isinstance(failure, LLMUnavailable) and failure.outcome == "timeout"
    assert time.monotonic() - started < 5
    assert len(server.requests) == 1


async def test_silence_before_the_answer_is_a_timeout_and_is_retried() -> None:
    async with FakeLLM([reply("a tiempo")]) as fake:
        fake.script.delay_next(2)
        client = create_client("k", fake.base_url, timeout=5, max_retries=1)
        try:
            model = OpenAIChatModel(client, "m", call_timeout=10, read_timeout=0.3)
            assert (await model.complete(HELLO, [], timeout=10)).text == "a tiempo"
            fake.script.add(reply("tarde"))
            fake.script.delay_next(2, times=2)
            with pytest.raises(LLMUnavailable) as raised:
                await model.complete(HELLO, [], timeout=10)
        finally:
            await client.close()
    assert raised.value.outcome == "timeout"
    assert len(fake.script.requests) == 4


@pytest.mark.parametrize(
    ("status", "outcome"),
    [(429, "rate_limited"), (500, "http_500"), (503, "http_503"), (401, "http_401")],
)
async def test_an_error_status_is_its_outcome(
    serve: Callable[..., Awaitable[Server]], status: int, outcome: str
) -> None:
    server = await serve(error(status, "no"))
    failure = await ask(server.url)
    assert isinstance(failure, LLMUnavailable) and failure.outcome == outcome


async def test_a_401_is_not_retried(serve: Callable[..., Awaitable[Server]]) -> None:
    server = await serve(error(401, "Incorrect API key provided."))
    failure = await ask(server.url, retries=2)
    assert isinstance(failure, LLMUnavailable) and failure.outcome == "http_401"
    assert len(server.requests) == 1


@pytest.mark.parametrize("status", [408, 409, 429, 500, 502, 503])
async def test_retried_statuses(serve: Callable[..., Awaitable[Server]], status: int) -> None:
    server = await serve(error(status, "again", {"retry-after-ms": "10"}), ok_stream())
    assert (await ask(server.url, retries=1)).text == "Hola"
    assert len(server.requests) == 2


async def test_x_should_retry_is_obeyed_either_way(
    serve: Callable[..., Awaitable[Server]],
) -> None:
    refused = await serve(error(503, "no", {"x-should-retry": "false"}), ok_stream())
    failure = await ask(refused.url, retries=2)
    assert isinstance(failure, LLMUnavailable) and failure.outcome == "http_503"
    assert len(refused.requests) == 1
    asked = await serve(error(400, "again", {"x-should-retry": "true", "retry-after-ms": "1"}))
    asked.answers.append(ok_stream())
    assert (await ask(asked.url, retries=2)).text == "Hola"
    assert len(asked.requests) == 2


@pytest.mark.parametrize(
    ("headers", "wait"),
    [({"Retry-After": "0.4"}, 0.4), ({"retry-after-ms": "300", "Retry-After": "30"}, 0.3)],
)
async def test_the_wait_is_the_one_the_server_asks_for(
    serve: Callable[..., Awaitable[Server]], headers: dict[str, str], wait: float
) -> None:
    server = await serve(error(429, "slow down", headers), ok_stream())
    assert (await ask(server.url, retries=1)).text == "Hola"
    first, second = server.requests
    assert wait - 0.05 <= second.at - first.at < wait + 3


async def test_a_retry_after_past_a_minute_is_not_waited_for(
    serve: Callable[..., Awaitable[Server]],
) -> None:
    server = await serve(error(503, "later", {"Retry-After": "3600"}), ok_stream())
    assert (await ask(server.url, retries=1)).text == "Hola"
    first, second = server.requests
    assert second.at - first.at < 3  # the backoff's 0.5 s (less jitter), not an hour


async def test_retries_and_their_waits_stay_within_the_call_limit(
    serve: Callable[..., Awaitable[Server]],
) -> None:
    server = await serve(error(429, "slow down", {"Retry-After": "30"}))
    started = time.monotonic()
    failure = await ask(server.url, retries=2, call_timeout=0.4)
    assert isinstance(failure, LLMUnavailable) and failure.outcome == "timeout"
    assert time.monotonic() - started < 3
    assert len(server.requests) == 1
    failure = await ask(server.url, retries=2, timeout=0.4, call_timeout=20)
    assert isinstance(failure, LLMUnavailable) and failure.outcome == "deadline"
    assert len(server.requests) == 2


def test_retry_after_reads_milliseconds_seconds_and_dates() -> None:
    assert retry_after_seconds({"retry-after-ms": "250"}) == 0.25
    assert retry_after_seconds({"retry-after": "1.5"}) == 1.5
    in_ten = email.utils.formatdate(time.time() + 10, usegmt=True)
    seconds = retry_after_seconds({"retry-after": in_ten})
    assert seconds is not None and 8 <= seconds <= 11
    assert retry_after_seconds({"retry-after": "soon"}) is None
    assert retry_after_seconds({}) is None


async def test_a_context_refusal_in_plain_text_is_context_too_long(
    serve: Callable[..., Awaitable[Server]],
) -> None:
    server = await serve(respond(400, "the request exceeds the available context size"))
    failure = await ask(server.url, retries=2)
    assert isinstance(failure, ContextTooLong) and failure.outcome == "context_length"
    assert len(server.requests) == 1


async def test_an_error_body_that_is_not_json_keeps_its_status(
    serve: Callable[..., Awaitable[Server]],
) -> None:
    server = await serve(respond(502, "<html>Bad Gateway</html>"))
    failure = await ask(server.url)
    assert isinstance(failure, LLMUnavailable) and failure.outcome == "http_502"
    assert "Bad Gateway" in str(failure)


async def test_a_chunk_that_is_not_json_is_malformed(
    serve: Callable[..., Awaitable[Server]],
) -> None:
    server = await serve(sse(chunk("Hola"), b"data: {not json\n\n", DONE))
    failure = await ask(server.url, retries=2)
    assert isinstance(failure, LLMUnavailable) and failure.outcome == "malformed"
    assert len(server.requests) == 1


async def test_a_stream_without_a_finish_reason_is_incomplete(
    serve: Callable[..., Awaitable[Server]],
) -> None:
    server = await serve(sse(chunk("Hola, el mar"), DONE))
    failure = await ask(server.url)
    assert isinstance(failure, LLMUnavailable) and failure.outcome == "incomplete"


@pytest.mark.parametrize(
    "event",
    [
        b'data: {"error": {"message": "model overloaded", "type": "server_error"}}\n\n',
        b'event: error\ndata: {"message": "model overloaded"}\n\n',
    ],
    ids=["error-chunk", "error-event"],
)
async def test_an_error_inside_the_stream_is_an_error(
    serve: Callable[..., Awaitable[Server]], event: bytes
) -> None:
    server = await serve(sse(chunk("Hola"), event, DONE))
    failure = await ask(server.url, retries=2)
    assert isinstance(failure, LLMUnavailable) and failure.outcome == "error"
    assert "model overloaded" in str(failure)
    assert len(server.requests) == 1


async def test_a_stream_cut_after_the_finish_reason_keeps_the_reply(
    serve: Callable[..., Awaitable[Server]],
) -> None:
    server = await serve(sse(chunk("Hola"), chunk(finish="stop"), then="drop"))
    before = SWALLOWED_ERRORS.labels(where="llm_stream_tail")._value.get()
    texts: list[str] = []
    answer = await ask(server.url, on_text=texts.append)
    assert (answer.text, answer.usage, texts) == ("Hola", None, ["Hola"])
    assert SWALLOWED_ERRORS.labels(where="llm_stream_tail")._value.get() == before + 1


# --------------------------------------------------------------------------- SSE


def test_sse_decoding_whatever_the_reads_split() -> None:
    raw = (
        b": keep-alive\r\n\r\n"
        b'data: {"a": 1}\r\n\r\n'
        b"id: 7\nretry: 10\nevent: note\ndata: line one\ndata: line two\n\n"
        b"\n\n"
        b'data:{"b": 2}\n\n'
        b"data: [DONE]"  # the last event, without its blank line
    )
    expected = [
        (b"", b'{"a": 1}'),
        (b"note", b"line one\nline two"),
        (b"", b'{"b": 2}'),
        (b"", b"[DONE]"),
    ]
    for size in (1, 2, 7, len(raw)):
        decoder = SSEDecoder()
        events = [e for i in range(0, len(raw), size) for e in decoder.feed(raw[i : i + size])]
        assert [*events, *decoder.end()] == expected, size


async def test_events_after_done_are_ignored_and_comments_skipped(
    serve: Callable[..., Awaitable[Server]],
) -> None:
    server = await serve(
        sse(b": ping\n\n", chunk("Hola"), chunk(finish="stop"), DONE, b"data: junk\n\n")
    )
    assert (await ask(server.url)).text == "Hola"
