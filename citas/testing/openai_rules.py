"""The Chat Completions API's request rules, as the real API enforces them with an HTTP 400.

Every fake model (the loopback server, the in-process scripted model) checks each request with
`validate_request`, so a history the real API would refuse fails loudly in tests.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["InvalidRequestError", "validate_request"]

_ROLES = ("system", "developer", "user", "assistant", "tool", "function")
_TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_TOOL_CHOICE_MODES = ("none", "auto", "required")


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
    _check_sampling(body)


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


def _check_sampling(body: Mapping[str, Any]) -> None:
    max_tokens = body.get("max_tokens")
    if max_tokens is not None:
        if not isinstance(max_tokens, int) or isinstance(max_tokens, bool):
            raise InvalidRequestError(
                "Invalid type for 'max_tokens': expected an integer.", "max_tokens", "invalid_type"
            )
        if max_tokens < 1:
            raise InvalidRequestError(
                "Invalid 'max_tokens': integer below minimum value. Expected a value >= 1, but "
                f"got {max_tokens} instead.",
                "max_tokens",
                "integer_below_min_value",
            )
    temperature = body.get("temperature")
    if temperature is not None:
        if not isinstance(temperature, int | float) or isinstance(temperature, bool):
            raise InvalidRequestError(
                "Invalid type for 'temperature': expected a decimal.", "temperature", "invalid_type"
            )
        if not 0 <= temperature <= 2:
            raise InvalidRequestError(
                "Invalid 'temperature': decimal out of range. Expected a value between 0 and 2, "
                f"but got {temperature} instead.",
                "temperature",
                "invalid_value",
            )


def _nonempty_str(value: object) -> bool:
    return isinstance(value, str) and bool(value)
