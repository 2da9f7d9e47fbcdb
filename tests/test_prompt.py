"""The prompts: shipped in the package, overridable by CITAS_PROMPTS_DIR, and the clock message
rendered once per minute and zone."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from aiohttp import web
from aiohttp.test_utils import TestClient

import citas
from citas.agent.prompt import PromptBuilder
from citas.agent.tools import TOOLS
from citas.config import DEFAULT_PROMPTS_DIR, Settings
from citas.domain import BusinessInfo, Faq, OpeningHours, Tenant
from citas.testing import FakeLLM, reply
from tests.conftest import chat_body

LIMA, SANTIAGO = ZoneInfo("America/Lima"), ZoneInfo("America/Santiago")


def test_clock_message_is_rendered_once_per_minute_and_zone() -> None:
    prompts = PromptBuilder(DEFAULT_PROMPTS_DIR)
    now = datetime(2026, 11, 30, 10, 0, 5, 123, tzinfo=LIMA)
    first = prompts.clock_message(now)
    lines = first.splitlines()
    assert lines[0] == "Fecha y hora actuales: lunes 2026-11-30 10:00 (America/Lima)."
    # A calendar of the next 14 days, so no model has to count weekdays.
    assert lines[2:4] == [
        "- hoy: lunes 30 de noviembre (2026-11-30)",
        "- mañana: martes 1 de diciembre (2026-12-01)",
    ]
    assert len(lines) == 2 + 14 and lines[-1] == "- domingo 13 de diciembre (2026-12-13)"
    assert prompts.clock_message(now + timedelta(seconds=50)) is first  # same minute: cached
    later = prompts.clock_message(now + timedelta(minutes=1))
    assert later.splitlines()[0].endswith("10:01 (America/Lima).")
    # The same instant in another zone is another message, though the datetimes compare equal.
    there = now.astimezone(SANTIAGO)
    assert there == now
    assert prompts.clock_message(there).splitlines()[0] == (
        "Fecha y hora actuales: lunes 2026-11-30 12:00 (America/Santiago)."
    )


def test_clock_template_gets_now_cut_to_the_minute(tmp_path: Path) -> None:
    (tmp_path / "system.j2").write_text("Sistema")
    (tmp_path / "clock.j2").write_text(
        '{{ now.strftime("%H:%M:%S") }} {{ dia }} {{ zona_horaria }}'
    )
    prompts = PromptBuilder(tmp_path)
    now = datetime(2026, 12, 1, 15, 30, 59, tzinfo=LIMA)
    assert prompts.clock_message(now) == "15:30:00 martes America/Lima"


def test_the_default_prompts_are_the_package_s_own() -> None:
    package = Path(citas.__file__).resolve().parent
    assert package / "prompts" == DEFAULT_PROMPTS_DIR
    assert Settings.from_env({}).prompts_dir == DEFAULT_PROMPTS_DIR
    assert {"system.j2", "clock.j2"} <= {p.name for p in DEFAULT_PROMPTS_DIR.iterdir()}


async def test_citas_prompts_dir_replaces_the_templates(
    tmp_path: Path,
    settings: Settings,
    llm: FakeLLM,
    make_client: Callable[..., Awaitable[TestClient[web.Request, web.Application]]],
) -> None:
    (tmp_path / "system.j2").write_text("Sistema propio de {{ zona_horaria }}")
    (tmp_path / "clock.j2").write_text("Reloj propio: {{ now.strftime('%H:%M') }}")
    custom = Settings.from_env(
        {"CITAS_PROMPTS_DIR": str(tmp_path)},
        **settings.model_dump(by_alias=True, exclude={"prompts_dir"}),
    )
    assert custom.prompts_dir == tmp_path
    llm.add(reply("Hola"))
    client = await make_client(custom)
    assert (await client.post("/api/chat", json=chat_body("Hola"))).status == 200
    [request] = llm.requests
    system = [m["content"] for m in request["messages"] if m["role"] == "system"]
    prompt, clock = system
    assert prompt == "Sistema propio de America/Lima"
    # The turn's note: the clock from the template, then where the conversation stands.
    assert clock.split("\n\n")[0] == "Reloj propio: 10:00"


def test_faqs_read_as_plain_question_and_answer_lines() -> None:
    # A real model began replies with "R: …", copied from a "P:/R:" layout.
    info = BusinessInfo(
        context="Clínica dental.",
        faqs=(Faq("¿Aceptan seguros?", "Sí, trabajamos con Pacífico y Rímac."),),
        hours=OpeningHours(),
        services=(),
        products=(),
    )
    prompt = PromptBuilder(DEFAULT_PROMPTS_DIR).system_prompt(Tenant(12, LIMA, 30), info)
    assert "- ¿Aceptan seguros? Sí, trabajamos con Pacífico y Rímac." in prompt.splitlines()
    assert "P:" not in prompt and "R:" not in prompt


def test_every_tool_argument_says_what_to_put_there() -> None:
    # A real model sent "customer_email": "Correo" and "customer_name": "Nombre y Apellido",
    # the descriptions themselves: each now says where the value comes from, in a sentence.
    for tool in TOOLS:
        properties = tool.schema["function"]["parameters"]["properties"]
        for name, schema in properties.items():
            description = schema.get("description", "")
            assert len(description.split()) >= 8, (tool.name, name, description)
            assert description.rstrip().endswith("."), (tool.name, name, description)
