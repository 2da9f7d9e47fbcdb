"""A conversation's booking ledger: what was verified, booked, or left unanswered.

Only the booking service changes it (`citas/services/booking.py`): the tools and the loop read it
through that service, so the rules that keep a booking exactly-once live in one place.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import time
from typing import Any

_MAX_VERIFIED_SLOTS = 64
_MAX_BOOKINGS = 20


@dataclass(slots=True)
class BookingLedger:
    verified_slots: list[str] = field(default_factory=list)
    """Slot starts (local `YYYY-MM-DD HH:MM:SS`) shown to the customer as bookable, latest last."""
    bookings: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Bookings made, by idempotency key (the confirmation as saved)."""
    unsettled: list[str] = field(default_factory=list)
    """Idempotency keys of `CREAR_EVENTO` calls whose answer never came (maybe committed)."""
    proposals: dict[str, str] = field(default_factory=dict)
    """Bookings put to the customer for confirmation: idempotency key → the proposing turn."""
    awaiting: dict[str, Any] | None = None
    """The latest booking put to the customer and not made yet: its key, slot start (local
    `YYYY-MM-DD HH:MM:SS`), name, email and service; told to the model each turn until made."""
    wanted: dict[str, Any] | None = None
    """The slot the customer last asked for by its time and found free (its start, local
    `YYYY-MM-DD HH:MM:SS`, and service), until it is proposed or booked or another day or time
    is asked: what their name and email are for when they send them (`follow_through`)."""

    def is_verified(self, slot_start: str) -> bool:
        return slot_start in self.verified_slots

    def shown_at(self, at: time) -> bool:
        """Whether a slot shown as bookable starts at `at`, on any day."""
        clock = at.strftime("%H:%M:%S")
        return any(start[11:] == clock for start in self.verified_slots)

    def mark_verified(self, *slot_starts: str) -> None:
        """Record slots shown as bookable, keeping the latest ones."""
        for start in slot_starts:
            if start in self.verified_slots:
                self.verified_slots.remove(start)
            self.verified_slots.append(start)
        del self.verified_slots[:-_MAX_VERIFIED_SLOTS]

    def booking(self, key: str) -> dict[str, Any] | None:
        return self.bookings.get(key)

    def booking_keys(self) -> frozenset[str]:
        return frozenset(self.bookings)

    def record_booking(self, key: str, confirmation: dict[str, Any]) -> None:
        self.bookings[key] = confirmation
        self.wanted = None
        if self.awaiting is not None and self.awaiting.get("key") == key:
            self.awaiting = None
        for old in list(self.bookings)[:-_MAX_BOOKINGS]:
            del self.bookings[old]

    def is_unsettled(self, key: str) -> bool:
        return key in self.unsettled

    def mark_unsettled(self, key: str) -> None:
        if key not in self.unsettled:
            self.unsettled.append(key)
        del self.unsettled[:-_MAX_BOOKINGS]

    def settle(self, key: str) -> None:
        if key in self.unsettled:
            self.unsettled.remove(key)

    def propose(self, key: str, turn_id: str, awaiting: dict[str, Any] | None = None) -> None:
        """Record that this booking was put to the customer in turn `turn_id`; `awaiting`
        describes it (see `awaiting`)."""
        if awaiting is not None:
            self.awaiting = {"key": key, **awaiting}
        self.wanted = None
        self.proposals.pop(key, None)
        self.proposals[key] = turn_id
        for old in list(self.proposals)[:-_MAX_BOOKINGS]:
            del self.proposals[old]

    def proposed_before(self, key: str, turn_id: str) -> bool:
        """Whether this booking was put to the customer in an earlier turn than `turn_id`."""
        proposed_in = self.proposals.get(key)
        return proposed_in is not None and proposed_in != turn_id

    def was_proposed(self, key: str) -> bool:
        """Whether this booking was ever put to the customer (in any turn)."""
        return key in self.proposals

    def copy(self) -> BookingLedger:
        return BookingLedger(
            list(self.verified_slots),
            dict(self.bookings),
            list(self.unsettled),
            dict(self.proposals),
            dict(self.awaiting) if self.awaiting is not None else None,
            dict(self.wanted) if self.wanted is not None else None,
        )
