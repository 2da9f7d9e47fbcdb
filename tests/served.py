"""Running `citas serve` as a child process, the way an operator does, and talking to it."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.helpers import wait_until

ROOT = Path(__file__).resolve().parent.parent

# Variables that would point the child at another backend, model, store or source tree.
_FOREIGN = ("REDIS_URL", "PYTHONPATH", "PYTHONHOME")


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without citas, OpenAI or Python path settings, plus `extra`.

    Without OPENAI_API_KEY/OPENAI_BASE_URL, `--sandbox` runs the scripted demo model.
    """
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("CITAS_", "OPENAI_")) and k not in _FOREIGN
    }
    env.update(extra)
    return env


def serve_refused(
    env: dict[str, str], *options: str, port: int = 0
) -> subprocess.CompletedProcess[str]:
    """`citas serve` run to completion, for tests of a refusal to start: its exit status and
    output. Port 0 by default: were a refusal missing, the server would start without colliding
    with anything, and the timeout would fail the test."""
    return subprocess.run(
        [sys.executable, "-W", "default", "-m", "citas", "serve", "--port", str(port), *options],
        cwd=ROOT,
        env=clean_env(**env),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def free_port() -> int:
    """A port nothing listens on now (another process could take it first, but rarely does)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def citas_serving(
    command: Sequence[str], port: int, *, cwd: Path, env: dict[str, str], log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """Start `command` (a `citas serve`), wait until /health answers, kill it if still up after.

    Its stderr goes to `log`, for the test to read and for a failure's message.
    """
    with log.open("wb") as stderr:
        process = subprocess.Popen(
            command, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=stderr, stderr=stderr
        )
    try:
        _wait_for_health(port, process, log)
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)


def stop(process: subprocess.Popen[bytes], log: Path) -> int:
    """SIGTERM, as an orchestrator sends it; the exit status."""
    process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"no exit 30 s after SIGTERM; stderr:\n{log.read_text()}") from None


def log_events(log: Path) -> list[str]:
    """The `event` of every JSON log line in `log`."""
    events = []
    for line in log.read_text().splitlines():
        try:
            events.append(str(json.loads(line)["event"]))
        except (ValueError, KeyError, TypeError):
            continue
    return events


def post_json(url: str, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        answer: dict[str, Any] = json.loads(response.read())
    return answer


def _wait_for_health(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"exited with {process.returncode}; stderr:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:  # not listening yet
            pass
        time.sleep(0.05)
    raise AssertionError(f"/health did not answer within 30 s; stderr:\n{log.read_text()}")


@dataclass
class Server:
    """A `citas serve` child on asyncio: its process, its JSON log lines so far, its URL."""

    process: asyncio.subprocess.Process
    logs: list[dict[str, Any]] = field(default_factory=list)
    url: str = ""

    def events(self, name: str) -> list[dict[str, Any]]:
        return [e for e in self.logs if e.get("event") == name]


async def _collect(server: Server, stream: asyncio.StreamReader) -> None:
    async for line in stream:
        with suppress(ValueError):
            server.logs.append(json.loads(line))


@asynccontextmanager
async def serve_process(env: dict[str, str], *args: str) -> AsyncIterator[Server]:
    """`python -m citas serve ARGS --port 0` with only `env` of the CITAS_/OPENAI_ variables
    (no REDIS_URL unless `env` has it); killed when the block ends."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("CITAS_", "OPENAI_"))}
    clean.pop("REDIS_URL", None)
    clean.update(env)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        *("-m", "citas", "serve", *args, "--port", "0"),
        cwd=ROOT,
        env=clean,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stderr is not None
    server = Server(process)
    reader = asyncio.create_task(_collect(server, process.stderr))
    try:
        await wait_until(lambda: server.events("citas_listening") or reader.done(), timeout=30)
        [listening] = server.events("citas_listening")
        server.url = f"http://127.0.0.1:{listening['port']}"
        yield server
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()
        await reader
