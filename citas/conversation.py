"""One conversation's saved state: the history as whole turns, plus booking bookkeeping."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

Message = dict[str, Any]
"""A Chat Completions message, kept in the wire shape the model is sent."""

SCHEMA_VERSION = 1
_MAX_VERIFIED_SLOTS = 64
_MAX_BOOKINGS = 20


@dataclass
class Conversation:
    """History is a list of turns; each turn is a list of messages that is never split, so an
    assistant `tool_calls` message and its tool results always stay together."""

    turns: list[list[Message]] = field(default_factory=list)
    verified_slots: list[str] = field(default_factory=list)
    bookings: dict[str, dict[str, Any]] = field(default_factory=dict)
    unsettled: list[str] = field(default_factory=list)
    """Idempotency keys of `CREAR_EVENTO` calls whose answer never came (maybe committed)."""

    def messages(self) -> list[Message]:
        return [message for turn in self.turns for message in turn]

    def message_count(self) -> int:
        return sum(len(turn) for turn in self.turns)

    def remember_verified(self, *slot_starts: str) -> None:
        """Record slots shown to the customer as bookable (local starts), keeping the latest."""
        for start in slot_starts:
            if start in self.verified_slots:
                self.verified_slots.remove(start)
            self.verified_slots.append(start)
        del self.verified_slots[:-_MAX_VERIFIED_SLOTS]

    def remember_booking(self, key: str, confirmation: dict[str, Any]) -> None:
        self.bookings[key] = confirmation
        for old in list(self.bookings)[:-_MAX_BOOKINGS]:
            del self.bookings[old]

    def remember_unsettled(self, key: str) -> None:
        if key not in self.unsettled:
            self.unsettled.append(key)
        del self.unsettled[:-_MAX_BOOKINGS]

    def settle(self, key: str) -> None:
        if key in self.unsettled:
            self.unsettled.remove(key)

    def trim(self, max_messages: int) -> None:
        """Drop the oldest whole turns once over `max_messages`, down to about two thirds of it.

        Trimming in chunks keeps the prompt prefix identical between most turns, so provider
        prompt caches keep hitting; the latest turn is always kept whole.
        """
        if self.message_count() <= max_messages:
            return
        target = max_messages * 2 // 3
        while len(self.turns) > 1 and self.message_count() > target:
            self.turns.pop(0)

    def to_dict(self) -> dict[str, Any]:
        return {
            "v": SCHEMA_VERSION,
            "turns": self.turns,
            "verified_slots": self.verified_slots,
            "bookings": self.bookings,
            "unsettled": self.unsettled,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Conversation:
        if data.get("v") != SCHEMA_VERSION:
            raise ValueError(f"unknown conversation schema version {data.get('v')!r}")
        return cls(
            turns=list(data.get("turns", [])),
            verified_slots=list(data.get("verified_slots", [])),
            bookings=dict(data.get("bookings", {})),
            unsettled=list(data.get("unsettled", [])),
        )
