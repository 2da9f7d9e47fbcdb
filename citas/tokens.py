"""A cheap, model-independent estimate of how many tokens chat messages take.

The history budget (`CITAS_HISTORY_MAX_TOKENS`) needs a stable and slightly pessimistic figure,
not an exact count: each model has its own tokenizer, a local model's is not at hand, and
counting with one would cost more than the rest of a turn. So:

- text: characters / `CHARS_PER_TOKEN` (3.5), rounded up per message. Current BPE tokenizers
  give about 4 characters a token on English prose and fewer on Spanish, digits, dates and JSON
  (tool arguments and results), which is most of what citas sends;
- per message, `MESSAGE_OVERHEAD_TOKENS` (4) for what the chat template wraps it in (role,
  delimiters);
- per tool call, its name and JSON arguments as text, plus `TOOL_CALL_OVERHEAD_TOKENS` (4) for
  its framing; a tool result is its content as text.

Per message, so the estimate of a list is the sum of its parts (trimming subtracts whole turns).
The fake models (`citas.testing`) refuse over-long requests by the same estimate, so tests of
the context limit mean the same thing as the budget.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

CHARS_PER_TOKEN = 3.5
MESSAGE_OVERHEAD_TOKENS = 4
TOOL_CALL_OVERHEAD_TOKENS = 4


def message_tokens(message: Mapping[str, Any]) -> int:
    """The estimate for one message in the Chat Completions shape."""
    chars = _text_chars(message.get("content"))
    calls = message.get("tool_calls") or ()
    for call in calls:
        function = call.get("function") if isinstance(call, Mapping) else None
        if isinstance(function, Mapping):
            chars += len(str(function.get("name") or ""))
            chars += len(str(function.get("arguments") or ""))
    return (
        math.ceil(chars / CHARS_PER_TOKEN)
        + MESSAGE_OVERHEAD_TOKENS
        + TOOL_CALL_OVERHEAD_TOKENS * len(calls)
    )


def estimate_tokens(messages: Iterable[Mapping[str, Any]]) -> int:
    """The estimate for messages: the sum of each one's (see the module's docstring)."""
    return sum(message_tokens(message) for message in messages)


def estimate_request_tokens(
    messages: Iterable[Mapping[str, Any]], tools: Sequence[Mapping[str, Any]] = ()
) -> int:
    """The estimate for a whole request's prompt: its messages and its tool schemas (which
    endpoints put in the prompt too), the schemas counted as their JSON text."""
    schemas = math.ceil(len(json.dumps(list(tools), ensure_ascii=False)) / CHARS_PER_TOKEN)
    return estimate_tokens(messages) + (schemas if tools else 0)


def _text_chars(content: object) -> int:
    if isinstance(content, str):
        return len(content)
    if isinstance(content, list):  # content parts: only their text reaches the model as text
        return sum(
            len(str(part.get("text") or "")) for part in content if isinstance(part, Mapping)
        )
    return 0
