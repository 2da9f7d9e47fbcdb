"""`citas serve` as an operator meets it: one line for a port in use."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from citas import server
from citas.app import create_app
from citas.config import Settings
from citas.errors import ListenError
from citas.runtime import RUNTIME
from tests.served import clean_env

ROOT = Path(__file__).resolve().parent.parent


def _serve(env: dict[str, str], *options: str, port: int = 0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-W", "default", "-m", "citas", "serve", "--port", str(port), *options],
        cwd=ROOT,
        env=clean_env(**env),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_a_port_in_use_is_one_line_and_exit_status_1() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = _serve({}, "--sandbox", port=port)
    *logs, last = done.stderr.splitlines()
    assert done.returncode == 1, done.stderr
    assert last == f"citas: cannot listen on 127.0.0.1:{port}: address already in use"
    # Everything before it is a log line: no traceback, no warning (-W default would show a
    # ResourceWarning). That the clients are closed is checked in-process, below.
    assert "Unclosed" not in done.stderr
    for line in logs:
        assert isinstance(json.loads(line), dict), line
    assert "citas_started" in [json.loads(line)["event"] for line in logs]


async def test_a_port_in_use_closes_what_the_app_opened(settings: Settings) -> None:
    app = create_app(settings)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ListenError, match=f"127.0.0.1:{port}: address already in use"):
            await server.serve(app, "127.0.0.1", port, drain_seconds=1)
    # The app had started (its clients exist) and its cleanup ran before the error escaped.
    assert app[RUNTIME].http.closed
