"""The one JSON error shape outside: `{"error": {"code", "message"}}` with its HTTP status, and
the one mapping from typed errors to it (shared by `/api/chat` and the stream's `error` event)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import structlog
from aiohttp import web

from citas.api.models import ErrorDetail, ErrorResponse
from citas.api.responses import json_response
from citas.errors import (
    BodyTimeout,
    InvalidRequest,
    Overloaded,
    RateLimited,
    StoreUnavailable,
    UnknownBusiness,
    UnsupportedMediaType,
)
from citas.metrics import REJECTED_REQUESTS

log = structlog.get_logger("citas.http")


def error_body(code: str, message: str) -> dict[str, Any]:
    """The error shape as JSON data (a stream sends it in an `error` event)."""
    return ErrorResponse(error=ErrorDetail(code=code, message=message)).model_dump()


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    return json_response(error_body(code, message), status=status, headers=headers)


@dataclass(frozen=True, slots=True)
class HttpError:
    status: int
    code: str
    message: str
    headers: dict[str, str] = field(default_factory=dict)
    close: bool = False  # the connection too (what is left of its body is not read)

    def response(self) -> web.Response:
        response = error_response(self.status, self.code, self.message, self.headers or None)
        if self.close:
            response.force_close()
        return response


def http_error(exc: BaseException) -> HttpError | None:
    """The answer an expected error gets (counted here, once), or None for a bug."""
    if isinstance(exc, InvalidRequest):
        REJECTED_REQUESTS.labels(reason="invalid_request").inc()
        return HttpError(400, "invalid_request", str(exc))
    if isinstance(exc, BodyTimeout):
        REJECTED_REQUESTS.labels(reason="body_timeout").inc()
        return HttpError(408, "request_timeout", str(exc), close=True)
    if isinstance(exc, UnsupportedMediaType):
        REJECTED_REQUESTS.labels(reason="unsupported_media_type").inc()
        return HttpError(415, "unsupported_media_type", str(exc))
    if isinstance(exc, UnknownBusiness):
        # The gateway's configuration names a business the backend does not know: no model
        # was called, and asking again will not help until it is set up.
        REJECTED_REQUESTS.labels(reason="unknown_business").inc()
        return HttpError(404, "unknown_business", str(exc))
    if isinstance(exc, Overloaded):
        REJECTED_REQUESTS.labels(reason=exc.reason).inc()
        return HttpError(
            503, "unavailable", str(exc), {"Retry-After": str(exc.retry_after_seconds)}
        )
    if isinstance(exc, StoreUnavailable):
        # Counted by the store (citas_store_errors_total); the gateway may retry the message.
        log.warning("store_unavailable_response")
        return HttpError(503, "unavailable", str(exc), {"Retry-After": "1"})
    if isinstance(exc, RateLimited):
        REJECTED_REQUESTS.labels(reason=f"rate_limited_{exc.scope}").inc()
        retry_after = max(1, math.ceil(exc.retry_after_seconds))
        return HttpError(
            429,
            "rate_limited",
            f"Too many messages for this {exc.scope}; retry in {retry_after} s.",
            {"Retry-After": str(retry_after)},
        )
    return None
