"""Connections, below the app: how long an idle or half-sent connection may stay, how many may
be open, JSON for the errors aiohttp's own parser answers, and a bounded log when the process
runs out of file descriptors.

aiohttp answers a request it cannot parse (an invalid method, `Content-Length` with
`Transfer-Encoding`, a header line over 8190 bytes) itself, before any middleware, in
text/plain: `JsonErrorsRequestHandler.handle_error` gives those the API's JSON error shape.

Slow clients: aiohttp 3.14 keeps a connection that never completes a request for its keep-alive
timeout (3630 s by default), so `runner_kwargs` sets it to `CITAS_HTTP_IDLE_TIMEOUT_SECONDS`: an
idle connection, or one whose request head is still arriving, is closed after that. A body that
trickles in is bounded by the handler (`CITAS_HTTP_BODY_TIMEOUT_SECONDS`, 408). At most
`CITAS_MAX_CONNECTIONS` are open: one more evicts the oldest that has not completed a request
yet (so slow clients cannot keep `/health` out), or is closed at once when every open one is
serving a request.
"""

from __future__ import annotations

import asyncio
import json
import logging
import resource
import time
from collections import OrderedDict
from typing import Any

import structlog
from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest
from aiohttp.web_response import StreamResponse

from citas.config import Settings
from citas.metrics import REJECTED_REQUESTS

log = structlog.get_logger("citas.http")

_CODES = {400: "invalid_request", 413: "payload_too_large", 431: "invalid_request"}


class JsonErrorsRequestHandler(RequestHandler):
    """aiohttp's handler, with parse errors in JSON and open connections counted."""

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> StreamResponse:
        plain = super().handle_error(request, status, exc, message)
        if status == 500:
            text = "Unexpected internal error."
            code = "internal"
        else:
            reason = message.strip().splitlines()[0] if message else "Bad request"
            text = f"Malformed HTTP request: {reason[:200]}"
            code = _CODES.get(status, "invalid_request")
        body = json.dumps({"error": {"code": code, "message": text}}).encode()
        response = web.Response(status=plain.status, body=body, content_type="application/json")
        response.force_close()
        return response

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        guard = getattr(self._manager, "guard", None)
        if guard is not None:
            guard.opened(self)

    def connection_lost(self, exc: BaseException | None) -> None:
        guard = getattr(self._manager, "guard", None)
        if guard is not None:
            guard.closed(self)
        super().connection_lost(exc)

    @property
    def completed_a_request(self) -> bool:
        return self._request_count > 0


class ConnectionGuard:
    """At most `limit` connections open; evicts the oldest that never completed a request."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._open: OrderedDict[int, JsonErrorsRequestHandler] = OrderedDict()
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._open)

    def opened(self, handler: JsonErrorsRequestHandler) -> None:
        if len(self._open) >= self.limit and not self._evict_one():
            REJECTED_REQUESTS.labels(reason="connections").inc()
            handler.force_close()
            return
        self._open[id(handler)] = handler

    def closed(self, handler: JsonErrorsRequestHandler) -> None:
        self._open.pop(id(handler), None)

    def _evict_one(self) -> bool:
        for key, handler in self._open.items():
            if not handler.completed_a_request:
                del self._open[key]
                self.evicted += 1
                REJECTED_REQUESTS.labels(reason="slow_connection").inc()
                handler.force_close()
                return True
        return False


class _GuardedServer(web.Server):
    guard: ConnectionGuard

    def __call__(self) -> RequestHandler:
        return JsonErrorsRequestHandler(self, loop=self._loop, **self._kwargs)


class GuardedAppRunner(web.AppRunner):
    """An `AppRunner` whose connections are `JsonErrorsRequestHandler`s under `guard`."""

    def __init__(self, app: web.Application, guard: ConnectionGuard, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.guard = guard

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        # aiohttp builds its Server in Application._make_handler and offers no hook for the
        # handler class: the instance is given this subclass (same state, one method more).
        server.__class__ = _GuardedServer
        assert isinstance(server, _GuardedServer)
        server.guard = self.guard
        return server


def connection_limit(configured: int) -> int:
    """`configured`, but below the process's file-descriptor limit (with room for the clients
    to the backend, the LLM and Redis), so a flood evicts slow connections instead of making
    every `accept()` fail."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return configured
    return max(16, min(configured, soft - 256))


CONNECTION_GUARD = web.AppKey("connection_guard", ConnectionGuard)


def make_runner(app: web.Application, settings: Settings, **kwargs: Any) -> GuardedAppRunner:
    """The runner `citas serve` and the harness use: the limits above, from `settings`."""
    guard = ConnectionGuard(connection_limit(settings.max_connections))
    app[CONNECTION_GUARD] = guard
    return GuardedAppRunner(
        app,
        guard,
        keepalive_timeout=settings.http_idle_timeout_seconds,
        **kwargs,
    )


class AcceptErrorFilter(logging.Filter):
    """asyncio logs every failed `accept()` (EMFILE: out of file descriptors) with a traceback,
    tens of thousands a minute under a connection flood: at most one per `every` seconds goes
    through, saying how many were held back."""

    def __init__(self, every: float = 10.0) -> None:
        super().__init__()
        self.every = every
        self._last = -float("inf")
        self.suppressed = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if "socket.accept() out of system resource" not in str(record.msg):
            return True
        now = time.monotonic()
        if now - self._last < self.every:
            self.suppressed += 1
            return False
        self._last = now
        if self.suppressed:
            record.msg = f"{record.msg} ({self.suppressed} more since the last such line)"
            self.suppressed = 0
        record.exc_info = None  # the traceback says nothing the message does not
        return True


_ACCEPT_FILTER = AcceptErrorFilter()


def limit_accept_error_logs() -> None:
    """Install the filter on asyncio's logger (once)."""
    logger = logging.getLogger("asyncio")
    if _ACCEPT_FILTER not in logger.filters:
        logger.addFilter(_ACCEPT_FILTER)
