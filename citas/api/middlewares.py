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

from citas.api.errors import error_response, http_error
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


_BODY_HEADERS = frozenset({"content-type", "content-length"})


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
            CHAT_REQUESTS.labels(endpoint=_endpoint(request), status=str(status)).inc()
        log.info(
            "http_request",
            method=request.method,
            path=request.path,
            status=status,
            duration_ms=elapsed_ms,
        )


def _endpoint(request: web.Request) -> str:
    # The route's pattern, never the raw path: unknown paths must not mint new label values.
    route = request.match_info.route
    if request.match_info.http_exception is not None or route.resource is None:
        return "unmatched"
    return route.resource.canonical


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure leaves as the one JSON error shape; never a stack trace or HTML."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = _STATUS_CODES.get(exc.status, "invalid_request")
        message = _http_message(exc)
        # Keep what the protocol requires of the status (e.g. `Allow` on a 405).
        kept = {k: v for k, v in exc.headers.items() if k.lower() not in _BODY_HEADERS}
        return error_response(exc.status, code, message, kept)
    except Exception as exc:
        known = http_error(exc)
        if known is not None:
            return known.response()
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


def bearer_auth(token: str, *, protect_metrics: bool = False) -> Middleware:
    """`/api/*` (and `/metrics` with `protect_metrics`) needs `Authorization: Bearer <token>`,
    compared in constant time; `/health`, `/ready` and `/openapi.json` stay open."""
    expected = token.encode()

    def protected(request: web.Request) -> bool:
        # The matched route as well as the raw path: no spelling of a URL may reach a
        # protected handler unauthenticated.
        paths = (request.path, _endpoint(request))
        return any(p.startswith("/api/") or (protect_metrics and p == "/metrics") for p in paths)

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if protected(request):
            scheme, _, given = request.headers.get("Authorization", "").partition(" ")
            # compare_digest even for a wrong scheme, so timing tells nothing either way.
            matches = hmac.compare_digest(given.strip().encode(), expected)
            if not (matches and scheme.lower() == "bearer"):
                REJECTED_REQUESTS.labels(reason="unauthorized").inc()
                return error_response(
                    401,
                    "unauthorized",
                    "Missing or invalid bearer token.",
                    {"WWW-Authenticate": "Bearer"},
                )
        return await handler(request)

    return middleware
