"""A per-operation circuit breaker: a dead dependency is answered at once instead of awaited."""

from __future__ import annotations

import enum
import time
from collections.abc import Callable

import structlog

from citas.metrics import CIRCUIT_STATE

log = structlog.get_logger("citas.circuit")


class CircuitState(enum.IntEnum):
    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


class CircuitBreaker:
    """Closed → open after `failure_threshold` consecutive failures → one half-open probe after
    `reset_seconds` → closed on its success, open again on its failure.

    Every call that `allow()` lets through must end in exactly one of `record_success()`,
    `record_failure()` or `release()` (the call was abandoned, e.g. cancelled).
    """

    def __init__(
        self,
        name: str,
        failure_threshold: int = 5,
        reset_seconds: float = 30.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.failure_threshold = failure_threshold
        self.reset_seconds = reset_seconds
        self._monotonic = monotonic
        self._failures = 0
        self._opened_at = 0.0
        self._probing = False
        self._state = CircuitState.CLOSED
        CIRCUIT_STATE.labels(operation=name).set(CircuitState.CLOSED)

    @property
    def state(self) -> CircuitState:
        return self._state

    def allow(self) -> bool:
        """Whether a call may go out now; in half-open state only one probe at a time."""
        if self._state is CircuitState.OPEN:
            if self._monotonic() - self._opened_at < self.reset_seconds:
                return False
            self._set(CircuitState.HALF_OPEN)
        if self._state is CircuitState.HALF_OPEN:
            if self._probing:
                return False
            self._probing = True
        return True

    def record_success(self) -> None:
        self._failures = 0
        self._probing = False
        self._set(CircuitState.CLOSED)

    def record_failure(self) -> None:
        self._probing = False
        self._failures += 1
        if self._state is CircuitState.HALF_OPEN or self._failures >= self.failure_threshold:
            self._opened_at = self._monotonic()
            self._set(CircuitState.OPEN)

    def release(self) -> None:
        """The call let through ended with no verdict: free the probe slot, change nothing else.

        Without it a cancelled half-open probe would keep the circuit refusing every call.
        """
        self._probing = False

    def _set(self, state: CircuitState) -> None:
        if state is self._state:
            return
        previous, self._state = self._state, state
        CIRCUIT_STATE.labels(operation=self.name).set(state)
        # A transition is rare and worth a line: it is when a dependency died or came back.
        emit = log.warning if state is CircuitState.OPEN else log.info
        emit(
            "circuit_" + state.name.lower(),
            operation=self.name,
            previous=previous.name.lower(),
            failures=self._failures,
            reset_seconds=self.reset_seconds,
        )
