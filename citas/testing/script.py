"""What a fake model says: scripted steps or a responder, faults and delays, and the requests it
was sent. One `ModelScript` drives either transport: `FakeLLM` (a loopback OpenAI-compatible
server, for the wire) or `ScriptedModel` (in-process, for the loop and the tools).

Every request is checked against the real API's rules first (`openai_rules.validate_request`);
a request the API would refuse is answered as the API would answer it, and kept in `rejections`.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from citas.testing.openai_rules import InvalidRequestError, validate_request
from citas.tokens import estimate_request_tokens

__all__ = [
    "ModelScript",
    "Refusal",
    "Responder",
    "Step",
    "ToolCall",
    "call",
    "common_prefix_len",
    "reply",
    "tool_calls",
]

JSON = dict[str, Any]

EXHAUSTED = "fake LLM script exhausted"
# The reason line of llama.cpp's answer when the chat template raises on a late system message.
SYSTEM_NOT_FIRST = (
    "Unable to generate parser for this template.\nError: Jinja Exception: System message must be "
    "at the beginning."
)


@dataclass(frozen=True, slots=True)
class ToolCall:
    """One tool call the fake model makes; `arguments` is the raw JSON string sent on the wire.
    Without an `id`, each time it is served it gets a fresh one, as real models do."""

    name: str
    arguments: str
    id: str | None = None


@dataclass(frozen=True, slots=True)
class Step:
    """One assistant answer: text, tool calls, or both (text first, as real models stream it).

    `finish_reason` is what the model says on its last chunk: unset, `tool_calls` when it asks for
    tools, else `stop`; `length` (or any other word) is sent as given, after the same text and
    calls, as a model cut short by `max_tokens` sends what it had written."""

    text: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    finish_reason: str | None = None

    def __post_init__(self) -> None:
        if self.finish_reason is None:
            # Filled in, so `Step("a")` and `Step("a", finish_reason="stop")` are the same step.
            object.__setattr__(self, "finish_reason", "tool_calls" if self.tool_calls else "stop")


Responder = Callable[[JSON], Step | ToolCall]
"""Computes a step from the request body (`model`, `messages`, `tools`, ...)."""


def reply(text: str, finish_reason: str | None = None) -> Step:
    """A final text answer (`finish_reason="length"`: one cut short at `max_tokens`)."""
    return Step(text=text, finish_reason=finish_reason)


def call(name: str, arguments: Mapping[str, Any] | str, id: str | None = None) -> ToolCall:
    """A tool call; a `str` is sent verbatim so tests can feed malformed JSON to the agent."""
    raw = arguments if isinstance(arguments, str) else json.dumps(arguments, ensure_ascii=False)
    return ToolCall(name=name, arguments=raw, id=id)


def tool_calls(*calls: ToolCall, text: str | None = None, finish_reason: str | None = None) -> Step:
    """One assistant message carrying several tool calls (and optional text)."""
    if not calls:
        raise ValueError("tool_calls() needs at least one call")
    return Step(text=text, tool_calls=calls, finish_reason=finish_reason)


def as_step(item: Step | ToolCall) -> Step:
    return Step(tool_calls=(item,)) if isinstance(item, ToolCall) else item


class Refusal(Exception):
    """What the endpoint answers instead of a completion: an HTTP status and the API's error
    body (and headers, e.g. `Retry-After`)."""

    def __init__(self, status: int, body: JSON, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(f"HTTP {status}: {self.error_of(body).get('message')}")
        self.status = status
        self.body = body
        self.headers = dict(headers or {})

    @property
    def error(self) -> JSON:
        """The error object, as the SDK reads it: `error`, or the whole body without one (as
        older vLLM answers)."""
        return self.error_of(self.body)

    @staticmethod
    def error_of(body: JSON) -> JSON:
        error = body.get("error", body)
        return error if isinstance(error, dict) else body


@dataclass(slots=True)
class _Fault:
    status: int
    retry_after: float | None
    body: JSON | None = None


class ModelScript:
    """Steps served in order, then the `responder` (if any); faults and delays for the next
    requests; every request kept in `requests` (unless `record` is off, as benchmarks do)."""

    # A typo (or a transport's setting such as `chunk_delay`) must fail, not be silently ignored.
    __slots__ = (
        "_delays",
        "_faults",
        "_previous_prompt",
        "_steps",
        "context_limit_tokens",
        "context_refusals",
        "delay",
        "record",
        "rejections",
        "requests",
        "responder",
        "system_message_first_only",
        "timings",
    )

    def __init__(
        self,
        steps: Iterable[Step | ToolCall] = (),
        *,
        responder: Responder | None = None,
        record: bool = True,
        system_message_first_only: bool = False,
        context_limit_tokens: int | None = None,
        timings: bool = False,
    ) -> None:
        self.requests: list[JSON] = []
        self.rejections: list[str] = []
        self.record = record
        self.responder = responder
        # Like a llama.cpp server whose chat template (Qwen3.x, ...) refuses a system message that
        # is not the first one: HTTP 400 before any step is served.
        self.system_message_first_only = system_message_first_only
        # Like an endpoint whose model has this context: a request whose prompt (estimated as
        # `citas.tokens` estimates the history, tools included) plus its `max_tokens` does not
        # fit is answered with llama.cpp's HTTP 400, before any step is served.
        self.context_limit_tokens = context_limit_tokens
        # The estimated size of each request refused so. Not `rejections`: such a request is
        # well formed, and the loop is expected to shorten its history and ask again.
        self.context_refusals: list[int] = []
        # Like a llama.cpp server: prompt-cache hits reported as `timings.cache_n` on the last
        # chunk (a top-level object), not in `usage.prompt_tokens_details`.
        self.timings = timings
        self.delay: float = 0.0
        self._steps: deque[Step] = deque(as_step(item) for item in steps)
        self._faults: deque[_Fault] = deque()
        self._delays: deque[float] = deque()
        self._previous_prompt = ""

    # scripting ---------------------------------------------------------------

    def add(self, *steps: Step | ToolCall) -> None:
        """Append steps to the script (a bare ToolCall is a step with that one call)."""
        self._steps.extend(as_step(step) for step in steps)

    @property
    def pending(self) -> int:
        """Script steps not served yet."""
        return len(self._steps)

    def fail_next(
        self,
        status: int,
        times: int = 1,
        retry_after: float | None = None,
        body: JSON | None = None,
    ) -> None:
        """Answer the next `times` requests with `status` and an OpenAI error body, or `body`:
        another server's (`{"error": {"message": ...}}`, or older vLLM's `{"message": ...}`)."""
        if status < 400:
            raise ValueError(f"fail_next needs an error status, got {status}")
        if body is not None and "message" not in Refusal.error_of(body):
            raise ValueError("an error body has a message: {'error': {'message': ...}}")
        self._faults.extend(_Fault(status, retry_after, body) for _ in range(times))

    def delay_next(self, seconds: float, times: int = 1) -> None:
        """Wait `seconds` (on top of `delay`) before answering only the next `times` requests."""
        self._delays.extend(seconds for _ in range(times))

    # serving -----------------------------------------------------------------

    async def serve(self, body: JSON) -> Step:
        """The step that answers `body`, after its delay; raises `Refusal` for a fault, a request
        the API would refuse, a failing responder or an exhausted script. A caller cancelled
        during the delay consumes no step."""
        if self.record:
            self.requests.append(body)
        extra = self._delays.popleft() if self._delays else 0.0
        if self.delay or extra:
            await asyncio.sleep(self.delay + extra)
        if self._faults:
            fault = self._faults.popleft()
            headers = {} if fault.retry_after is None else {"Retry-After": f"{fault.retry_after:g}"}
            raise Refusal(fault.status, fault.body or _fault_body(fault.status), headers)
        try:
            validate_request(body)
        except InvalidRequestError as error:
            raise self.reject(error.message, error.param, error.code) from None
        if self.system_message_first_only and _late_system_message(body["messages"]):
            self.rejections.append(SYSTEM_NOT_FIRST)
            raise Refusal(400, _template_refusal())
        if self.context_limit_tokens is not None:
            needed = estimate_request_tokens(body["messages"], body.get("tools") or ())
            # vLLM and OpenAI count the room asked for the answer too.
            needed += body.get("max_tokens") or 0
            if needed > self.context_limit_tokens:
                self.context_refusals.append(needed)
                raise Refusal(400, context_refusal(needed, self.context_limit_tokens))
        try:
            step = self._next_step(body)
        except Exception as error:  # a bug in a responder must reach the test, not hang it
            self.rejections.append(f"responder failed: {error!r}")
            raise Refusal(500, _fault_body(500)) from error
        if step is None:
            raise self.reject(EXHAUSTED, None, None)
        return step

    def reject(self, message: str, param: str | None, code: str | None) -> Refusal:
        """A 400 the real API would answer; kept in `rejections`."""
        self.rejections.append(message)
        return Refusal(400, error_body(message, "invalid_request_error", param, code))

    def usage(self, body: JSON, step: Step) -> JSON:
        """Token counts as an endpoint reports them (see `report`)."""
        return self.report(body, step)[0]

    def report(self, body: JSON, step: Step) -> tuple[JSON, JSON | None]:
        """Token counts as an endpoint reports them: about 4 characters a token, and the prefix
        shared with the previous request as cached (providers' prompt caching). Returns the
        `usage` and, with `timings` on, llama.cpp's `timings` (which then carry the cache hits
        as `cache_n`, instead of `usage.prompt_tokens_details`)."""
        # Tools come first in the serialized prompt, as providers place them before messages.
        prompt = json.dumps([body.get("tools"), body["messages"]], ensure_ascii=False)
        cached = common_prefix_len(prompt, self._previous_prompt) // 4
        self._previous_prompt = prompt
        prompt_tokens = _tokens(len(prompt))
        completion_tokens = _tokens(
            len(step.text or "") + sum(len(c.name) + len(c.arguments) for c in step.tool_calls)
        )
        usage: JSON = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }
        if not self.timings:
            usage["prompt_tokens_details"] = {"cached_tokens": cached}
            return usage, None
        timings = {
            "cache_n": cached,
            "prompt_n": prompt_tokens - cached,
            "prompt_ms": 0.0,
            "predicted_n": completion_tokens,
            "predicted_ms": 0.0,
        }
        return usage, timings

    def _next_step(self, body: JSON) -> Step | None:
        if self._steps:
            return self._steps.popleft()
        if self.responder is not None:
            return as_step(self.responder(body))
        return None


def _late_system_message(messages: list[JSON]) -> bool:
    return any(message.get("role") == "system" for message in messages[1:])


def _template_refusal() -> JSON:
    # llama.cpp's own error shape: a numeric `code`, no `param`.
    return {"error": {"code": 400, "message": SYSTEM_NOT_FIRST, "type": "invalid_request_error"}}


def context_refusal(tokens: int, limit: int) -> JSON:
    """llama.cpp's answer to a request longer than its context (`-c`), HTTP 400."""
    return {
        "error": {
            "code": 400,
            "message": f"request ({tokens} tokens) exceeds the available context size "
            f"({limit} tokens), try increasing it",
            "type": "exceed_context_size_error",
            "n_prompt_tokens": tokens,
            "n_ctx": limit,
        }
    }


def error_body(message: str, kind: str, param: str | None, code: str | None) -> JSON:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def _fault_body(status: int) -> JSON:
    if status == 429:
        return error_body(
            "Rate limit reached (fake LLM). Please try again later.",
            "requests",
            None,
            "rate_limit_exceeded",
        )
    if status == 503:
        return error_body("The server is overloaded or not ready yet.", "server_error", None, None)
    if status >= 500:
        return error_body(
            "The server had an error while processing your request. Sorry about that!",
            "server_error",
            None,
            None,
        )
    return error_body(f"Injected fault (HTTP {status}).", "invalid_request_error", None, None)


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
