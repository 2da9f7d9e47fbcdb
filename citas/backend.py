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

    def __init__(self, session: aiohttp.ClientSession, policy: BackendPolicy | None = None) -> None:
        self._session = session
        self.policy = policy or BackendPolicy()
        self._timeout = aiohttp.ClientTimeout(
            total=self.policy.total_timeout,
            sock_connect=self.policy.connect_timeout,
            sock_read=self.policy.read_timeout,
        )
        self._breakers: dict[str, CircuitBreaker] = {}
        self._post_with_retries: Callable[[str, str, JSONObject], Coroutine[Any, Any, Any]] = (
            backoff.on_exception(
                backoff.expo,
                _Transient,
                max_tries=self.policy.max_tries,
                max_time=self.policy.max_retry_seconds,
                factor=self.policy.backoff_factor,
                jitter=backoff.full_jitter,
                on_backoff=_log_retry,
                logger=None,
            )(self._post_once)
        )

    def breaker(self, operation: str) -> CircuitBreaker:
        if operation not in self._breakers:
            self._breakers[operation] = CircuitBreaker(
                operation, self.policy.breaker_threshold, self.policy.breaker_reset_seconds
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
            BACKEND_CALLS.labels(operation=operation, outcome="circuit_open").inc()
            raise BackendError(operation, "circuit open")
        body = {"codOpe": operation, **payload}
        log.debug("backend_request", operation=operation, body=body)
        try:
            answer = await self._post_with_retries(url, operation, body)
        except BackendError:
            breaker.record_failure()
            raise
        breaker.record_success()
        if answer.get("success") is not True:
            raise BackendRejected(operation, str(answer.get("error") or "sin detalle"))
        return answer  # type: ignore[no-any-return]

    async def _post_once(self, url: str, operation: str, body: JSONObject) -> JSONObject:
        start = time.perf_counter()
        outcome = "ok"
        try:
            return await self._exchange(url, operation, body)
        except BackendError as exc:
            outcome = exc.reason.split(":")[0]
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

    async def _exchange(self, url: str, operation: str, body: JSONObject) -> JSONObject:
        try:
            async with self._session.post(url, json=body, timeout=self._timeout) as response:
                text = await response.text()
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
            answer = json.loads(text)
        except ValueError:
            raise _Transient(operation, "malformed: not JSON") from None
        if not isinstance(answer, dict):
            raise _Transient(operation, "malformed: not an object")
        return answer


def _log_retry(details: Any) -> None:
    log.warning(
        "backend_retry",
        attempt=details["tries"],
        wait_s=round(details["wait"], 3),
        error=str(details.get("exception", "")),
    )
