"""The one source of "now": the system clock in production, a frozen one in tests and replay."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]
"""Returns the current instant as an aware datetime."""


def system_clock() -> datetime:
    return datetime.now(UTC)


def frozen_clock(instant: datetime) -> Clock:
    """A clock that always answers `instant` (which must be aware)."""
    if instant.tzinfo is None:
        raise ValueError("a frozen clock needs an aware datetime")
    return lambda: instant
