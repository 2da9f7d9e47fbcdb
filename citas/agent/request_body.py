"""Chat Completions request bodies as bytes, each message serialized once.

A conversation's requests repeat themselves: every model call sends the system prompt, the whole
history and the tool schemas again, and only the end is new. Serializing all of it on each call
made a turn's CPU grow with the conversation; here each message (and each tool list) is turned
into JSON once and its bytes are reused by every later request that carries the same object, so
a call costs what is new plus a join.

The cache is keyed by object identity, which is sound because of two facts of this codebase:
- a message is never changed once made (history only grows: turns are appended whole, and
  the store hands back the same objects, or new ones after a reload, which are simply new
  entries);
- the cache holds a reference to every object it keys, so an id cannot be reused by another
  object while its entry lives.
It is bounded (oldest entries go first); an evicted message is serialized again when next sent.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

from citas.agent.model import ToolSchema
from citas.messages import Message

# The histories of about a hundred conversations in flight (60 messages at most each). An entry
# holds its message alive (about 1 KiB with its bytes) after the store lets go of it, so this
# also bounds what the cache adds to memory (under 10 MiB); past it, a message evicted is only
# serialized again.
DEFAULT_MAX_ENTRIES = 8192


def _dumps(value: object) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


class RequestEncoder:
    """Builds `{...fields, "messages": [...], "tools": [...]}` as bytes (see the module doc)."""

    def __init__(self, max_entries: int = DEFAULT_MAX_ENTRIES) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.max_entries = max_entries
        # id(object) → (object, its JSON), oldest first. An OrderedDict, not a dict: a dict
        # whose oldest keys keep going makes `next(iter(d))` scan their empty slots (4 µs an
        # eviction at this size, against 0.25). Not an LRU: lookups are the whole cost of a hit.
        self._encoded: OrderedDict[int, tuple[object, bytes]] = OrderedDict()

    def body(
        self, fields: Mapping[str, Any], messages: Sequence[Message], tools: Sequence[ToolSchema]
    ) -> bytes:
        """The request: `fields` (model, stream, limits: small, serialized on each call), then
        the messages and, when there are any, the tools (the API refuses an empty `tools`)."""
        head = _dumps(dict(fields))[:-1]  # without its closing brace
        parts = [head, b"," if fields else b"", b'"messages":[']
        parts.append(b",".join([self._encode(message) for message in messages]))
        parts.append(b"]")
        if tools:
            parts += [b',"tools":', self._encode(tools)]
        parts.append(b"}")
        return b"".join(parts)

    def __len__(self) -> int:
        return len(self._encoded)

    def _encode(self, value: Message | Sequence[ToolSchema]) -> bytes:
        entry = self._encoded.get(id(value))
        if entry is not None and entry[0] is value:
            return entry[1]
        encoded = _dumps(value)
        if len(self._encoded) >= self.max_entries:
            self._encoded.popitem(last=False)
        self._encoded[id(value)] = (value, encoded)
        return encoded
