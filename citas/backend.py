"""Transport to the platform's PHP backend: one shared session, timeouts, retries, breakers.

Knows nothing of any operation's fields: the service modules own their wire formats.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import aiohttp
import backoff
import structlog

from citas.circuit import CircuitBreaker
from citas.errors import BackendError, BackendRejected
from citas.metrics import BACKEND_CALLS, BACKEND_SECONDS

log = structlog.get_logger("citas.backend")

JSONObject = dict[str, Any]


class _Transient(BackendError):
    """A failure worth retrying: timeout, connection trouble, 5xx or a garbled body."""


@dataclass(frozen=True, slots=True)
class BackendPolicy:
    """`max_retry_seconds` is the budget of one logical call: every attempt and wait in it."""

    connect_timeout: float = 3.0
    read_timeout: float = 10.0
    total_timeout: float = 15.0
    max_tries: int = 3
    max_retry_seconds: float = 20.0
    backoff_factor: float = 0.25
    breaker_threshold: int = 5
    breaker_reset_seconds: float = 30.0


class BackendClient:
    """POSTs `{"codOpe": op, ...}` bodies and returns the decoded `success: true` answer.

    Raises `BackendRejected` for `success: false` (a business answer: not retried, not a
    failure for the breaker) and `BackendError` when the backend could not answer.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        policy: BackendPolicy | None = None,
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._session = session
        self.policy = policy or BackendPolicy()
        self._monotonic = monotonic
        self._breakers: dict[str, CircuitBreaker] = {}
        # backoff's max_time only stops new attempts once the *previous* one started past it,
        # so each attempt's own timeout is also cut to what is left of the budget.
        self._post_with_retries: Callable[
            [str, str, JSONObject, float], Coroutine[Any, Any, Any]
        ] = backoff.on_exception(
            backoff.expo,
            _Transient,
            max_tries=self.policy.max_tries,
            max_time=self.policy.max_retry_seconds,
            factor=self.policy.backoff_factor,
            jitter=backoff.full_jitter,
            on_backoff=_log_retry,
            logger=None,
        )(self._post_once)

    def breaker(self, operation: str) -> CircuitBreaker:
        if operation not in self._breakers:
            self._breakers[operation] = CircuitBreaker(
                operation,
                self.policy.breaker_threshold,
                self.policy.breaker_reset_seconds,
                self._monotonic,
            )
        return self._breakers[operation]

    async def call(self, url: str | None, operation: str, payload: JSONObject) -> JSONObject:
        """One logical operation; retried with full-jitter backoff on transient failures.

        The retried body is byte-for-byte the same, so an `idempotency_key` inside it travels
        with every attempt.
        """
        if url is None:
            raise BackendError(operation, "backend URL not configured")
        breaker = self.breaker(operation)
        if not breaker.allow():
            # No attempt, so no backend_call line: the caller logs the failure it turns into.
            BACKEND_CALLS.labels(operation=operation, outcome="circuit_open").inc()
            raise BackendError(operation, "circuit open")
        body = {"codOpe": operation, **payload}
        deadline = time.monotonic() + self.policy.max_retry_seconds
        log.debug("backend_request", operation=operation, body=body)
        try:
            answer = await self._post_with_retries(url, operation, body, deadline)
        except BackendError:
            breaker.record_failure()
            raise
        except BaseException:
            breaker.release()
            raise
        breaker.record_success()
        if answer.get("success") is not True:
            raise BackendRejected(operation, str(answer.get("error") or "sin detalle"))
        return answer  # type: ignore[no-any-return]

    async def _post_once(
        self, url: str, operation: str, body: JSONObject, deadline: float
    ) -> JSONObject:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            # Not transient: backoff stops here. No attempt was made, so none is counted.
            raise BackendError(operation, "retry budget spent")
        start = time.perf_counter()
        outcome = "ok"
        try:
            return await self._exchange(url, operation, body, self._attempt_timeout(remaining))
        except BackendError as exc:
            outcome = exc.reason.split(":")[0]
            raise
        except BaseException:
            outcome = "cancelled"
            raise
        finally:
            elapsed = time.perf_counter() - start
            BACKEND_CALLS.labels(operation=operation, outcome=outcome).inc()
            BACKEND_SECONDS.labels(operation=operation).observe(elapsed)
            log.info(
                "backend_call",
                operation=operation,
                outcome=outcome,
                duration_ms=round(elapsed * 1000, 1),
            )

    def _attempt_timeout(self, remaining: float) -> aiohttp.ClientTimeout:
        policy = self.policy
        return aiohttp.ClientTimeout(
            total=min(policy.total_timeout, remaining),
            sock_connect=min(policy.connect_timeout, remaining),
            sock_read=min(policy.read_timeout, remaining),
        )

    async def _exchange(
        self, url: str, operation: str, body: JSONObject, timeout: aiohttp.ClientTimeout
    ) -> JSONObject:
        try:
            async with self._session.post(url, json=body, timeout=timeout) as response:
                text = await response.text(errors="replace")
                status = response.status
        except TimeoutError:
            raise _Transient(operation, "timeout") from None
        except aiohttp.ClientError as exc:
            raise _Transient(operation, f"connection: {type(exc).__name__}") from None
        if status >= 500:
            raise _Transient(operation, f"http_{status}")
        if status >= 400:
            raise BackendError(operation, f"http_{status}")
        try:
            # Undecodable bytes became U+FFFD above: a garbled answer fails here, not as a crash.
            answer = json.loads(text)
        except ValueError:
            raise _Transient(operation, "malformed: not JSON") from None
        if not isinstance(answer, dict):
            raise _Transient(operation, "malformed: not an object")
        return answer


def _log_retry(details: Any) -> None:
    log.warning(
        "backend_retry",
        operation=details["args"][1],
        attempt=details["tries"],
        wait_s=round(details["wait"], 3),
        error=str(details.get("exception", "")),
    )
