"""`request_human`: hand the conversation to a person of the business.

The turn ends with a short message (the loop stops at once) and the answer carries
`handoff: {reason}`; the conversation is then paused until a person resumes it (see
`citas/api/handlers.py` and `SessionStore.pause`).

A paused conversation gets no answer until someone at the business reads it, so the handoff is
made only when the turn's facts back it: the customer asked for a person or wrote of a complaint
or an emergency, the assistant offered a person last turn, or tools failed (the model's own
mistakes, such as invented customer data, do not count). Otherwise (small models hand off after
any refusal, even to a price question) the model is told to keep helping.
"""

from __future__ import annotations

import structlog
from pydantic import Field

from citas.agent.tools.arguments import Arguments
from citas.agent.tools.context import ToolServices, TurnContext
from citas.agent.tools.result import ToolResult, failure
from citas.folding import fold

log = structlog.get_logger("citas.agent")

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


NOT_ASKED = (
    "No se derivó: el cliente no pidió hablar con una persona. Sigue ayudándolo tú con lo que "
    "pidió; si de verdad no puedes, pregúntale si quiere que lo comunique con una persona."
)
# Folded word starts in the customer's words that back a handoff: a person, a complaint, an
# emergency ("persona", "asesora", "reclamo", "urgente", "me duele", "sangra").
_ASKED = (
    "persona",
    "human",
    "asesor",
    "alguien",
    "encargad",
    "gerente",
    "duen",
    "administrador",
    "operador",
    "agente",
    "hablar",
    "reclam",
    "queja",
    "quejar",
    "emergencia",
    "urgen",
    "dolor",
    "duele",
    "sangr",
)
# What a person in the assistant's last reply reads like: it offered one.
_OFFERED = ("persona", "equipo", "asesor")
# Results that mean the assistant cannot help here (their instruction may say to offer a person).
_CANNOT_HELP = frozenset({"no_phone", "backend_unavailable", "backend_rejected", "tool_failed"})
_FAILURES_ENOUGH = 2
# The model's own mistakes, which it can mend by itself: not a reason to hand a customer off (a
# small model refused twice for invented data handed off a customer who had asked for 3pm).
_MODEL_MISTAKES = frozenset(
    {
        "customer_data_not_given",
        "date_mismatch",
        "handoff_not_requested",
        "invalid_arguments",
        "slot_mismatch",
        "time_mismatch",
        "too_many_calls",
        "unclear_when",
        "unknown_tool",
        "unverified_slot",
    }
)


async def request_human(
    services: ToolServices, ctx: TurnContext, args: RequestHumanArgs
) -> ToolResult:
    if not _backed(ctx):
        log.info("handoff_refused", reason=args.reason[:MAX_REASON_CHARS])
        return failure("handoff_not_requested", NOT_ASKED)
    ctx.handoff = " ".join(args.reason.split())[:MAX_REASON_CHARS]
    return ToolResult(True, {"derivado": True}, customer_text=HANDOFF_REPLY)


def handoff_reply(ctx: TurnContext) -> str:
    """The turn's last words before a person takes over: why it could not do what was asked
    (the refusals meant for the customer, such as a cancellation too late to make by chat),
    then that a person will answer. Seen with a 1.5B model: the handoff's message alone left
    the customer without the reason."""
    refusals = dict.fromkeys(r.customer_text for r in ctx.results if not r.ok and r.customer_text)
    return "\n\n".join([*refusals, HANDOFF_REPLY])


def _backed(ctx: TurnContext) -> bool:
    """Whether the turn's facts back a handoff (see the module docstring)."""
    if ctx.customer.wrote_word_starting(_ASKED):
        return True
    if ctx.last_reply and any(word in fold(ctx.last_reply) for word in _OFFERED):
        return True
    failed = [r for r in ctx.results if not r.ok and r.error not in _MODEL_MISTAKES]
    return len(failed) >= _FAILURES_ENOUGH or any(r.error in _CANNOT_HELP for r in failed)


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
