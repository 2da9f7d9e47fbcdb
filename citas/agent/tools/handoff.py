"""`request_human`: hand the conversation to a person of the business.

The turn ends with a short message (the loop stops at once) and the answer carries
`handoff: {reason}`; the conversation is then paused until a person resumes it (see
`citas/api/handlers.py` and `SessionStore.pause`).
"""

from __future__ import annotations

from pydantic import Field

from citas.agent.tools.arguments import Arguments
from citas.agent.tools.context import ToolServices, TurnContext
from citas.agent.tools.result import ToolResult

DESCRIPTION = (
    "Pasa la conversación a una persona del negocio. Úsala cuando el cliente pida hablar con "
    "una persona, ante un reclamo o una emergencia, o si no logras ayudarlo tras varios "
    "intentos. Termina tu turno: no escribas nada más."
)
HANDOFF_REPLY = (
    "Te comunico con una persona de nuestro equipo; te responderá por este mismo chat en "
    "cuanto pueda."
)
MAX_REASON_CHARS = 200


class RequestHumanArgs(Arguments):
    reason: str = Field(
        min_length=1,
        max_length=MAX_REASON_CHARS,
        description="Por qué necesita una persona, en pocas palabras (por ejemplo «pidió hablar "
        "con una persona», «reclamo», «emergencia»).",
    )


async def request_human(
    services: ToolServices, ctx: TurnContext, args: RequestHumanArgs
) -> ToolResult:
    ctx.handoff = " ".join(args.reason.split())[:MAX_REASON_CHARS]
    return ToolResult(True, {"derivado": True}, customer_text=HANDOFF_REPLY)


_LABELS = (
    ("emergency", ("emergencia", "urgencia", "urgente", "dolor", "sangr")),
    ("complaint", ("reclamo", "queja", "molest", "mal servicio")),
    ("customer_asked", ("persona", "humano", "asesor", "alguien", "pidio", "pidió", "hablar")),
    ("repeated_failure", ("no logro", "no pude", "fall", "intentos", "no entiendo")),
)


def handoff_label(reason: str) -> str:
    """The metric label of a handoff reason: a few fixed kinds, never the model's own text."""
    text = reason.casefold()
    for label, words in _LABELS:
        if any(word in text for word in words):
            return label
    return "other"
