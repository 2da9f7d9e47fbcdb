"""The `SessionStore` protocol: what the agent needs from wherever conversations live."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Protocol

from citas.conversation import Conversation
from citas.domain import ConversationKey


@dataclass(frozen=True, slots=True)
class BurstPlace:
    """Where `SessionStore.join_burst` left a message."""

    entry: dict[str, Any]
    """The message's entry in the burst (empty when answered already)."""
    joined: bool = False
    """This call added it (not a redelivery of a message already waiting)."""
    earlier_reply: dict[str, Any] | None = None
    """The reply already given to the message id: nothing joined."""


class HeldTurn(Protocol):
    """A conversation held for one turn (`SessionStore.turn`), with what the turn reads first."""

    conversation: Conversation
    """The saved conversation, or an empty one; the turn may mutate it."""
    earlier_reply: dict[str, Any] | None
    """The reply already given to this turn's message id: a redelivery, answered with it."""
    burst: list[dict[str, Any]]
    """The messages waiting in the conversation's burst (only when asked for)."""

    async def finish(
        self,
        *,
        conversation: Conversation | None = None,
        reply: dict[str, Any] | None = None,
        answered: int = 0,
    ) -> None:
        """End the turn in one atomic write: save `conversation` (if given), remember `reply`
        for the message id (if given), drop the `answered` oldest burst messages, and let the
        conversation go. Leaving the `turn` block without it writes nothing."""
        ...


class SessionStore(Protocol):
    """Every method may raise `StoreUnavailable` when a shared store cannot be reached."""

    def turn(
        self, key: ConversationKey, message_id: str | None, *, burst: bool = False
    ) -> AbstractAsyncContextManager[HeldTurn]:
        """Hold the conversation for one turn (as `lock`) and read, with the same request, the
        reply already given to `message_id`, the conversation and (`burst`) the waiting burst.
        For a message answered already, `earlier_reply` is all the turn gets (the Redis store
        does not even take the lock: that turn has ended). Raises `Overloaded` like `lock`."""
        ...

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

    async def join_burst(
        self, key: ConversationKey, message_id: str | None, entry: dict[str, Any]
    ) -> BurstPlace:
        """Add a message to the conversation's burst (`CITAS_COALESCE_MS`), in arrival order,
        unless `message_id` was answered already (`earlier_reply`) or a redelivery of it waits
        there already (that entry keeps its place and is returned, `joined` False)."""
        ...

    async def ping(self) -> bool: ...

    async def close(self) -> None: ...
