"""`citas doctor`: against the sandbox backend, the fake model and Redis at 127.0.0.1:6379."""

from __future__ import annotations

import io
import re
import socket
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import structlog

from citas.cli import main
from citas.config import Settings
from citas.doctor import Options, run_async
from citas.sandbox import RunningSandbox
from citas.testing import FakeLLM, ModelScript, Step, ToolCall, call, reply

pytestmark = pytest.mark.wire  # the doctor asks the endpoint through the LLM client

ROWS = [
    "configuration",
    "info backend",
    "calendar backend",
    "model: tool call",
    "model: streamed reply",
    "model: second system message",
    "redis",
]
MODEL_ROWS = ROWS[3:6]
_ROW = re.compile(r"^(?P<name>\S.*?)\s{2,}(?P<status>ok|FAIL|skip|warn)\s{2,}(?P<detail>.*)$")


class Report:
    """What one doctor run printed and returned."""

    def __init__(self, code: int, output: str) -> None:
        self.code = code
        self.output = output
        lines = output.splitlines()
        assert re.split(r"\s{2,}", lines[0]) == ["check", "status", "detail"]
        matches = [_ROW.match(line) for line in lines[1 : 1 + len(ROWS)]]
        self.rows = {m["name"]: (m["status"], m["detail"]) for m in matches if m}
        assert list(self.rows) == ROWS, output

    def status(self, name: str) -> str:
        return self.rows[name][0]

    def detail(self, name: str) -> str:
        return self.rows[name][1]

    def statuses(self, names: list[str]) -> list[str]:
        return [self.status(name) for name in names]


async def doctor(*, sandbox: bool = False, timeout: float = 5.0, empresa: int = 12) -> Report:
    out = io.StringIO()
    code = await run_async(Options(empresa=empresa, sandbox=sandbox, timeout=timeout), out)
    return Report(code, out.getvalue())


def answers(body: dict[str, Any]) -> Step | ToolCall:
    """A model that calls the tool when it has tools and says hello when it has none."""
    if body.get("tools"):
        return call("check_availability", {"fecha": "2026-12-01", "hora": "10:00"})
    return reply("hola")


def closed_port() -> int:
    """A local port nothing listens on: connections to it are refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only what a test sets: the developer's own OPENAI_API_KEY, REDIS_URL... stay out."""
    for field in Settings.model_fields.values():
        if field.alias:
            monkeypatch.delenv(field.alias, raising=False)


@pytest.fixture
def backends(monkeypatch: pytest.MonkeyPatch, sandbox: RunningSandbox) -> RunningSandbox:
    monkeypatch.setenv("CITAS_CALENDAR_API_URL", sandbox.calendar_url)
    monkeypatch.setenv("CITAS_INFO_API_URL", sandbox.info_url)
    return sandbox


@pytest.fixture
def endpoint(monkeypatch: pytest.MonkeyPatch, llm: ModelScript, fake_llm: FakeLLM) -> ModelScript:
    """The model endpoint the doctor is pointed at; what it was asked is in `requests`."""
    llm.responder = answers
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    monkeypatch.setenv("OPENAI_BASE_URL", fake_llm.base_url)
    return llm


@pytest.fixture
async def strict_template_model(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeLLM]:
    """A llama.cpp-like endpoint whose chat template wants the system message first only."""
    strict = ModelScript(responder=answers, system_message_first_only=True)
    async with FakeLLM(script=strict) as fake:
        monkeypatch.setenv("OPENAI_BASE_URL", fake.base_url)
        yield fake


@pytest.fixture
def restore_logging() -> Iterator[None]:
    previous = structlog.get_config()
    yield
    structlog.configure(**previous)


# --------------------------------------------------------------------------- all well


async def test_all_ok_against_the_sandbox_and_the_fake_model(
    backends: RunningSandbox, endpoint: ModelScript
) -> None:
    report = await doctor()
    assert report.code == 0, report.output
    assert report.statuses(ROWS) == ["ok"] * 6 + ["skip"]
    assert "model: gpt-4o-mini at http://127.0.0.1:" in report.detail("configuration")
    assert "calendar: set; info: set; store: in-process" in report.detail("configuration")
    assert report.detail("info backend").startswith("empresa 12 'Clínica Sonrisas")
    assert report.detail("calendar backend").startswith("SUGERIR_HORARIOS ")
    assert report.detail("model: tool call").startswith('check_availability({"fecha": "2026-12-01"')
    assert report.detail("model: streamed reply").startswith("streamed 'hola'")
    assert report.detail("model: second system message").startswith("accepted ")
    assert report.detail("redis") == "in-process store (REDIS_URL not set)"
    assert report.output.rstrip().endswith("no check failed")
    # The backends were asked about --empresa, read-only.
    assert {body["id_empresa"] for _, body in backends.backend.calls} == {12}
    assert {op for op, _ in backends.backend.calls} == {
        "OBTENER_CONTEXTO_NEGOCIO",
        "OBTENER_HORARIO_REUNIONES",
        "SUGERIR_HORARIOS",
    }
    # What the model was sent: the service's streamed requests, the date as a late system message.
    tool_ask, text_ask, late_system = endpoint.requests
    assert [t["function"]["name"] for t in tool_ask["tools"]] == ["check_availability"]
    assert text_ask["stream"] is True and "tools" not in text_ask
    roles = [m["role"] for m in late_system["messages"]]
    assert roles == ["system", "user", "assistant", "system", "user"]


async def test_empresa_option_reaches_the_backends(
    backends: RunningSandbox, endpoint: ModelScript
) -> None:
    report = await doctor(empresa=27)
    assert report.code == 0, report.output
    assert report.detail("info backend").startswith("empresa 27 ")
    assert {body["id_empresa"] for _, body in backends.backend.calls} == {27}


async def test_sandbox_without_a_model_skips_the_model_rows() -> None:
    report = await doctor(sandbox=True)
    assert report.code == 0, report.output
    assert report.statuses(["configuration", "info backend", "calendar backend"]) == ["ok"] * 3
    assert report.statuses(MODEL_ROWS) == ["skip"] * 3
    assert "demo model" in report.detail("model: tool call")
    assert "calendar: sandbox; info: sandbox" in report.detail("configuration")


# --------------------------------------------------------------------------- failures


async def test_backend_refusing_connections_fails_and_the_other_checks_still_run(
    monkeypatch: pytest.MonkeyPatch, backends: RunningSandbox, endpoint: ModelScript
) -> None:
    monkeypatch.setenv("CITAS_INFO_API_URL", f"http://127.0.0.1:{closed_port()}/info.php")
    report = await doctor()
    assert report.code == 1
    assert report.status("info backend") == "FAIL"
    assert "OBTENER_CONTEXTO_NEGOCIO: connection" in report.detail("info backend")
    assert report.statuses(["calendar backend", *MODEL_ROWS]) == ["ok"] * 4
    assert report.output.rstrip().endswith("1 check(s) failed")


async def test_unknown_business_fails_with_the_backends_answer(
    backends: RunningSandbox, endpoint: ModelScript
) -> None:
    report = await doctor(empresa=999)
    assert report.code == 1
    assert report.statuses(["info backend", "calendar backend"]) == ["FAIL", "FAIL"]
    assert "answered success: false" in report.detail("info backend")


async def test_model_endpoint_down_fails_every_model_row(
    monkeypatch: pytest.MonkeyPatch, backends: RunningSandbox
) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", f"http://127.0.0.1:{closed_port()}/v1")
    report = await doctor()
    assert report.code == 1
    assert report.statuses(MODEL_ROWS) == ["FAIL"] * 3
    assert all("connection_error" in report.detail(row) for row in MODEL_ROWS), report.output
    assert report.statuses(["info backend", "calendar backend"]) == ["ok", "ok"]


async def test_model_refusing_the_key_fails_with_its_reason(
    monkeypatch: pytest.MonkeyPatch, backends: RunningSandbox
) -> None:
    async with FakeLLM(responder=answers, api_key="right") as fake:
        monkeypatch.setenv("OPENAI_BASE_URL", fake.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", "wrong")
        report = await doctor()
    assert report.code == 1
    assert report.statuses(MODEL_ROWS) == ["FAIL"] * 3
    assert report.detail("model: tool call") == "HTTP 401: Incorrect API key provided."
    # Refused with or without a late system message: not blamed on it.
    assert report.detail("model: second system message") == (
        "refuses even without a second system message: HTTP 401: Incorrect API key provided."
    )


async def test_model_answering_text_instead_of_a_tool_call_is_a_warning(
    backends: RunningSandbox, endpoint: ModelScript
) -> None:
    endpoint.responder = lambda body: reply("Claro, el martes a las 10:00 está libre.")
    report = await doctor()
    assert report.code == 0, report.output
    assert report.status("model: tool call") == "warn"
    assert "no tool call" in report.detail("model: tool call")
    assert "el martes a las 10:00" in report.detail("model: tool call")
    assert report.statuses(MODEL_ROWS[1:]) == ["ok", "ok"]


async def test_second_system_message_refused_fails_with_the_reason(
    backends: RunningSandbox, strict_template_model: FakeLLM
) -> None:
    report = await doctor()
    assert report.code == 1
    assert report.statuses(MODEL_ROWS) == ["ok", "ok", "FAIL"]
    detail = report.detail("model: second system message")
    assert detail.startswith("refuses a system message that is not first")
    assert "HTTP 400: Error: Jinja Exception: System message must be at the beginning." in detail
    # Asked again without the late system message, which was accepted: that one is to blame.
    late, without = strict_template_model.script.requests[-2:]
    assert [m["role"] for m in late["messages"]] == [
        "system",
        "user",
        "assistant",
        "system",
        "user",
    ]
    assert [m["role"] for m in without["messages"]] == ["system", "user", "assistant", "user"]
    assert len(strict_template_model.script.rejections) == 1


async def test_each_check_has_its_own_timeout(
    backends: RunningSandbox, endpoint: ModelScript
) -> None:
    endpoint.delay = 5.0
    start = time.monotonic()
    report = await doctor(timeout=0.5)
    assert time.monotonic() - start < 4.0  # three model rows of 0.5 s, not three of 5 s
    assert report.code == 1
    assert report.statuses(MODEL_ROWS) == ["FAIL"] * 3
    assert report.statuses(["info backend", "calendar backend"]) == ["ok", "ok"]


async def test_missing_configuration_fails_naming_the_variables() -> None:
    report = await doctor()
    assert report.code == 1
    configuration = report.detail("configuration")
    assert report.status("configuration") == "FAIL"
    for variable in ("CITAS_CALENDAR_API_URL", "CITAS_INFO_API_URL", "OPENAI_API_KEY"):
        assert variable in configuration
    assert report.detail("info backend") == "CITAS_INFO_API_URL is not set"
    assert report.detail("calendar backend") == "CITAS_CALENDAR_API_URL is not set"
    assert report.statuses(MODEL_ROWS) == ["FAIL"] * 3
    assert "OPENAI_API_KEY" in report.detail("model: tool call")
    assert report.status("redis") == "skip"


async def test_unreadable_configuration_exits_2_without_a_table(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CITAS_TIMEZONE", "Mars/Olympus_Mons")
    out = io.StringIO()
    assert await run_async(Options(sandbox=True), out) == 2
    assert out.getvalue() == ""
    assert "CITAS_TIMEZONE" in capsys.readouterr().err


# --------------------------------------------------------------------------- redis


async def test_redis_answering_ping_is_ok(monkeypatch: pytest.MonkeyPatch, redis_url: str) -> None:
    monkeypatch.setenv("REDIS_URL", redis_url)
    report = await doctor(sandbox=True)
    assert report.code == 0, report.output
    assert report.status("redis") == "ok"
    assert report.detail("redis").startswith(f"PING {redis_url} · ")
    assert f"store: redis {redis_url}" in report.detail("configuration")


async def test_redis_down_fails_without_showing_its_password(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("REDIS_URL", f"redis://:s3cret-pass@127.0.0.1:{closed_port()}/0")
    report = await doctor(sandbox=True)
    assert report.code == 1
    assert report.status("redis") == "FAIL"
    assert report.detail("redis").startswith("redis://:***@127.0.0.1:")
    assert "s3cret-pass" not in report.output


# --------------------------------------------------------------------------- command line


def test_command_line_runs_the_doctor(
    capsys: pytest.CaptureFixture[str], restore_logging: None
) -> None:
    assert main(["doctor", "--sandbox", "--timeout", "5"]) == 0
    captured = capsys.readouterr()
    assert Report(0, captured.out).statuses(MODEL_ROWS) == ["skip"] * 3
    assert captured.err == ""  # no log lines around the table


@pytest.mark.parametrize("argv", [["--timeout", "0"], ["--timeout", "soon"], ["--empresa", "x"]])
def test_bad_command_line_exits_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["doctor", *argv])
    assert caught.value.code == 2
    assert "citas doctor: error:" in capsys.readouterr().err
