"""Command line: `citas serve [--host H] [--port P] [--sandbox] [--workers N]`,
`citas chat [--sandbox]` and `citas doctor [--empresa N] [--sandbox] [--timeout S]`."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from contextlib import AsyncExitStack

from citas import doctor, server, workers
from citas.app import create_app
from citas.config import Settings, missing_setup
from citas.errors import ConfigError, ListenError
from citas.logs import configure_logging


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="citas", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the HTTP service")
    serve.add_argument("--host", help="listen address (default: CITAS_HOST or 127.0.0.1)")
    serve.add_argument("--port", type=int, help="listen port (default: CITAS_PORT or 8080)")
    serve.add_argument(
        "--sandbox",
        action="store_true",
        help="run the bundled sandbox backend in-process (demo businesses)",
    )
    serve.add_argument(
        "--workers",
        type=workers.worker_count,
        default=1,
        metavar="N",
        help="serve from N processes ('auto': one per CPU); more than one needs REDIS_URL "
        "(default 1)",
    )
    chat = commands.add_parser("chat", help="talk to the agent in this terminal")
    _chat_arguments(chat)
    doctor.add_arguments(commands.add_parser("doctor", help="check a deployment's configuration"))
    args = parser.parse_args(argv)
    if args.command == "doctor":
        return doctor.run(args)
    if args.command == "chat":
        from citas.chat import run as run_chat

        return run_chat(args)

    overrides = {
        k: v for k, v in {"CITAS_HOST": args.host, "CITAS_PORT": args.port}.items() if v is not None
    }
    try:
        settings = Settings.from_env(**overrides)
    except ConfigError as exc:
        print(f"citas: {exc}", file=sys.stderr)
        return 2
    problem = missing_setup(settings, sandbox=args.sandbox) or workers.refusal(
        args.workers, redis_url=settings.redis_url, sandbox=args.sandbox
    )
    if problem:
        print(f"citas: {problem}", file=sys.stderr)
        return 2
    configure_logging(
        settings.log_format, settings.log_level_number, secret_values=settings.secret_values()
    )
    try:
        if args.workers > 1:
            return _supervise(settings, args.workers)
        asyncio.run(_serve(settings, sandbox=args.sandbox))
    except ListenError as exc:
        print(f"citas: {exc}", file=sys.stderr)
        return 1
    return 0


async def _serve(
    settings: Settings, *, sandbox: bool, worker: workers.Worker | None = None
) -> None:
    """Serve until a signal (a `worker`: until its supervisor says); with `sandbox`, in front
    of the bundled sandbox backend, which outlives the app's drain."""
    async with AsyncExitStack() as stack:
        model = None
        if sandbox:
            from citas.sandbox.local import sandbox_setup

            setup = await stack.enter_async_context(sandbox_setup(settings))
            settings, model = setup.settings, setup.model
        app = create_app(settings, model=model)
        if worker is None:
            await server.serve(
                app, settings.host, settings.port, drain_seconds=settings.shutdown_drain_seconds
            )
            return
        stop, hurry = asyncio.Event(), asyncio.Event()
        worker.follow(stop, hurry)
        await server.serve(
            app,
            settings.host,
            settings.port,
            drain_seconds=settings.shutdown_drain_seconds,
            stop=stop,
            hurry=hurry,
            handle_signals=False,
            sockets=worker.sockets,
            on_listening=worker.ready,
        )


def _supervise(settings: Settings, count: int) -> int:
    """`--workers N`: bind once, then N worker processes (citas/workers.py)."""
    sockets = server.bind(settings.host, settings.port)
    port = sockets[0].getsockname()[1]

    def work(worker: workers.Worker) -> int:
        configure_logging(
            settings.log_format,
            settings.log_level_number,
            secret_values=settings.secret_values(),
            fields={"worker": worker.index},
        )
        asyncio.run(_serve(settings, sandbox=False, worker=worker))
        return 0

    supervisor = workers.Supervisor(
        sockets,
        count,
        work,
        # A worker's own bounds (the drain, twice: the app's cleanup drains too; the cut-off
        # of requests still running), and some time to close its clients.
        stop_seconds=2 * settings.shutdown_drain_seconds + 2 * server.CUTOFF_SECONDS + 5,
        listening=lambda: workers.log.info(
            "citas_listening", host=settings.host, port=port, workers=count
        ),
    )
    try:
        status = supervisor.run()
    finally:
        for sock in sockets:
            sock.close()
    if supervisor.failure:
        print(f"citas: {supervisor.failure}", file=sys.stderr)
    return status


def _chat_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--sandbox",
        action="store_true",
        help="use the bundled sandbox backend (and, without OPENAI_API_KEY, the demo model)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="show tool calls and timings")
    parser.add_argument("--empresa", type=int, default=12, help="id_empresa (default 12)")
    parser.add_argument("--usuario", type=int, help="usuario_id: whose calendar gets bookings")
    parser.add_argument("--duracion", type=int, help="duracion_cita_minutos")
    parser.add_argument("--zona", help="zona_horaria (default CITAS_TIMEZONE)")
    parser.add_argument("--session", help="session_id (default: a new random one)")
    parser.add_argument(
        "--now", help="freeze the clock at this ISO datetime with offset (demos and tests)"
    )
