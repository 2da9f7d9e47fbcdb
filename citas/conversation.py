"""One conversation's saved state: the history as whole turns, and its booking ledger."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from citas.customer_words import CustomerWords
from citas.ledger import BookingLedger
from citas.messages import Message

SCHEMA_VERSION = 1


@dataclass(slots=True)
class Conversation:
    """History is a list of turns; each turn is a list of messages that is never split, so an
    assistant `tool_calls` message and its tool results always stay together."""

    turns: list[list[Message]] = field(default_factory=list)
    ledger: BookingLedger = field(default_factory=BookingLedger)
    customer: CustomerWords = field(default_factory=CustomerWords)
    """What the customer wrote, kept when old turns are trimmed (see `citas.customer_words`)."""

    def messages(self) -> list[Message]:
        return [message for turn in self.turns for message in turn]

    def message_count(self) -> int:
        return sum(len(turn) for turn in self.turns)

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

    def copy(self) -> Conversation:
        """A copy whose lists can change without touching this one (saved turns never change)."""
        return Conversation(list(self.turns), self.ledger.copy(), self.customer.copy())

    def to_dict(self) -> dict[str, Any]:
        ledger = self.ledger
        return {
            "v": SCHEMA_VERSION,
            "turns": self.turns,
            "verified_slots": ledger.verified_slots,
            "bookings": ledger.bookings,
            "unsettled": ledger.unsettled,
            "proposals": ledger.proposals,
            "customer": self.customer.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Conversation:
        if data.get("v") != SCHEMA_VERSION:
            raise ValueError(f"unknown conversation schema version {data.get('v')!r}")
        ledger = BookingLedger(
            verified_slots=list(data.get("verified_slots", [])),
            bookings=dict(data.get("bookings", {})),
            unsettled=list(data.get("unsettled", [])),
            proposals=dict(data.get("proposals", {})),
        )
        # Keys added after v1 shipped are optional, so conversations saved earlier still load.
        customer = CustomerWords.from_dict(data.get("customer"))
        return cls(turns=list(data.get("turns", [])), ledger=ledger, customer=customer)
