"""The clock message: to the minute, rendered once per minute and zone."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from citas.agent.prompt import PromptBuilder
from citas.config import DEFAULT_PROMPTS_DIR

LIMA, SANTIAGO = ZoneInfo("America/Lima"), ZoneInfo("America/Santiago")


def test_clock_message_is_rendered_once_per_minute_and_zone() -> None:
    prompts = PromptBuilder(DEFAULT_PROMPTS_DIR)
    now = datetime(2026, 11, 30, 10, 0, 5, 123, tzinfo=LIMA)
    first = prompts.clock_message(now)
    assert first == "Fecha y hora actuales: lunes 2026-11-30 10:00 (America/Lima)."
    assert prompts.clock_message(now + timedelta(seconds=50)) is first  # same minute: cached
    assert prompts.clock_message(now + timedelta(minutes=1)).endswith("10:01 (America/Lima).")
    # The same instant in another zone is another message, though the datetimes compare equal.
    there = now.astimezone(SANTIAGO)
    assert there == now
    assert prompts.clock_message(there) == (
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
