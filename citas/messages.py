"""Chat messages in the Chat Completions wire shape, which is also how history is kept.

History is saved in the shape the model is sent, so each request is the stored turns as they are
(no conversion per call, and a byte-stable prompt prefix). TypedDicts type it at no run-time cost.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, NotRequired, TypedDict


class FunctionCall(TypedDict):
    name: str
    arguments: str  # JSON text, as the model wrote it (it may be malformed)


class ToolCallItem(TypedDict):
    id: str
    type: Literal["function"]
    function: FunctionCall


class SystemMessage(TypedDict):
    role: Literal["system"]
    content: str


class UserMessage(TypedDict):
    role: Literal["user"]
    content: str


class AssistantMessage(TypedDict):
    role: Literal["assistant"]
    content: str | None  # None only beside tool calls
    tool_calls: NotRequired[list[ToolCallItem]]


class ToolMessage(TypedDict):
    role: Literal["tool"]
    tool_call_id: str
    content: str


Message = SystemMessage | UserMessage | AssistantMessage | ToolMessage


@dataclass(frozen=True, slots=True)
class ToolCallRequest:
    """A tool call the model asked for."""

    id: str
    name: str
    arguments: str


def system_message(text: str) -> SystemMessage:
    return {"role": "system", "content": text}


def user_message(text: str) -> UserMessage:
    return {"role": "user", "content": text}


def assistant_message(text: str | None, calls: Sequence[ToolCallRequest] = ()) -> AssistantMessage:
    message: AssistantMessage = {"role": "assistant", "content": text}
    if calls:
        message["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in calls
        ]
    return message


def tool_message(call_id: str, content: str) -> ToolMessage:
    return {"role": "tool", "tool_call_id": call_id, "content": content}
