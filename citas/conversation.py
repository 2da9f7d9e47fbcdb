"""One conversation's saved state: the history as whole turns, and its booking ledger."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from citas.customer_words import CustomerWords
from citas.ledger import BookingLedger
from citas.messages import Message
from citas.tokens import estimate_tokens

SCHEMA_VERSION = 1


@dataclass(slots=True)
class Conversation:
    """History is a list of turns; each turn is a list of messages that is never split, so an
    assistant `tool_calls` message and its tool results always stay together."""

    turns: list[list[Message]] = field(default_factory=list)
    ledger: BookingLedger = field(default_factory=BookingLedger)
    customer: CustomerWords = field(default_factory=CustomerWords)
    """What the customer wrote, kept when old turns are trimmed (see `citas.customer_words`)."""
    paused_until: float | None = None
    """Epoch seconds until which a person has the conversation (`request_human`); None: not."""
    handoff_reason: str | None = None

    def messages(self) -> list[Message]:
        return [message for turn in self.turns for message in turn]

    def last_reply(self) -> str | None:
        """The text the customer got at the end of the latest answered turn, if any."""
        for turn in reversed(self.turns):
            last = turn[-1]
            if last["role"] == "assistant" and not last.get("tool_calls"):
                return last["content"]
            if len(turn) > 1:
                return None  # a turn that ended otherwise (an interrupted one)
        return None

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

    def estimated_tokens(self) -> int:
        """The history's estimated tokens (`citas.tokens.estimate_tokens`)."""
        return estimate_tokens(self.messages())

    def trim_to_tokens(self, budget: int, *, keep: int = 1) -> int:
        """Drop the oldest whole turns once the history's estimated tokens pass `budget`, down to
        about two thirds of it, as `trim` does by messages (so most turns keep the previous
        request as their prefix, for providers' prompt caches). The latest `keep` turns stay
        even if they alone are over budget. Returns how many turns went."""
        costs = [estimate_tokens(turn) for turn in self.turns]
        total = sum(costs)
        if total <= budget:
            return 0
        return self._drop_oldest(costs, total, budget * 2 // 3, keep)

    def shrink_after_context_error(self) -> bool:
        """After the endpoint refused a request as longer than its context (`ContextTooLong`):
        drop the oldest whole turns until the history's estimate is at most half what it was,
        the latest turn too if need be (the turn in progress is not part of the history).

        Half of the history actually sent, not of the budget: when the budget is set above
        what the endpoint holds, halving the budget might drop nothing. True when any turn
        went, so a retry asks something shorter; False when there was nothing to drop."""
        costs = [estimate_tokens(turn) for turn in self.turns]
        total = sum(costs)
        return self._drop_oldest(costs, total, total // 2, keep=0) > 0

    def _drop_oldest(self, costs: list[int], total: int, target: int, keep: int) -> int:
        dropped = 0
        while len(costs) - dropped > keep and total > target:
            total -= costs[dropped]
            dropped += 1
        del self.turns[:dropped]  # in place, as `trim`: `copy()` gave this one its own list
        return dropped

    def copy(self) -> Conversation:
        """A copy whose lists can change without touching this one (saved turns never change)."""
        return Conversation(
            list(self.turns),
            self.ledger.copy(),
            self.customer.copy(),
            self.paused_until,
            self.handoff_reason,
        )

    def is_paused(self, now: float) -> bool:
        """Whether a person has this conversation (handed off, not resumed nor expired)."""
        return self.paused_until is not None and now < self.paused_until

    def pause(self, reason: str, until: float) -> None:
        self.paused_until, self.handoff_reason = until, reason

    def resume(self) -> None:
        self.paused_until = self.handoff_reason = None

    def to_dict(self) -> dict[str, Any]:
        ledger = self.ledger
        return {
            "v": SCHEMA_VERSION,
            "turns": self.turns,
            "verified_slots": ledger.verified_slots,
            "bookings": ledger.bookings,
            "unsettled": ledger.unsettled,
            "proposals": ledger.proposals,
            "awaiting": ledger.awaiting,
            "wanted": ledger.wanted,
            "customer": self.customer.to_dict(),
            "paused_until": self.paused_until,
            "handoff_reason": self.handoff_reason,
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
            awaiting=data.get("awaiting"),
            wanted=data.get("wanted"),
        )
        # Keys added after v1 shipped are optional, so conversations saved earlier still load.
        customer = CustomerWords.from_dict(data.get("customer"))
        paused_until = data.get("paused_until")
        return cls(
            turns=list(data.get("turns", [])),
            ledger=ledger,
            customer=customer,
            paused_until=float(paused_until) if paused_until is not None else None,
            handoff_reason=data.get("handoff_reason"),
        )
