"""Serving the app until SIGTERM/SIGINT, then draining before the listener closes.

While draining the listener stays open: `/ready` answers 503 (the load balancer stops sending),
new turns get a fast 503 with `Retry-After`, and the turns in flight finish, for at most
`drain_seconds`. Then the listener closes, requests still running are cancelled after
at most twice `CUTOFF_SECONDS` (aiohttp waits once before cancelling them and once after), and
the app's cleanup closes its clients. A second signal ends the wait.

A worker of `citas serve --workers N` (citas/workers.py) serves the same way on the sockets its
supervisor bound; its supervisor, not a signal, sets `stop` and `hurry`.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time
from collections.abc import Callable, Sequence

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
    hurry: asyncio.Event | None = None,
    handle_signals: bool = True,
    sockets: Sequence[socket.socket] = (),
    on_listening: Callable[[], None] | None = None,
) -> None:
    """Run `app` on `host:port` (or on `sockets`, already listening) until `stop` is set, then
    drain until done or `hurry` is set, and close. With `handle_signals`, SIGTERM/SIGINT set
    `stop`, and once it is set, `hurry`. `on_listening` is called once requests are served."""
    stop = stop or asyncio.Event()
    hurry = hurry or asyncio.Event()
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
    signals = _SIGNALS if handle_signals else ()
    try:
        for sock in sockets:
            await web.SockSite(runner, sock).start()
        if not sockets:
            await _listen(runner, host, port)
        for sig in signals:
            loop.add_signal_handler(sig, lambda: hurry.set() if stop.is_set() else stop.set())
        event = "worker_listening" if sockets else "citas_listening"
        log.info(event, host=host, port=runner.addresses[0][1])
        if on_listening is not None:
            on_listening()
        await stop.wait()
        await _drain(app, drain_seconds, hurry)
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
        await runner.cleanup()
        log.info("citas_stopped")


async def _listen(runner: web.AppRunner, host: str, port: int) -> None:
    # Raised inside serve's try, so the app's clients and sandbox are closed before it escapes.
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError as exc:
        raise ListenError(host, port, _reason(exc)) from exc


def bind(host: str, port: int, *, backlog: int = 128) -> list[socket.socket]:
    """Listening sockets on every address `host` resolves to, as `TCPSite` binds them (for
    `citas serve --workers N`, whose supervisor binds once for all its workers)."""
    sockets: list[socket.socket] = []
    try:
        infos = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
        for family, kind, proto, _name, address in dict.fromkeys(infos):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            sock.listen(backlog)
    except OSError as exc:
        for sock in sockets:
            sock.close()
        raise ListenError(host, port, _reason(exc)) from exc
    return sockets


def _reason(exc: OSError) -> str:
    """The bare cause ("address already in use"); asyncio's text repeats the address."""
    if exc.errno is not None and exc.errno > 0:
        return os.strerror(exc.errno).lower()
    return str(exc.strerror or exc).lower()  # getaddrinfo errors carry negative codes


async def _drain(app: web.Application, seconds: float, hurry: asyncio.Event) -> None:
    admission = app[RUNTIME].admission
    log.info("drain_started", in_flight=admission.in_flight, bound_s=seconds)
    start = time.perf_counter()
    waiting = asyncio.ensure_future(admission.drain(seconds))
    hurried = asyncio.ensure_future(hurry.wait())
    try:
        await asyncio.wait((waiting, hurried), return_when=asyncio.FIRST_COMPLETED)
        finished = waiting.done()
    finally:
        hurried.cancel()
        waiting.cancel()  # nothing when it finished
    drained = finished and waiting.result()
    if not finished:  # hurried: a second signal
        log.warning("drain_interrupted", in_flight=admission.in_flight)
    log.info(
        "drain_finished",
        drained=drained,
        in_flight=admission.in_flight,
        duration_ms=round((time.perf_counter() - start) * 1000, 1),
    )
