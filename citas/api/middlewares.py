"""Cross-cutting HTTP concerns: request id and logging, auth, errors → JSON."""

from __future__ import annotations

import asyncio
import hmac
import time
import uuid
from collections.abc import Awaitable, Callable

import structlog
from aiohttp import web
from aiohttp.typedefs import Middleware

from citas.api.errors import error_response
from citas.errors import InvalidRequest, Overloaded, StoreUnavailable
from citas.metrics import CHAT_REQUESTS, REJECTED_REQUESTS

log = structlog.get_logger("citas.http")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

REQUEST_ID = web.RequestKey("request_id", str)
"""For handlers that send their headers themselves (a stream) before this middleware could."""

CLIENT_CLOSED = 499  # nginx's code: the client went away before the answer

_STATUS_CODES = {
    400: "invalid_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    429: "rate_limited",
    503: "unavailable",
}


@web.middleware
async def request_context(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Bind a request id (the caller's `X-Request-ID` or a new one) and log one line."""
    request_id = request.headers.get("X-Request-ID", "")[:128] or uuid.uuid4().hex
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(request_id=request_id)
    request[REQUEST_ID] = request_id
    start = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        response.headers["X-Request-ID"] = request_id
        return response
    except asyncio.CancelledError:
        # Cancelled: the client disconnected, or the request was cut off at shutdown.
        status = CLIENT_CLOSED
        raise
    finally:
        elapsed_ms = round((time.perf_counter() - start) * 1000, 1)
        if request.path.startswith("/api/"):
            CHAT_REQUESTS.labels(endpoint=request.path, status=str(status)).inc()
        log.info(
            "http_request",
            method=request.method,
            path=request.path,
            status=status,
            duration_ms=elapsed_ms,
        )


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure leaves as the one JSON error shape; never a stack trace or HTML."""
    try:
        return await handler(request)
    except InvalidRequest as exc:
        REJECTED_REQUESTS.labels(reason="invalid_request").inc()
        return error_response(400, "invalid_request", str(exc))
    except Overloaded as exc:
        REJECTED_REQUESTS.labels(reason="overloaded").inc()
        return error_response(
            503, "unavailable", str(exc), {"Retry-After": str(exc.retry_after_seconds)}
        )
    except StoreUnavailable as exc:
        # Counted by the store (citas_store_errors_total); the gateway may retry the message.
        log.warning("store_unavailable_response", path=request.path)
        return error_response(503, "unavailable", str(exc), {"Retry-After": "1"})
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = _STATUS_CODES.get(exc.status, "invalid_request")
        message = _http_message(exc)
        return error_response(exc.status, code, message)
    except Exception:
        log.exception("unhandled_error", path=request.path)
        return error_response(500, "internal", "Unexpected internal error.")


def _http_message(exc: web.HTTPException) -> str:
    if exc.status == 413:
        return "Request body too large (at most 64 KiB)."
    if exc.status == 404:
        return "No such endpoint."
    if exc.status == 405:
        return "Method not allowed for this endpoint."
    return exc.reason


def bearer_auth(token: str) -> Middleware:
    """`/api/*` needs `Authorization: Bearer <token>`, compared in constant time."""
    expected = f"Bearer {token}".encode()

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith("/api/"):
            given = request.headers.get("Authorization", "").encode()
            if not hmac.compare_digest(given, expected):
                REJECTED_REQUESTS.labels(reason="unauthorized").inc()
                return error_response(
                    401,
                    "unauthorized",
                    "Missing or invalid bearer token.",
                    {"WWW-Authenticate": "Bearer"},
                )
        return await handler(request)

    return middleware
