"""Recorded conversations: the whole corpus replays as recorded, differences are reported turn by
turn, and `--record` writes a file that replays the same."""

from __future__ import annotations

import asyncio
import io
import json
import os
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import structlog

from citas.config import Settings
from citas.replay import (
    Difference,
    ModelResponse,
    Recording,
    RecordingError,
    Turn,
    bundled_fixture,
    load_recording,
    record,
    replay,
    save_recording,
)
from citas.replay.cli import main
from citas.replay.format import ExpectedBooking, RecordedCall
from citas.replay.report import Progress, format_report
from citas.replay.runner import tenant_differences
from citas.testing import FakeLLM, call, reply
from citas.testing.harness import TurnOutcome

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "tests" / "conversations"
CONVERSATIONS = sorted(CORPUS.glob("*.json"))
SLOT_TAKEN = CORPUS / "03_horario_ocupado_alternativa.json"


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """main() configures structlog for the process; put it back for the other tests."""
    previous = structlog.get_config()
    yield
    structlog.configure(**previous)


def test_corpus_is_large_enough() -> None:
    assert len(CONVERSATIONS) >= 15
    turns = [load_recording(path) for path in CONVERSATIONS]
    assert max(len(r.turns) for r in turns) >= 20  # the very long conversation


@pytest.mark.parametrize("path", CONVERSATIONS, ids=lambda p: p.stem)
async def test_recorded_conversation_replays_as_recorded(path: Path) -> None:
    report = await replay(load_recording(path))
    assert report.same, "\n" + format_report(str(path), report)
    assert all(turn.expect is not None for turn in report.recording.turns)


# --------------------------------------------------------------------------- differences


async def test_altered_expectations_are_reported_turn_by_turn() -> None:
    recording = load_recording(SLOT_TAKEN)
    first, second = (turn.expect for turn in recording.turns)
    assert first is not None and second is not None
    assert first.tool_calls[0].result is not None
    first.tool_calls[0].result["disponible"] = True
    second.bookings[0] = ExpectedBooking(fecha_inicio="2026-12-01 16:00:00")
    second.reply = "Otra respuesta"

    report = await replay(recording)

    assert not report.same
    assert report.turns[0].differences == [
        Difference("tool_calls[0].result.disponible", True, False)
    ]
    assert [d.where for d in report.turns[1].differences] == ["bookings[0].fecha_inicio", "reply"]
    text = format_report("03.json", report)
    assert "FAIL 03.json" in text and "(2 of 2 turns differ)" in text
    assert "turn 2 «Ya, a las 3 y media entonces." in text
    booking = 'bookings[0].fecha_inicio: expected "2026-12-01 16:00:00", got "2026-12-01 15:30:00"'
    assert booking in text


async def test_a_turn_that_needs_more_or_fewer_model_responses_is_reported() -> None:
    recording = load_recording(CORPUS / "01_reserva_en_un_mensaje.json")
    booking_turn, thanks_turn = recording.turns
    # Without its final text the turn asks the model once more and gets an error instead.
    booking_turn.model_responses.pop()
    thanks_turn.model_responses.append(ModelResponse(text="¿Algo más?"))

    report = await replay(recording)

    first, second = report.turns
    assert Difference("model responses used", 2, 3) in first.differences
    assert "reply" in [d.where for d in first.differences]
    assert first.outcome.error == "llm_unavailable"
    assert Difference("model responses used", 2, 1) in second.differences


async def test_a_missing_expectation_is_a_difference() -> None:
    recording = load_recording(CORPUS / "08_preguntas_frecuentes.json")
    recording.turns[0].expect = None
    report = await replay(recording)
    assert [d.where for d in report.turns[0].differences] == ["expect"]


def test_a_backend_call_for_another_business_is_reported() -> None:
    recording = load_recording(CORPUS / "13_inyeccion_otra_empresa.json")
    outcome = TurnOutcome(
        status=200,
        reply="",
        url=None,
        error=None,
        tool_calls=[],
        model_calls=[],
        backend_calls=[
            ("CONSULTAR_DISPONIBILIDAD", {"id_empresa": 12, "usuario_id": 7}),
            ("CREAR_EVENTO", {"id_empresa": 99, "usuario_id": 1}),
        ],
    )
    assert tenant_differences(recording, outcome) == [
        Difference("backend CREAR_EVENTO.id_empresa", 12, 99),
        Difference("backend CREAR_EVENTO.usuario_id", 7, 1),
    ]


async def test_injected_tenant_arguments_never_reach_the_backend() -> None:
    report = await replay(load_recording(CORPUS / "13_inyeccion_otra_empresa.json"))
    calls = [body for turn in report.turns for _, body in turn.outcome.backend_calls]
    assert calls and {c["id_empresa"] for c in calls} == {12}
    assert {c["usuario_id"] for c in calls if "usuario_id" in c} == {7}
    assert report.same


# --------------------------------------------------------------------------- the file format


def test_a_recording_survives_writing_and_reading(tmp_path: Path) -> None:
    recording = load_recording(SLOT_TAKEN)
    copy = tmp_path / "copy.json"
    save_recording(recording, copy)
    assert load_recording(copy) == recording
    assert copy.read_text(encoding="utf-8") == SLOT_TAKEN.read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (lambda d: d.update(now="2026-11-30T10:00:00"), "now"),
        (lambda d: d["turns"][0].update(mesage="hola"), "turns.0.mesage"),
        (lambda d: d["turns"][0]["model_responses"].append({}), "turns.0.model_responses.2"),
        (lambda d: d["context"]["config"].update(id_empresa=0), "context"),
        (lambda d: d.update(settings={"CITAS_MAX_TOOL_ROUNDS": 0}), "CITAS_MAX_TOOL_ROUNDS"),
        (lambda d: d["fixture"]["empresas"]["12"].update(horario={"miércoles": []}), "fixture"),
    ],
)
def test_an_invalid_recording_is_refused_with_the_place(
    tmp_path: Path, change: Any, named: str
) -> None:
    data = json.loads(SLOT_TAKEN.read_text(encoding="utf-8"))
    change(data)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(RecordingError, match=named) as error:
        load_recording(path)
    assert str(path) in str(error.value)


# --------------------------------------------------------------------------- scripts/replay.py


def test_cli_exit_status_says_whether_anything_differed(
    tmp_path: Path, restore_logging: None
) -> None:
    data = json.loads(SLOT_TAKEN.read_text(encoding="utf-8"))
    data["turns"][1]["expect"]["reply"] = "Otra respuesta"
    altered = tmp_path / "altered.json"
    altered.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    broken = tmp_path / "broken.json"
    broken.write_text("{", encoding="utf-8")

    out = io.StringIO()
    assert main([str(SLOT_TAKEN), "--no-progress"], out=out) == 0
    assert out.getvalue().startswith("1 conversations, 2 turns: 1 same, 0 different")

    out = io.StringIO()
    assert main([str(SLOT_TAKEN), str(altered)], out=out) == 1
    text = out.getvalue()
    assert f"FAIL {altered}" in text and "reply:" in text and "Otra respuesta" in text
    assert "2 conversations, 4 turns: 1 same, 1 different" in text

    out = io.StringIO()
    assert main([str(broken), str(SLOT_TAKEN)], out=out) == 2
    assert f"ERROR {broken}" in out.getvalue()


def test_cli_update_rewrites_what_differs(tmp_path: Path, restore_logging: None) -> None:
    data = json.loads(SLOT_TAKEN.read_text(encoding="utf-8"))
    del data["turns"][0]["expect"]
    data["turns"][1]["expect"]["url"] = None
    path = tmp_path / "stale.json"
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")

    assert main([str(tmp_path), "--update"], out=io.StringIO()) == 0
    assert path.read_text(encoding="utf-8") == SLOT_TAKEN.read_text(encoding="utf-8")
    assert main([str(path)], out=io.StringIO()) == 0


def test_progress_is_a_bar_on_a_terminal_and_lines_on_a_pipe() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal = Terminal()
    bar = Progress.auto(4, terminal)
    bar.update(1, "03_horario_ocupado_alternativa.json")
    bar.clear()
    assert terminal.getvalue() == (
        "\r[######..................] 1/4 03_horario_ocupado_alternativa.json\x1b[K\r\x1b[K"
    )
    assert not Progress.auto(1, Terminal()).redraw

    pipe = io.StringIO()
    lines = Progress.auto(100, pipe)
    for done in range(101):
        lines.update(done)
    assert pipe.getvalue().splitlines() == [f"replayed {n}/100" for n in range(10, 101, 10)]
    quiet = io.StringIO()
    Progress.auto(10, quiet).update(5)
    assert quiet.getvalue() == ""


# --------------------------------------------------------------------------- recording


NOW = "2026-11-30T10:00:00-05:00"
SLOT = {"date": "2026-12-01", "time": "10:00"}
CUSTOMER = {"customer_name": "Ana Pérez", "customer_email": "ana.perez@gmail.com"}


def _script() -> list[Any]:
    return [
        call("check_availability", SLOT),
        reply("El martes 1 a las 10:00 está libre. ¿Tu nombre y correo?"),
        call("create_booking", {**SLOT, **CUSTOMER}),
        reply("¡Listo, Ana! Enlace: https://meet.sandbox.citas.local/1000"),
    ]


async def test_record_keeps_the_model_answers_and_what_citas_did() -> None:
    plan = Recording(
        title="grabada",
        now=datetime.fromisoformat(NOW),
        session_id="51900000001",
        context={"config": {"id_empresa": 12, "usuario_id": 7, "duracion_cita_minutos": 30}},
        fixture=bundled_fixture(12),
        settings={"CITAS_CONFIRM_BEFORE_BOOKING": False},
        turns=[
            Turn(message="Una cita mañana a las 10"),
            Turn(message="Ana Pérez, ana.perez@gmail.com"),
        ],
    )
    async with FakeLLM(_script()) as endpoint:
        settings = Settings.from_env(
            {}, OPENAI_API_KEY="k", OPENAI_BASE_URL=endpoint.base_url, CITAS_LLM_MAX_RETRIES=0
        )
        recorded = await record(plan, settings=settings)
        assert endpoint.script.pending == 0 and not endpoint.script.rejections

    first, second = recorded.turns
    assert first.model_responses == [
        ModelResponse(
            tool_calls=[RecordedCall(name="check_availability", arguments=json.dumps(SLOT))]
        ),
        ModelResponse(text="El martes 1 a las 10:00 está libre. ¿Tu nombre y correo?"),
    ]
    assert second.expect is not None
    assert [b.fecha_inicio for b in second.expect.bookings] == ["2026-12-01 10:00:00"]
    assert second.expect.url == "https://meet.sandbox.citas.local/1000"
    assert second.expect.tool_calls[0].result == {
        "ok": True,
        "reservado": True,
        "ya_existia": False,
    }
    assert (await replay(recorded)).same


async def test_a_reply_cut_short_is_recorded_and_replayed_cut_short() -> None:
    plan = Recording(
        now=datetime.fromisoformat(NOW),
        session_id="51900000002",
        context={"config": {"id_empresa": 12}},
        fixture=bundled_fixture(12),
        turns=[Turn(message="Hola")],
    )
    cut = reply("Hola, ¿en qué te", finish_reason="length")
    # The reply guard asks once more after an answer cut short.
    async with FakeLLM([cut, reply("Hola, ¿en qué te ayudo?")]) as endpoint:
        settings = Settings.from_env(
            {}, OPENAI_API_KEY="k", OPENAI_BASE_URL=endpoint.base_url, CITAS_LLM_MAX_RETRIES=0
        )
        recorded = await record(plan, settings=settings)
    [turn] = recorded.turns
    assert turn.model_responses == [
        ModelResponse(text="Hola, ¿en qué te", finish_reason="length"),
        ModelResponse(text="Hola, ¿en qué te ayudo?"),
    ]
    report = await replay(recorded)
    assert report.same
    cut_call, _ = report.turns[0].outcome.model_calls
    assert cut_call.reply.finish_reason == "length"
    # An ordinary answer keeps the file as it was: no finish_reason written.
    assert ModelResponse(text="Hola").model_dump() == {"text": "Hola"}


async def test_record_command_against_an_openai_compatible_endpoint(tmp_path: Path) -> None:
    """`--record` end to end in a subprocess; the fake server stands in for the real model."""
    messages = tmp_path / "mensajes.txt"
    messages.write_text(
        "# una reserva en dos mensajes\nUna cita mañana a las 10\n\nAna Pérez, ana@x\n",
        encoding="utf-8",
    )
    target = tmp_path / "grabada.json"
    async with FakeLLM(_script()) as endpoint:
        env = {
            **os.environ,
            "OPENAI_BASE_URL": endpoint.base_url,
            "OPENAI_API_KEY": "k",
            "CITAS_LLM_MAX_RETRIES": "0",
        }
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            str(ROOT / "scripts" / "replay.py"),
            "--record",
            str(target),
            "--messages",
            str(messages),
            "--now",
            NOW,
            "--title",
            "grabada",
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
    output = stdout.decode()
    assert process.returncode == 0, output + stderr.decode()
    assert "turn 2 «Ana Pérez, ana@x»" in output and "create_booking" in output
    assert output.rstrip().endswith("replayed it: same")
    recorded = load_recording(target)
    assert [t.message for t in recorded.turns] == ["Una cita mañana a las 10", "Ana Pérez, ana@x"]
    assert recorded.title == "grabada" and recorded.now == datetime.fromisoformat(NOW)
    assert list(recorded.fixture.empresas) == [12]
    assert (await replay(recorded)).same


def test_record_needs_a_model_endpoint(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    restore_logging: None,
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    assert main(["--record", str(tmp_path / "x.json")]) == 2
    assert "OPENAI_API_KEY" in capsys.readouterr().err
    assert not (tmp_path / "x.json").exists()
