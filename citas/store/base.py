"""The `SessionStore` protocol: what the agent needs from wherever conversations live."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

from citas.conversation import Conversation
from citas.domain import ConversationKey


class SessionStore(Protocol):
    """Every method may raise `StoreUnavailable` when a shared store cannot be reached."""

    async def load(self, key: ConversationKey) -> Conversation:
        """The saved conversation, or an empty one. The caller may mutate what it gets."""
        ...

    async def save(self, key: ConversationKey, conversation: Conversation) -> None:
        """Replace the conversation in one atomic write and refresh its time to live."""
        ...

    def lock(self, key: ConversationKey) -> AbstractAsyncContextManager[None]:
        """Hold the conversation: turns of one conversation run one at a time, in order.
        Raises `Overloaded` when it cannot be had within the store's bounded wait."""
        ...

    async def recall_reply(self, key: ConversationKey, message_id: str) -> dict[str, Any] | None:
        """The reply already given to this channel message id, if any (redelivery dedupe)."""
        ...

    async def remember_reply(
        self, key: ConversationKey, message_id: str, reply: dict[str, Any]
    ) -> None: ...

    async def remember_intent(
        self, key: ConversationKey, intent_key: str, intent: dict[str, Any]
    ) -> None:
        """Durably note a booking about to be sent (its idempotency key, slot, customer) before
        `CREAR_EVENTO` goes out: a process that dies before saving the conversation leaves it,
        so a retry elsewhere asks the backend by the same key instead of calling the slot
        taken. Kept as long as a conversation."""
        ...

    async def recall_intent(self, key: ConversationKey, intent_key: str) -> dict[str, Any] | None:
        """The booking intent noted under `intent_key` for this conversation, if any."""
        ...

    async def add_to_burst(self, key: ConversationKey, entry: dict[str, Any]) -> None:
        """Append a message waiting to be answered with the others of its burst
        (`CITAS_COALESCE_MS`), in arrival order."""
        ...

    async def burst(self, key: ConversationKey) -> list[dict[str, Any]]:
        """The messages waiting in the conversation's burst, oldest first."""
        ...

    async def take_burst(self, key: ConversationKey, count: int) -> None:
        """Remove the `count` oldest waiting messages: a turn has answered them."""
        ...

    async def ping(self) -> bool: ...

    async def close(self) -> None: ...
