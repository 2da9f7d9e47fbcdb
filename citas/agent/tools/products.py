"""`search_products`: the business's services and products matching what the customer asks, and
the FAQ answers and description sentences that speak of it.

The FAQs and the description are in the system prompt, but small models search for them anyway
("seguros", "dirección") and then say nothing was found; so the search finds them too.
"""

from __future__ import annotations

import re

from pydantic import Field

from citas.agent.tools.arguments import Arguments
from citas.agent.tools.context import ToolServices, TurnContext
from citas.agent.tools.result import ToolResult
from citas.customer_words import name_words
from citas.domain import WEEKDAY_NAMES
from citas.errors import BackendRejected
from citas.folding import fold
from citas.money import format_amount

DESCRIPTION = (
    "Busca servicios y productos del negocio (nombre, precio, descripción) y respuestas a "
    "preguntas frecuentes (seguros, pagos, dirección...)."
)
MAX_ANSWERS = 2
_STEM = 5  # a word's first letters: "seguros" finds "seguro", "pagos" finds "pago"
_MIN_WORD = 4  # shorter query words ("que", "hay", "los") say nothing of the topic
_SENTENCE = re.compile(r"(?<![A-Z][a-z]\.)(?<=[.!?])\s+")  # not after "Av." nor "Jr."
_QUESTION_WORDS = frozenset(
    {"cuanto", "cuanta", "cuantos", "donde", "tienen", "tiene", "aceptan", "hacen", "puedo"}
)
# A question about the place shares no word with how an address is written («¿dónde quedan?»,
# «Dirección: Av. Larco 123»): such a question also looks for these stems.
_PLACE_WORDS = frozenset({"donde", "ubicados", "ubicacion", "ubican", "llegar", "llego"})
_PLACE_STEMS = frozenset({"direc", "ubica"})
# A question about the opening hours: answered with the day's line, or the week's.
_HOURS_WORDS = frozenset(
    {"abren", "abre", "cierran", "cierra", "horario", "horarios", "atienden", "atiende"}
)
_WEEKDAY_STEMS = tuple(fold(name)[:_STEM] for name in WEEKDAY_NAMES)


class SearchProductsArgs(Arguments):
    query: str = Field(
        min_length=1,
        max_length=200,
        description="Las palabras del cliente sobre lo que busca (un producto, un servicio o "
        "su precio).",
    )


async def search_products(
    services: ToolServices, ctx: TurnContext, args: SearchProductsArgs
) -> ToolResult:
    try:
        found = await services.catalog.search(ctx.tenant.id_empresa, args.query)
    except BackendRejected:
        found = ()
    currency = ctx.tenant.currency
    items = [
        {
            "tipo": o.kind,
            "nombre": o.name,
            "precio": o.price,
            # Written as the customer reads it, so no model turns 25000 pesos into "S/ 25000.00".
            "precio_texto": None if o.price is None else format_amount(o.price, currency),
            "descripcion": o.description,
        }
        for o in found
    ]
    if not items:
        # Only when no service or product fits: "¿Cuánto dura una limpieza?" is not a price.
        answers = business_answers(ctx, args.query)
        if answers:
            return ToolResult(
                True, {"resultados": [], "informacion": answers}, customer_text=" ".join(answers)
            )
        return ToolResult(
            True,
            {"resultados": []},
            customer_text=f"No encontré servicios ni productos para «{args.query}».",
        )
    lines = "; ".join(
        f"{o.name} ({o.kind})"
        + (f": {format_amount(o.price, currency)}" if o.price is not None else "")
        for o in found
    )
    return ToolResult(
        True,
        {"resultados": items, "moneda": currency},
        customer_text=f"Encontré: {lines}.",
        answers=True,
    )


def business_answers(ctx: TurnContext, query: str) -> list[str]:
    """The FAQ answers and description sentences that share a word's stem with `query`, the
    ones sharing most first (at most `MAX_ANSWERS`)."""
    asked = name_words(query)
    stems = {w[:_STEM] for w in asked if len(w) >= _MIN_WORD and w not in _QUESTION_WORDS}
    if not _PLACE_WORDS.isdisjoint(asked):
        stems |= _PLACE_STEMS
    hours = _hours_answer(ctx, asked)
    if hours is not None:
        return [hours]
    if not stems:
        return []
    candidates = [(f"{f.question} {f.answer}", f.answer) for f in ctx.faqs]
    candidates += [(s, s) for s in _SENTENCE.split(ctx.business_context) if s.strip()]
    scored: list[tuple[int, int, str]] = []
    for searched, answer in candidates:
        shared = len(stems & {word[:_STEM] for word in name_words(searched)})
        if shared:
            scored.append((-shared, len(scored), answer.strip()))
    return [answer for _, _, answer in sorted(scored)[:MAX_ANSWERS]]


def _hours_answer(ctx: TurnContext, asked: list[str]) -> str | None:
    """The opening hours of the days `asked` names, or of the week, when it asks about them."""
    if ctx.hours is None or _HOURS_WORDS.isdisjoint(asked):
        return None
    lines = ctx.hours.describe()
    named = {word[:_STEM] for word in asked} & set(_WEEKDAY_STEMS)
    days = [line for line, stem in zip(lines, _WEEKDAY_STEMS, strict=True) if stem in named]
    return "Horario de atención: " + "; ".join(d.replace(": ", " ", 1) for d in days or lines) + "."
