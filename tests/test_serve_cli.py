"""`citas serve` as an operator meets it: refusing to start without a backend, one line for a
port in use, and CITAS_LOG_LEVEL."""

from __future__ import annotations

import json
import socket
import sys
from pathlib import Path

import pytest

from citas import server
from citas.app import create_app
from citas.config import Settings
from citas.errors import ListenError
from citas.runtime import RUNTIME
from tests.served import citas_serving, clean_env, free_port, log_events, serve_refused, stop

ROOT = Path(__file__).resolve().parent.parent
BOTH = "citas: set CITAS_CALENDAR_API_URL and CITAS_INFO_API_URL, or use --sandbox"


@pytest.mark.parametrize(
    ("env", "line"),
    [
        ({}, BOTH),
        (
            {"CITAS_CALENDAR_API_URL": "http://127.0.0.1:9/cal"},
            "citas: set CITAS_INFO_API_URL, or use --sandbox",
        ),
        (
            {"CITAS_INFO_API_URL": "http://127.0.0.1:9/info"},
            "citas: set CITAS_CALENDAR_API_URL, or use --sandbox",
        ),
        (
            {
                "CITAS_CALENDAR_API_URL": "http://127.0.0.1:9/cal",
                "CITAS_INFO_API_URL": "http://127.0.0.1:9/info",
            },
            "citas: set OPENAI_API_KEY (and OPENAI_BASE_URL if needed), or use --sandbox",
        ),
    ],
    ids=["no-backend", "no-info-url", "no-calendar-url", "no-model"],
)
def test_serve_refuses_to_start_without_what_it_needs(env: dict[str, str], line: str) -> None:
    done = serve_refused(env)
    assert (done.returncode, done.stderr) == (2, line + "\n")


def test_serve_with_the_sandbox_needs_no_backend(tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "serve.log"
    command = [sys.executable, "-m", "citas", "serve", "--sandbox", "--port", str(port)]
    with citas_serving(command, port, cwd=ROOT, env=clean_env(), log=log) as server:
        assert stop(server, log) == 0
    assert "citas_listening" in log_events(log)
    # Without a model endpoint the demo model answers, and the log says so, not CITAS_MODEL.
    [started] = [line for line in log.read_text().splitlines() if '"citas_started"' in line]
    assert json.loads(started)["model"] == "demo"


def test_a_port_in_use_is_one_line_and_exit_status_1() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = serve_refused({}, "--sandbox", port=port)
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


def test_log_level_warning_keeps_warnings_and_drops_info(tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "serve.log"
    command = [sys.executable, "-m", "citas", "serve", "--sandbox", "--port", str(port)]
    env = clean_env(CITAS_LOG_LEVEL="WARNING")
    with citas_serving(command, port, cwd=ROOT, env=env, log=log) as server:
        assert stop(server, log) == 0  # after /health answered: its http_request line was due
    events = log_events(log)
    assert "demo_model_active" in events  # a warning
    assert not {"citas_started", "citas_listening", "http_request"} & set(events), events
