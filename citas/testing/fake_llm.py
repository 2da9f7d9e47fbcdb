"""A fake OpenAI-compatible Chat Completions server for tests, replay and benchmarks.

The OpenAI SDK talks HTTP through httpx2, so the LLM is faked as a real server on 127.0.0.1:
the SDK's own serialization, retries and streaming parser are exercised as in production.
Requests are validated like the real API so a malformed history fails loudly in tests.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import secrets
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from aiohttp import web

__all__ = [
    "FakeLLM",
    "InvalidRequestError",
    "Responder",
    "Step",
    "ToolCall",
    "call",
    "reply",
    "tool_calls",
    "validate_request",
]

JSON = dict[str, Any]

_ROLES = ("system", "developer", "user", "assistant", "tool", "function")
_TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_TOOL_CHOICE_MODES = ("none", "auto", "required")
_EXHAUSTED = "fake LLM script exhausted"
# The reason line of llama.cpp's answer when the chat template raises on a late system message.
_SYSTEM_NOT_FIRST = (
    "Unable to generate parser for this template.\nError: Jinja Exception: System message must be "
    "at the beginning."
)


# --------------------------------------------------------------------------- scripted steps


@dataclass(frozen=True, slots=True)
class ToolCall:
    """One tool call the fake model makes; `arguments` is the raw JSON string sent on the wire."""

    name: str
    arguments: str
    id: str | None = None


@dataclass(frozen=True, slots=True)
class Step:
    """One assistant answer: text, tool calls, or both (text first, as real models stream it)."""

    text: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()

    @property
    def finish_reason(self) -> str:
        """`tool_calls` when the model asks for tools, else `stop`."""
        return "tool_calls" if self.tool_calls else "stop"


Responder = Callable[[JSON], Step | ToolCall]


def reply(text: str) -> Step:
    """A final text answer."""
    return Step(text=text)


def call(name: str, arguments: Mapping[str, Any] | str, id: str | None = None) -> ToolCall:
    """A tool call; a `str` is sent verbatim so tests can feed malformed JSON to the agent."""
    raw = arguments if isinstance(arguments, str) else json.dumps(arguments, ensure_ascii=False)
    return ToolCall(name=name, arguments=raw, id=id)


def tool_calls(*calls: ToolCall, text: str | None = None) -> Step:
    """One assistant message carrying several tool calls (and optional text)."""
    if not calls:
        raise ValueError("tool_calls() needs at least one call")
    return Step(text=text, tool_calls=calls)


def _as_step(item: Step | ToolCall) -> Step:
    return Step(tool_calls=(item,)) if isinstance(item, ToolCall) else item


# --------------------------------------------------------------------------- validation


class InvalidRequestError(Exception):
    """A request the real API would refuse with HTTP 400."""

    def __init__(self, message: str, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code


def validate_request(body: Mapping[str, Any]) -> None:
    """Raise InvalidRequestError where the real Chat Completions API would answer 400."""
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _missing("model")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidRequestError(
            "Invalid 'messages': expected a non-empty array.", "messages", "empty_array"
        )
    for index, message in enumerate(messages):
        _check_message(index, message)
    _check_unique_call_ids(messages)
    _check_tool_sequence(messages)
    names = _check_tools(body)
    _check_tool_choice(body, names)
    _check_stream(body)


def _missing(param: str) -> InvalidRequestError:
    return InvalidRequestError(
        f"Missing required parameter: '{param}'.", param, "missing_required_parameter"
    )


def _check_message(index: int, message: object) -> None:
    where = f"messages[{index}]"
    if not isinstance(message, dict):
        raise InvalidRequestError(f"Invalid type for '{where}': expected an object.", where)
    role = message.get("role")
    if role is None:
        raise _missing(f"{where}.role")
    if role not in _ROLES:
        supported = ", ".join(f"'{r}'" for r in _ROLES)
        raise InvalidRequestError(
            f"Invalid value: '{role}'. Supported values are: {supported}.",
            f"{where}.role",
            "invalid_value",
        )
    if role == "assistant":
        _check_assistant(where, message)
        return
    _check_content(where, message)
    if role == "tool" and not _nonempty_str(message.get("tool_call_id")):
        raise _missing(f"{where}.tool_call_id")
    if role == "function" and not _nonempty_str(message.get("name")):
        raise _missing(f"{where}.name")


def _check_content(where: str, message: Mapping[str, Any]) -> None:
    if "content" not in message or message["content"] is None:
        raise _missing(f"{where}.content")
    if not isinstance(message["content"], str | list):
        raise InvalidRequestError(
            f"Invalid type for '{where}.content': expected one of a string or array of objects.",
            f"{where}.content",
            "invalid_type",
        )


def _check_assistant(where: str, message: Mapping[str, Any]) -> None:
    calls = message.get("tool_calls")
    if calls is None:
        if message.get("function_call") is None and message.get("refusal") is None:
            _check_content(where, message)
        return
    if not isinstance(calls, list) or not calls:
        raise InvalidRequestError(
            f"Invalid '{where}.tool_calls': empty array. Expected an array with minimum length 1.",
            f"{where}.tool_calls",
            "empty_array",
        )
    if message.get("content") is not None:
        _check_content(where, message)
    for number, tool_call in enumerate(calls):
        _check_tool_call(f"{where}.tool_calls[{number}]", tool_call)


def _check_tool_call(where: str, tool_call: object) -> None:
    if not isinstance(tool_call, dict):
        raise InvalidRequestError(f"Invalid type for '{where}': expected an object.", where)
    if not _nonempty_str(tool_call.get("id")):
        raise _missing(f"{where}.id")
    if tool_call.get("type") != "function":
        raise InvalidRequestError(
            f"Invalid value for '{where}.type': expected 'function'.", f"{where}.type"
        )
    function = tool_call.get("function")
    if not isinstance(function, dict) or not _nonempty_str(function.get("name")):
        raise _missing(f"{where}.function.name")
    # The API wants arguments as a JSON *string*; agents that store a dict break here.
    if not isinstance(function.get("arguments"), str):
        raise InvalidRequestError(
            f"Invalid type for '{where}.function.arguments': expected a string.",
            f"{where}.function.arguments",
            "invalid_type",
        )


def _check_unique_call_ids(messages: Sequence[Mapping[str, Any]]) -> None:
    seen: set[str] = set()
    for index, message in enumerate(messages):
        for tool_call in message.get("tool_calls") or ():
            if tool_call["id"] in seen:
                raise InvalidRequestError(
                    f"Duplicate tool_call id '{tool_call['id']}' in messages[{index}].",
                    f"messages[{index}].tool_calls",
                    "duplicate_tool_call_id",
                )
            seen.add(tool_call["id"])


def _check_tool_sequence(messages: Sequence[Mapping[str, Any]]) -> None:
    """Each assistant tool-call group must be followed at once by one tool result per call id."""
    group: set[str] = set()  # ids of the open group not answered yet
    opened_at = -1
    for index, message in enumerate(messages):
        if message["role"] == "tool":
            if message["tool_call_id"] not in group:
                raise _orphan(index, message["tool_call_id"])
            group.discard(message["tool_call_id"])
            continue
        if group:
            raise _unanswered(opened_at, group)
        group = {c["id"] for c in message.get("tool_calls") or ()}
        opened_at = index
    if group:
        raise _unanswered(opened_at, group)


def _orphan(index: int, call_id: str) -> InvalidRequestError:
    return InvalidRequestError(
        "Invalid parameter: messages with role 'tool' must be a response to a preceding message "
        f"with 'tool_calls' (tool_call_id '{call_id}' in messages[{index}] answers no open call).",
        f"messages[{index}].role",
    )


def _unanswered(index: int, ids: set[str]) -> InvalidRequestError:
    return InvalidRequestError(
        "An assistant message with 'tool_calls' must be followed by tool messages responding to "
        "each 'tool_call_id'. The following tool_call_ids did not have response messages: "
        + ", ".join(sorted(ids)),
        f"messages[{index}].role",
    )


def _check_tools(body: Mapping[str, Any]) -> set[str]:
    if "tools" not in body or body["tools"] is None:
        return set()
    tools = body["tools"]
    if not isinstance(tools, list) or not tools:
        raise InvalidRequestError(
            "Invalid 'tools': empty array. Expected an array with minimum length 1.",
            "tools",
            "empty_array",
        )
    names: set[str] = set()
    for index, tool in enumerate(tools):
        name = _check_tool(f"tools[{index}]", tool)
        if name in names:
            raise InvalidRequestError(
                f"Invalid 'tools': duplicate function name '{name}'.", f"tools[{index}]"
            )
        names.add(name)
    return names


def _check_tool(where: str, tool: object) -> str:
    if not isinstance(tool, dict) or tool.get("type") != "function":
        raise InvalidRequestError(
            f"Invalid value for '{where}.type': expected 'function'.", f"{where}.type"
        )
    function = tool.get("function")
    if not isinstance(function, dict):
        raise _missing(f"{where}.function")
    name = function.get("name")
    if not isinstance(name, str) or not _TOOL_NAME.match(name):
        raise InvalidRequestError(
            f"Invalid '{where}.function.name': string does not match pattern "
            f"'{_TOOL_NAME.pattern}'.",
            f"{where}.function.name",
            "invalid_value",
        )
    parameters = function.get("parameters")
    if not isinstance(parameters, dict) or parameters.get("type") != "object":
        raise InvalidRequestError(
            f"Invalid schema for function '{name}': schema must be a JSON Schema of "
            "'type: \"object\"'.",
            f"{where}.function.parameters",
            "invalid_function_parameters",
        )
    return name


def _check_tool_choice(body: Mapping[str, Any], names: set[str]) -> None:
    choice = body.get("tool_choice")
    if choice is None:
        return
    if not names:
        raise InvalidRequestError(
            "Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' are "
            "specified.",
            "tool_choice",
        )
    if isinstance(choice, str) and choice in _TOOL_CHOICE_MODES:
        return
    name = _named_choice(choice)
    if name not in names:
        raise InvalidRequestError(
            f"Invalid value for 'tool_choice': no function named '{name}' was specified in the "
            "'tools' parameter.",
            "tool_choice",
            "invalid_value",
        )


def _named_choice(choice: object) -> str | None:
    if isinstance(choice, dict) and choice.get("type") == "function":
        function = choice.get("function")
        if isinstance(function, dict) and isinstance(function.get("name"), str):
            return str(function["name"])
    return None


def _check_stream(body: Mapping[str, Any]) -> None:
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise InvalidRequestError("Invalid type for 'stream': expected a boolean.", "stream")
    if body.get("stream_options") is not None and not stream:
        raise InvalidRequestError(
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
            "stream_options",
        )


def _late_system_message(messages: Sequence[Mapping[str, Any]]) -> bool:
    return any(message.get("role") == "system" for message in messages[1:])


def _nonempty_str(value: object) -> bool:
    return isinstance(value, str) and bool(value)


# --------------------------------------------------------------------------- response bodies


def _error_body(message: str, kind: str, param: str | None, code: str | None) -> JSON:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def _fault_body(status: int) -> JSON:
    if status == 429:
        return _error_body(
            "Rate limit reached (fake LLM). Please try again later.",
            "requests",
            None,
            "rate_limit_exceeded",
        )
    if status == 503:
        return _error_body("The server is overloaded or not ready yet.", "server_error", None, None)
    if status >= 500:
        return _error_body(
            "The server had an error while processing your request. Sorry about that!",
            "server_error",
            None,
            None,
        )
    return _error_body(f"Injected fault (HTTP {status}).", "invalid_request_error", None, None)


def _tokens(chars: int) -> int:
    return math.ceil(chars / 4)


def common_prefix_len(a: str, b: str) -> int:
    """Length of the longest common prefix, by bisection so the comparisons run in C."""
    low, high = 0, min(len(a), len(b))
    while low < high:
        middle = (low + high + 1) // 2
        if a[:middle] == b[:middle]:
            low = middle
        else:
            high = middle - 1
    return low


def _wire_calls(step: Step) -> list[JSON]:
    return [
        {
            "id": c.id or f"call_{secrets.token_hex(12)}",
            "type": "function",
            "function": {"name": c.name, "arguments": c.arguments},
        }
        for c in step.tool_calls
    ]


def _completion_chars(step: Step) -> int:
    return len(step.text or "") + sum(len(c.name) + len(c.arguments) for c in step.tool_calls)


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


def _completion(meta: _Meta, step: Step, calls: list[JSON], usage: JSON) -> JSON:
    message: JSON = {"role": "assistant", "content": step.text, "refusal": None}
    if calls:
        message["tool_calls"] = calls
    choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": step.finish_reason}
    return {**meta.envelope("chat.completion"), "choices": [choice], "usage": usage}


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
    meta: _Meta, step: Step, calls: list[JSON], usage: JSON | None, size: int
) -> Iterator[JSON]:
    base = meta.envelope("chat.completion.chunk")
    extra: JSON = {"usage": None} if usage is not None else {}

    def chunk(delta: JSON, finish: str | None) -> JSON:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return {**base, "choices": [choice], **extra}

    for delta in _stream_deltas(step, calls, size):
        yield chunk(delta, None)
    yield chunk({}, step.finish_reason)
    if usage is not None:
        yield {**base, "choices": [], "usage": usage}


# --------------------------------------------------------------------------- the server


@dataclass(slots=True)
class _Fault:
    status: int
    retry_after: float | None


class FakeLLM:
    """OpenAI-compatible `/v1/chat/completions` on 127.0.0.1 serving scripted or computed steps."""

    def __init__(
        self,
        script: Iterable[Step | ToolCall] = (),
        *,
        responder: Responder | None = None,
        models: Sequence[str] = ("gpt-4o-mini",),
        api_key: str | None = None,
        chunk_size: int = 4,
        record: bool = True,
        system_message_first_only: bool = False,
    ) -> None:
        self.requests: list[JSON] = []
        # Like a llama.cpp server whose chat template (Qwen3.x, ...) refuses a system message that
        # is not the first one: HTTP 400 before any step is served.
        self.system_message_first_only = system_message_first_only
        # Benchmarks turn recording off so the fake's memory does not grow with the run.
        self.record = record
        self.rejections: list[str] = []
        self.delay: float = 0.0
        self.chunk_delay: float = 0.0
        # Called with each streamed chunk right after it is written (benchmarks time them).
        self.on_chunk_sent: Callable[[JSON], None] | None = None
        self.responder = responder
        self.models = tuple(models)
        self.api_key = api_key
        self.chunk_size = chunk_size
        self._script: deque[Step] = deque(_as_step(item) for item in script)
        self._faults: deque[_Fault] = deque()
        self._delays: deque[float] = deque()
        self._previous_prompt = ""
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

    @property
    def base_url(self) -> str:
        """The `/v1` URL to give the SDK; only after start()."""
        if self._base_url is None:
            raise RuntimeError("FakeLLM is not started")
        return self._base_url

    # scripting ---------------------------------------------------------------

    def add(self, *steps: Step | ToolCall) -> None:
        """Append steps to the script (a bare ToolCall is a step with that one call)."""
        self._script.extend(_as_step(step) for step in steps)

    @property
    def pending(self) -> int:
        """Script steps not served yet."""
        return len(self._script)

    def fail_next(self, status: int, times: int = 1, retry_after: float | None = None) -> None:
        """Answer the next `times` requests with `status` and an OpenAI error body."""
        if status < 400:
            raise ValueError(f"fail_next needs an error status, got {status}")
        self._faults.extend(_Fault(status, retry_after) for _ in range(times))

    def delay_next(self, seconds: float, times: int = 1) -> None:
        """Wait `seconds` (on top of `delay`) before answering only the next `times` requests."""
        self._delays.extend(seconds for _ in range(times))

    # handlers ----------------------------------------------------------------

    async def _models(self, request: web.Request) -> web.Response:
        data = [
            {"id": m, "object": "model", "created": 0, "owned_by": "citas-fake"}
            for m in self.models
        ]
        return web.json_response({"object": "list", "data": data})

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await self._read_body(request)
        if isinstance(body, web.Response):
            return body
        if self.record:
            self.requests.append(body)
        extra_delay = self._delays.popleft() if self._delays else 0.0
        if self.delay or extra_delay:
            await asyncio.sleep(self.delay + extra_delay)
        if self._faults:
            return self._fault(self._faults.popleft())
        try:
            validate_request(body)
        except InvalidRequestError as error:
            return self._reject(error.message, error.param, error.code)
        if self.system_message_first_only and _late_system_message(body["messages"]):
            return self._template_refusal()
        try:
            step = self._next_step(body)
        except Exception as error:  # a bug in a responder must reach the test, not hang it
            self.rejections.append(f"responder failed: {error!r}")
            return web.json_response(_fault_body(500), status=500)
        if step is None:
            return self._reject(_EXHAUSTED, None, None)
        return await self._answer(request, body, step)

    async def _read_body(self, request: web.Request) -> JSON | web.Response:
        if (
            self.api_key is not None
            and request.headers.get("Authorization") != f"Bearer {self.api_key}"
        ):
            body = _error_body(
                "Incorrect API key provided.", "invalid_request_error", None, "invalid_api_key"
            )
            return web.json_response(body, status=401)
        try:
            parsed = await request.json()
        except ValueError:
            parsed = None
        if not isinstance(parsed, dict):
            return self._reject("We could not parse the JSON body of your request.", None, None)
        return parsed

    def _reject(self, message: str, param: str | None, code: str | None) -> web.Response:
        self.rejections.append(message)
        body = _error_body(message, "invalid_request_error", param, code)
        return web.json_response(body, status=400)

    def _template_refusal(self) -> web.Response:
        # llama.cpp's own error shape: a numeric `code`, no `param`.
        self.rejections.append(_SYSTEM_NOT_FIRST)
        body = {
            "error": {
                "code": 400,
                "message": _SYSTEM_NOT_FIRST,
                "type": "invalid_request_error",
            }
        }
        return web.json_response(body, status=400)

    def _fault(self, fault: _Fault) -> web.Response:
        headers = {} if fault.retry_after is None else {"Retry-After": f"{fault.retry_after:g}"}
        return web.json_response(_fault_body(fault.status), status=fault.status, headers=headers)

    def _next_step(self, body: JSON) -> Step | None:
        if self._script:
            return self._script.popleft()
        if self.responder is not None:
            return _as_step(self.responder(body))
        return None

    def _usage(self, body: JSON, step: Step) -> JSON:
        # Tools come first in the serialized prompt, as providers place them before messages.
        prompt = json.dumps([body.get("tools"), body["messages"]], ensure_ascii=False)
        cached = common_prefix_len(prompt, self._previous_prompt)
        self._previous_prompt = prompt
        prompt_tokens = _tokens(len(prompt))
        completion_tokens = _tokens(_completion_chars(step))
        return {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "prompt_tokens_details": {"cached_tokens": cached // 4},
        }

    async def _answer(self, request: web.Request, body: JSON, step: Step) -> web.StreamResponse:
        meta = _Meta(f"chatcmpl-{secrets.token_hex(12)}", int(time.time()), body["model"])
        calls = _wire_calls(step)
        usage = self._usage(body, step)
        if not body.get("stream"):
            return web.json_response(_completion(meta, step, calls, usage))
        options = body.get("stream_options") or {}
        with_usage = usage if options.get("include_usage") else None
        chunks = _stream_chunks(meta, step, calls, with_usage, self.chunk_size)
        return await self._stream(request, chunks)

    async def _stream(self, request: web.Request, chunks: Iterable[JSON]) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        for chunk in chunks:
            await response.write(f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n".encode())
            if self.on_chunk_sent is not None:
                self.on_chunk_sent(chunk)
            if self.chunk_delay:
                await asyncio.sleep(self.chunk_delay)
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response
