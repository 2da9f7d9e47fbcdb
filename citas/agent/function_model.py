"""A chat model that is a Python function in this process, like pydantic-ai's `FunctionModel`:
the sandbox's demo model runs through it, and so do the tests of the loop and the tools."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Sequence

from citas.agent.model import CUT_SHORT, ModelReply, TextSink, ToolSchema
from citas.errors import LLMUnavailable
from citas.messages import Message

ModelFunction = Callable[
    [Sequence[Message], Sequence[ToolSchema]], ModelReply | Awaitable[ModelReply]
]
"""(messages, tools) → reply, sync or async; it may raise `LLMUnavailable` (or `ContextTooLong`)
like an endpoint. The reply's `finish_reason` is passed on as it is (None when left unset)."""


class FunctionModel:
    def __init__(self, function: ModelFunction, *, name: str = "function") -> None:
        self.function = function
        self.name = name

    async def complete(
        self,
        messages: Sequence[Message],
        tools: Sequence[ToolSchema],
        *,
        timeout: float,
        on_text: TextSink | None = None,
    ) -> ModelReply:
        try:
            async with asyncio.timeout(timeout):
                answer = self.function(messages, tools)
                if inspect.isawaitable(answer):
                    answer = await answer
        except TimeoutError:
            raise LLMUnavailable(
                "deadline: the model function ran out of time", "deadline"
            ) from None
        reply = ModelReply.of(answer.text, answer.tool_calls, answer.usage, answer.finish_reason)
        if (
            on_text is not None
            and reply.text
            and not reply.tool_calls
            and reply.finish_reason not in CUT_SHORT
        ):
            on_text(reply.text)
        return reply
