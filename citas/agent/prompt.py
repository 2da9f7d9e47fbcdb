"""Prompt rendering from `citas/prompts/`, or the folder `CITAS_PROMPTS_DIR` names (Jinja2).

The system prompt is byte-identical between turns of a business while its data is unchanged
(rendered once per business-info value and cached); the clock goes in its own short message.
"""

from __future__ import annotations

from datetime import datetime
from functools import partial
from pathlib import Path

import jinja2
from cachetools import LRUCache

from citas.datetext import calendar_lines
from citas.domain import WEEKDAY_NAMES, BusinessInfo, Tenant
from citas.messages import SystemMessage, system_message
from citas.money import format_amount

CALENDAR_DAYS = 14  # the clock note's calendar: weekday → date, so no model counts weekdays
DEFAULT_PERSONALITY = "Eres la recepcionista virtual del negocio: amable, clara y eficiente."


class PromptBuilder:
    def __init__(self, prompts_dir: Path, cache_size: int = 1024) -> None:
        self._env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(prompts_dir),
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=False,
            autoescape=False,  # plain text for a model, not HTML
        )
        self._system = self._env.get_template("system.j2")
        self._clock = self._env.get_template("clock.j2")
        # Keyed by the BusinessInfo object itself: the cache hands out the same object while
        # fresh, so identity means "unchanged data" and hashing it is never needed.
        # The message, not only its text: the same object on every turn lets the request
        # encoder reuse its bytes (`citas.agent.request_body`).
        self._rendered: LRUCache[
            tuple[int, str, int, str, str, bool], tuple[BusinessInfo, SystemMessage]
        ] = LRUCache(maxsize=cache_size)
        # (zone, minute) → clock text: a turn would otherwise render a template for a line
        # that changes once a minute. The zone is part of the key because aware datetimes
        # compare (and hash) as instants: 10:00 in Lima equals 12:00 in Santiago.
        self._clocks: LRUCache[tuple[str, datetime], str] = LRUCache(maxsize=256)

    def system_prompt(self, tenant: Tenant, info: BusinessInfo) -> str:
        return self.system_message(tenant, info)["content"]

    def system_message(self, tenant: Tenant, info: BusinessInfo) -> SystemMessage:
        """The system prompt as a message: the same object while the business is unchanged."""
        key = (
            tenant.id_empresa,
            tenant.personalidad or "",
            tenant.duration_minutes,
            tenant.zone.key,
            tenant.currency,
            tenant.email_required,
        )
        cached = self._rendered.get(key)
        if cached is not None and cached[0] is info:
            return cached[1]
        text = self._system.render(
            personalidad=(tenant.personalidad or DEFAULT_PERSONALITY).strip(),
            duracion_minutos=tenant.duration_minutes,
            zona_horaria=tenant.zone.key,
            contexto=info.context,
            horario=info.hours.describe(),
            servicios=info.services,
            productos=info.products,
            preguntas=info.faqs,
            precio=partial(format_amount, code=tenant.currency),
            correo_obligatorio=tenant.email_required,
        ).strip()
        message = system_message(text)
        self._rendered[key] = (info, message)
        return message

    def clock_message(self, now: datetime) -> str:
        """`now` must already be in the business's zone; the message is to the minute (the
        template gets `now` with seconds cut)."""
        zone = getattr(now.tzinfo, "key", str(now.tzinfo))
        minute = now.replace(second=0, microsecond=0)
        text = self._clocks.get((zone, minute))
        if text is None:
            text = self._clock.render(
                now=minute,
                dia=WEEKDAY_NAMES[minute.weekday()],
                zona_horaria=zone,
                calendario=calendar_lines(minute.date(), CALENDAR_DAYS),
            ).strip()
            self._clocks[(zone, minute)] = text
        return text
