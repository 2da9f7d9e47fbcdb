"""Opening hours: the `OBTENER_HORARIO_REUNIONES` wire format → `OpeningHours`."""

from __future__ import annotations

from datetime import time
from typing import Any

import structlog

from citas.backend import BackendClient
from citas.domain import WEEKDAY_KEYS, OpeningHours, TimeRange

log = structlog.get_logger("citas.schedule")

OPERATION = "OBTENER_HORARIO_REUNIONES"


async def fetch_opening_hours(
    client: BackendClient, info_url: str | None, id_empresa: int
) -> OpeningHours:
    """The business's weekly opening ranges; raises BackendError/BackendRejected."""
    answer = await client.call(info_url, OPERATION, {"id_empresa": id_empresa})
    return parse_opening_hours(answer.get("horario"))


def parse_opening_hours(raw: Any) -> OpeningHours:
    """Tolerant parse: a day that is missing or malformed counts as closed (logged)."""
    if not isinstance(raw, dict):
        log.warning("opening_hours_malformed", value_type=type(raw).__name__)
        return OpeningHours()
    days = []
    for key in WEEKDAY_KEYS:
        ranges = []
        for entry in raw.get(key) or raw.get(_accented(key)) or []:
            try:
                ranges.append(TimeRange(_hhmm(entry["inicio"]), _hhmm(entry["fin"])))
            except (KeyError, TypeError, ValueError) as exc:
                log.warning("opening_range_ignored", day=key, entry=str(entry), error=str(exc))
        days.append(tuple(sorted(ranges, key=lambda r: r.start)))
    return OpeningHours(tuple(days))


def _hhmm(text: str) -> time:
    hours, minutes = text.strip().split(":")[:2]
    return time(int(hours), int(minutes))


def _accented(key: str) -> str:
    return {"miercoles": "miércoles", "sabado": "sábado"}.get(key, key)
