"""The sandbox backend over HTTP: the two PHP endpoints, with the backend's faults applied."""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass
from types import TracebackType

from aiohttp import web

from citas.sandbox.state import Fault, JsonDict, SandboxBackend, UrlKind

CALENDAR_PATH = "/ws_calendario.php"
INFO_PATH = "/ws_informacion_ia.php"
MALFORMED_BODY = '{"success": true, "horarios": [ <br /><b>Warning</b>'
"""What a PHP service that printed a warning mid-answer looks like on the wire."""

UNAVAILABLE_BODY = "Service Unavailable"

SANDBOX_BACKEND = web.AppKey("sandbox_backend", SandboxBackend)
_CLOSING = web.AppKey("sandbox_closing", asyncio.Event)


def create_sandbox_app(backend: SandboxBackend) -> web.Application:
    """An app serving `backend` at `/ws_calendario.php` and `/ws_informacion_ia.php`."""
    app = web.Application()
    app[SANDBOX_BACKEND] = backend
    app[_CLOSING] = asyncio.Event()
    app.router.add_post(CALENDAR_PATH, _calendar)
    app.router.add_post(INFO_PATH, _info)
    app.on_shutdown.append(_wake_sleepers)
    return app


async def _calendar(request: web.Request) -> web.StreamResponse:
    return await _serve(request, "calendar")


async def _info(request: web.Request) -> web.StreamResponse:
    return await _serve(request, "info")


async def _serve(request: web.Request, url_kind: UrlKind) -> web.StreamResponse:
    backend = request.app[SANDBOX_BACKEND]
    body = await _read_body(request)
    if body is None:
        # A PHP service answers 200 with its own error shape, not an HTTP error.
        return web.json_response({"success": False, "error": "El cuerpo no es un objeto JSON"})
    op = body.get("codOpe")
    fault = backend.faults.take(op if isinstance(op, str) else "")
    if fault is None:
        return web.json_response(backend.handle(url_kind, body))
    return await _apply_fault(request, fault, url_kind, body)


async def _read_body(request: web.Request) -> JsonDict | None:
    try:
        body = json.loads(await request.read())
    except (ValueError, UnicodeDecodeError):
        return None
    return body if isinstance(body, dict) else None


async def _apply_fault(
    request: web.Request, fault: Fault, url_kind: UrlKind, body: JsonDict
) -> web.StreamResponse:
    backend = request.app[SANDBOX_BACKEND]
    if fault.kind == "latency":
        await _sleep(request.app, fault.seconds)
        return web.json_response(backend.handle(url_kind, body))
    if fault.kind == "commit_then_late":
        # The operation really happens; only the answer is late, so the client's retry is the
        # case idempotency keys exist for.
        answer = backend.handle(url_kind, body)
        await _sleep(request.app, fault.seconds)
        return web.json_response(answer)
    backend.record_call(body)
    if fault.kind == "status":
        return web.Response(status=fault.http_status, text=fault.body or UNAVAILABLE_BODY)
    if fault.kind == "malformed_json":
        return web.Response(text=fault.body or MALFORMED_BODY, content_type="application/json")
    _reset_connection(request)
    return web.Response()


def _reset_connection(request: web.Request) -> None:
    # abort() drops the socket without a response; aiohttp discards what the handler returns.
    transport = request.transport
    if transport is not None:
        transport.abort()


async def _sleep(app: web.Application, seconds: float) -> None:
    """Sleep, but wake at once when the app shuts down so `close()` never waits on a fault."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(app[_CLOSING].wait(), timeout=seconds)


async def _wake_sleepers(app: web.Application) -> None:
    app[_CLOSING].set()


@dataclass
class RunningSandbox:
    """A sandbox listening on loopback; `close()` stops it."""

    calendar_url: str
    info_url: str
    backend: SandboxBackend
    _runner: web.AppRunner

    async def close(self) -> None:
        await self._runner.cleanup()

    async def __aenter__(self) -> RunningSandbox:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


async def start_sandbox(
    backend: SandboxBackend, host: str = "127.0.0.1", port: int = 0
) -> RunningSandbox:
    """Serve `backend` on `host:port` (0: a free port) and return its URLs."""
    runner = web.AppRunner(create_sandbox_app(backend))
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    base = f"http://{_url_host(host)}:{site.port}"
    return RunningSandbox(
        calendar_url=base + CALENDAR_PATH,
        info_url=base + INFO_PATH,
        backend=backend,
        _runner=runner,
    )


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
