"""`citas chat`: a terminal conversation, driven here through a pipe with the sandbox demo model."""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
import structlog

from citas.chat import _running, run
from citas.cli import main
from citas.clock import frozen_clock
from citas.config import Settings
from citas.testing.harness import LOCAL_CLIENT_MARGIN_SECONDS, client_timeout
from tests.conftest import MakeClient

ROOT = Path(__file__).resolve().parent.parent
NOW = "2026-11-30T10:00:00-05:00"  # Monday: "mañana" is Tuesday, the clinic is open


@pytest.fixture
def restore_logging() -> Iterator[None]:
    previous = structlog.get_config()
    yield
    structlog.configure(**previous)


def _chat(stdin: str, *options: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "OPENAI_BASE_URL")}
    return subprocess.run(
        [sys.executable, "-m", "citas", "chat", "--sandbox", "--now", NOW, *options],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=60,
        check=False,
    )


def test_chat_books_through_a_pipe_and_shows_the_link_and_the_tools() -> None:
    done = _chat(
        "Hola, quiero una cita mañana a las 10am\n\nMe llamo Ana Pérez, ana@example.com\nSí\n",
        "--verbose",
        "--usuario",
        "7",
        "--duracion",
        "30",
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("citas chat · empresa 12 · sesión chat-")
    assert lines[0].endswith(" · modelo demo · backend sandbox")  # not the unused CITAS_MODEL
    asked = lines.index("tú> Hola, quiero una cita mañana a las 10am")
    answer = lines[asked + 1]
    assert answer.startswith(
        "citas> "
    ) and "El martes 1 de diciembre a las 10:00 está disponible" in (answer)
    assert '    ·   check_availability {"date": "2026-12-01", "time": "10:00"}' in lines
    assert any(
        line.startswith("    · model 1 (") and line.endswith(" ms): 1 tool call(s)")
        for line in lines
    )
    assert any(line.startswith("    · turn: ") for line in lines)
    assert "       enlace: https://meet.sandbox.citas.local/1000" in lines
    assert any("create_booking" in line and "Ana Pérez" in line for line in lines)
    assert lines.count("tú> ") == 0  # the blank line was skipped, not sent


def test_chat_without_verbose_shows_only_the_conversation(
    monkeypatch: pytest.MonkeyPatch, restore_logging: None
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    stdin = io.StringIO("¿Cuánto cuesta la limpieza?\n/salir\nesto ya no se envía\n")
    stdout = io.StringIO()
    args = argparse.Namespace(
        sandbox=True,
        verbose=False,
        empresa=27,
        usuario=None,
        duracion=None,
        zona=None,
        session="51911122233",
        now=NOW,
    )
    assert run(args, stdin=stdin, stdout=stdout) == 0
    lines = stdout.getvalue().splitlines()
    assert lines[0].startswith("citas chat · empresa 27 · sesión 51911122233 ·")
    asked, answer, *rest = lines[2:]
    assert asked == "tú> ¿Cuánto cuesta la limpieza?"
    assert answer.startswith("citas> ") and "Shampoo para barba (producto): S/ 45.00" in answer
    assert rest == ["tú> /salir"]  # nothing after it was sent, no tool lines without --verbose


def test_chat_needs_a_backend_without_the_sandbox(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("CITAS_CALENDAR_API_URL", raising=False)
    monkeypatch.delenv("CITAS_INFO_API_URL", raising=False)
    assert main(["chat"]) == 2
    assert "CITAS_CALENDAR_API_URL" in capsys.readouterr().err


# --------------------------------------------------------------------------- how long it waits


@pytest.mark.parametrize("deadline", [5.0, 600.0])
async def test_the_harness_waits_as_long_as_the_turn_deadline_allows(
    make_client: MakeClient, settings: Settings, deadline: float
) -> None:
    # Not aiohttp's 5 minutes: a slow local model's turn outlives it, a hung one would hold a
    # person that long under a short deadline.
    client = await make_client(settings.with_updates(turn_deadline_seconds=deadline))
    assert client.http.timeout.total == deadline + LOCAL_CLIENT_MARGIN_SECONDS
    assert client_timeout(client.settings).total == deadline + LOCAL_CLIENT_MARGIN_SECONDS


async def test_chat_waits_for_the_deadline_of_its_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CITAS_TURN_DEADLINE_SECONDS", "600")
    settings = Settings.from_env()
    async with _running(settings, frozen_clock(datetime.fromisoformat(NOW)), True) as citas:
        assert citas.http.timeout.total == 600 + LOCAL_CLIENT_MARGIN_SECONDS


def test_chat_shows_the_handoff_and_the_pause() -> None:
    done = _chat("Quiero hablar con una persona, por favor\n¿Hola?\n")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "Te comunico con una persona de nuestro equipo" in out
    assert "(derivada a una persona: pidió hablar con una persona)" in out
    assert "(en pausa: una persona atiende esta conversación; no se responde)" in out
