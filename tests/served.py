"""Running `citas serve` as a child process, the way an operator does, and talking to it."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

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
