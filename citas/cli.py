"""Command line: `citas serve [--host H] [--port P] [--sandbox]`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from aiohttp import web

from citas.app import create_app
from citas.config import Settings
from citas.errors import ConfigError
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
    args = parser.parse_args(argv)

    overrides = {
        k: v for k, v in {"CITAS_HOST": args.host, "CITAS_PORT": args.port}.items() if v is not None
    }
    try:
        settings = Settings.from_env(**overrides)
    except ConfigError as exc:
        print(f"citas: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_format, secret_values=settings.secret_values())
    app = create_app(settings, sandbox=args.sandbox)
    web.run_app(
        app,
        host=settings.host,
        port=settings.port,
        print=None,
        shutdown_timeout=30.0,
        access_log=None,
    )
    return 0
