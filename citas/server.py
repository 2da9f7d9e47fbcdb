"""Serving the app until SIGTERM/SIGINT, then draining before the listener closes.

While draining the listener stays open: `/ready` answers 503 (the load balancer stops sending),
new turns get a fast 503 with `Retry-After`, and the turns in flight finish, for at most
`drain_seconds`. Then the listener closes, requests still running are cancelled after
at most twice `CUTOFF_SECONDS` (aiohttp waits once before cancelling them and once after), and
the app's cleanup closes its clients. A second signal ends the wait.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time

import structlog
from aiohttp import web

from citas.api.connections import limit_accept_error_logs, make_runner
from citas.errors import ListenError
from citas.runtime import RUNTIME, SETTINGS

log = structlog.get_logger("citas.server")

CUTOFF_SECONDS = 1.0
_SIGNALS = (signal.SIGTERM, signal.SIGINT)


async def serve(
    app: web.Application,
    host: str,
    port: int,
    *,
    drain_seconds: float,
    stop: asyncio.Event | None = None,
) -> None:
    """Run `app` on `host:port` until a signal (or `stop`), then drain and close."""
    stop = stop or asyncio.Event()
    runner = make_runner(
        app,
        app[SETTINGS],
        handle_signals=False,
        access_log=None,
        shutdown_timeout=CUTOFF_SECONDS,
    )
    limit_accept_error_logs()
    await runner.setup()
    loop = asyncio.get_running_loop()
    try:
        await _listen(runner, host, port)
        for sig in _SIGNALS:
            loop.add_signal_handler(sig, stop.set)
        log.info("citas_listening", host=host, port=runner.addresses[0][1])
        await stop.wait()
        await _drain(app, drain_seconds, loop)
    finally:
        for sig in _SIGNALS:
            loop.remove_signal_handler(sig)
        await runner.cleanup()
        log.info("citas_stopped")


async def _listen(runner: web.AppRunner, host: str, port: int) -> None:
    # Raised inside serve's try, so the app's clients and sandbox are closed before it escapes.
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError as exc:
        raise ListenError(host, port, _reason(exc)) from exc


def _reason(exc: OSError) -> str:
    """The bare cause ("address already in use"); asyncio's text repeats the address."""
    if exc.errno is not None and exc.errno > 0:
        return os.strerror(exc.errno).lower()
    return str(exc.strerror or exc).lower()  # getaddrinfo errors carry negative codes


async def _drain(app: web.Application, seconds: float, loop: asyncio.AbstractEventLoop) -> None:
    admission = app[RUNTIME].admission
    log.info("drain_started", in_flight=admission.in_flight, bound_s=seconds)
    start = time.perf_counter()
    waiting = asyncio.ensure_future(admission.drain(seconds))
    for sig in _SIGNALS:
        loop.add_signal_handler(sig, waiting.cancel)
    try:
        drained = await waiting
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise
        drained = False
        log.warning("drain_interrupted", in_flight=admission.in_flight)
    log.info(
        "drain_finished",
        drained=drained,
        in_flight=admission.in_flight,
        duration_ms=round((time.perf_counter() - start) * 1000, 1),
    )
