"""The Chat Completions wire: message shapes, the SDK call, and its errors → `LLMUnavailable`."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import openai
import structlog
from openai import AsyncOpenAI
from openai.types.chat import ChatCompletion

from citas.conversation import Message
from citas.errors import LLMUnavailable
from citas.metrics import LLM_CALLS, LLM_SECONDS, LLM_TOKENS

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
    """Calls the model with the tools and returns its text or tool calls."""

    def __init__(self, client: AsyncOpenAI, model: str) -> None:
        self.client = client
        self.model = model

    async def complete(
        self,
        messages: Sequence[Message],
        tools: Sequence[dict[str, Any]],
        *,
        timeout: float,
        on_text: TextSink | None = None,
    ) -> ModelReply:
        start = time.perf_counter()
        outcome = "ok"
        try:
            # The SDK's low-level `post` (same client: auth, retries, timeout, error types,
            # response model) instead of `chat.completions.create`, which re-walks every message
            # of every request to apply typed-param transforms: none applies to the wire-shaped
            # dicts citas keeps (tests/test_llm_wire.py checks the walk is the identity), and
            # with a 10-turn history the walk alone cost more CPU than the rest of the turn.
            completion = await self.client.post(
                "/chat/completions",
                cast_to=ChatCompletion,
                body={"model": self.model, "messages": messages, "tools": tools},
                options={"timeout": timeout, "security": {"bearer_auth": True}},
            )
        except openai.APIError as exc:
            outcome = _outcome(exc)
            raise LLMUnavailable(f"{outcome}: {exc}") from exc
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
            )
        _count_tokens(completion.usage)
        if not completion.choices:
            raise LLMUnavailable("empty_choices")
        message = completion.choices[0].message
        calls = tuple(
            ToolCallRequest(c.id, c.function.name, c.function.arguments or "")
            for c in message.tool_calls or ()
            if c.type == "function"
        )
        if message.content and on_text is not None and not calls:
            await on_text(message.content)
        return ModelReply(message.content, calls)


def _outcome(exc: openai.APIError) -> str:
    if isinstance(exc, openai.APITimeoutError):
        return "timeout"
    if isinstance(exc, openai.APIConnectionError):
        return "connection_error"
    if isinstance(exc, openai.RateLimitError):
        return "rate_limited"
    if isinstance(exc, openai.APIStatusError):
        return f"http_{exc.status_code}"
    return "error"


def _count_tokens(usage: Any) -> None:
    if usage is None:
        return
    LLM_TOKENS.labels(kind="prompt").inc(usage.prompt_tokens or 0)
    LLM_TOKENS.labels(kind="completion").inc(usage.completion_tokens or 0)
    details = getattr(usage, "prompt_tokens_details", None)
    cached = getattr(details, "cached_tokens", None) or 0
    LLM_TOKENS.labels(kind="cached").inc(cached)
