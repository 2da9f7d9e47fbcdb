"""The model seam: what the loop needs from a chat model, whatever serves it.

Implementations: `OpenAIChatModel` (any OpenAI-compatible endpoint, over HTTP) and
`FunctionModel` (a Python function in this process: the sandbox's demo model, tests).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from citas.messages import Message, ToolCallRequest

ToolSchema = dict[str, Any]
"""A tool as the Chat Completions API describes it (`{"type": "function", "function": ...}`)."""

TextSink = Callable[[str], None]
"""Receives the model's answer text (see `ChatModel.complete`)."""

CUT_SHORT = frozenset({"length", "content_filter"})
"""Finish reasons of a reply that stopped before the model ended it: its text is not a whole
answer, so `complete` does not hand it to `on_text` (the caller decides what to do with it)."""


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0  # prompt tokens served from the provider's prompt cache


@dataclass(frozen=True, slots=True)
class ModelReply:
    """Text, tool calls, or both; `usage` when the endpoint reported it.

    `finish_reason` is why the model stopped, as the endpoint said it: `stop` (a whole answer),
    `tool_calls`, `length` (cut at `max_tokens` or the context: the text or the last call's
    arguments are truncated), `content_filter`, ...; None when the model did not say (a
    function model that leaves it unset).
    """

    text: str | None
    tool_calls: tuple[ToolCallRequest, ...] = ()
    usage: Usage | None = None
    finish_reason: str | None = None  # "stop", "length" (cut off), "tool_calls"…, if reported

    @classmethod
    def of(
        cls,
        text: str | None,
        calls: Sequence[ToolCallRequest] = (),
        usage: Usage | None = None,
        finish_reason: str | None = None,
    ) -> ModelReply:
        """A reply the API would accept back as an assistant message: text may be None only
        beside tool calls, and empty text beside tool calls is None."""
        return cls(text or (None if calls else ""), tuple(calls), usage, finish_reason)


class ChatModel(Protocol):
    name: str
    """What logs and people call the model (`gpt-4o-mini`, `demo`)."""

    async def complete(
        self,
        messages: Sequence[Message],
        tools: Sequence[ToolSchema],
        *,
        timeout: float,
        on_text: TextSink | None = None,
    ) -> ModelReply:
        """One model call, within `timeout` seconds, retries included. `on_text` gets the reply's
        whole text once it is known to be an answer (no tool calls came with it, and it was not
        cut short: see `CUT_SHORT`), which may be before the call returns; text that comes with
        tool calls never reaches it.
        Raises `LLMUnavailable` (its `outcome` says why) when no whole reply came, and its
        subclass `ContextTooLong` when the endpoint refused the request as longer than its
        context (shorter history may succeed)."""
        ...
