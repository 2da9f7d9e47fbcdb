"""The last check before a reply leaves: what it says must match what the turn did.

A model, small or not, may claim a booking that does not exist, paste tool markup or a tool's
name, echo an instruction meant for it or the customer's own message, repeat a sentence, get cut
off, or answer nothing. The guard cleans what can be cleaned; for the rest it asks the loop for
one corrective model call, and if the answer is still wrong it replaces it with a reply built
from the turn's facts. When a booking was made in the turn, the reply always carries its date,
time and link.

Every change is counted in `citas_reply_guard_total{action}`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from citas.agent.tools.booking import data_request
from citas.agent.tools.context import TurnContext
from citas.agent.tools.products import business_answers
from citas.agent.tools.result import ToolResult
from citas.folding import fold
from citas.metrics import REPLY_GUARD

EMPTY_REPLY = "Disculpa, ¿podrías repetirme tu mensaje?"
NOT_DONE = (
    "Disculpa, no logré completar tu solicitud. ¿Podrías indicarme de nuevo qué necesitas, "
    "con la fecha y la hora que prefieres?"
)
NOTHING_BOOKED = (
    "Todavía no hay ninguna cita reservada. ¿Para qué día y hora te gustaría reservarla?"
)
NOTHING_CHANGED = (
    "Todavía no hice ningún cambio en tus citas. ¿Quieres que lo revisemos de nuevo? Indícame "
    "qué cita y qué cambio necesitas."
)
NOTE = "[Nota interna del sistema, no es del cliente; no la menciones]"
CORRECTIONS = {
    "claim": (
        f"{NOTE} Tu respuesta anterior dice que la cita está reservada o confirmada, pero en "
        "esta conversación NO hay ninguna cita reservada. Responde de nuevo al cliente sin "
        "afirmar eso."
    ),
    "change": (
        f"{NOTE} Tu respuesta dice que una cita fue cancelada o cambiada, pero en este turno NO se "
        "canceló ni se cambió ninguna. Responde de nuevo al cliente sin afirmar eso; para "
        "hacerlo usa cancel_booking o reschedule_booking."
    ),
    "echo": (
        f"{NOTE} Tu respuesta solo repite el mensaje del cliente. Respóndele a lo que dice; si "
        "hace falta consultar o reservar, usa las herramientas."
    ),
    "empty": f"{NOTE} Tu respuesta llegó vacía. Responde al cliente en español, en pocas frases.",
    "length": (
        f"{NOTE} Tu respuesta fue demasiado larga y se cortó. Responde de nuevo al cliente en "
        "pocas frases."
    ),
    "repeat": (
        f"{NOTE} Tu respuesta es igual a tu mensaje anterior. Lee el último mensaje del cliente "
        "y respóndele a eso; si hace falta consultar o reservar, usa las herramientas."
    ),
}

# Markup a model may write as text instead of using the API's tool calls, or copy from a result.
_MARKUP = re.compile(
    r"<(tool_call|tool_response|function[^>]*|tools)>.*?(</\1>|$)"  # tagged blocks
    r"|<\|[^|>]{1,40}\|>"  # special tokens such as <|im_end|>
    r"|```(?:json)?\s*[\[{].*?```"  # fenced JSON
    r"|\{\s*\"(?:ok|name|arguments|function|tool_call_id)\"\s*:.*\}",  # bare JSON objects
    re.DOTALL,
)
# A name from the code: a tool («reschedule_booking»), a field («id_empresa»); never Spanish
# prose, and not part of an email or a link.
_INTERNAL_NAME = re.compile(r"(?<![\w.])[a-z]+(?:_[a-z]+)+(?!\w)")
_LINK_OR_EMAIL = re.compile(r"\S+://\S+|\S+@\S+")
_SENTENCE_END = re.compile(r"(?<=[.!?…])\s+")
_RUN = re.compile(r"(\S)\1{5,}")  # the same character six or more times: "¡¡¡¡¡¡"
_MIN_REPEAT_CHARS = 12  # shorter sentences ("¡Gracias!") may fairly come twice
_MIN_ECHO_CHARS = 20
_MIN_BOUND = 100
_NOT_WORDS = re.compile(r"[\W_]+")
# A figure as a customer reads it: the whole number that starts a price, a time or a day
# ("80" of "S/ 80.00", "15" of "15:00"), not digits inside a reference such as "C279CC".
_FIGURE = re.compile(r"(?<![\w.,:])\d+")

# A statement that an appointment exists: "tu cita está confirmada", "te agendé", "quedó
# reservada", "he registrado tu cita". Judged on text folded to lowercase without accents.
_CLAIM = re.compile(
    r"\b(?:cita|reserva|turno|hora)\b[^.!?]*\b(?:esta|queda|quedo|quedaria|fue|ha sido|ha quedado)"
    r"\s+(?:\w+\s+)?(?:confirmad|reservad|agendad|registrad|programad|separad|list)[ao]s?\b"
    r"|\b(?:he|hemos|ya|te|le)\s+(?:\w+\s+)?(?:reservado|agendado|confirmado|registrado|programado"
    r"|separado)\b"
    r"|\b(?:reserve|agende|registre|confirme|programe|separe)\s+(?:tu|su|la)\b"
    r"|(?<!que )\b(?:te|le|la|lo|ya)\s+(?:reserve|agende|registre|confirme|programe|separe)\b"
    r"|\b(?:cita|reserva)\s+(?:confirmada|reservada|agendada|registrada)\b"
    r"|\b(?:queda|quedo|ha quedado)\s+(?:confirmad|reservad|agendad|registrad|programad)[ao]s?\b"
)
# A statement that an appointment was cancelled or moved: "cita cancelada", "tu cita quedó
# reprogramada", "la cambié". Judged on folded text, as `_CLAIM`.
_CHANGE_CLAIM = re.compile(
    r"\b(?:cita|reserva|turno)\b[^.!?]*\b(?:esta|queda|quedo|fue|ha sido|ha quedado)\s+"
    r"(?:\w+\s+)?(?:cancelad|anulad|cambiad|reprogramad|movid)[ao]s?\b"
    r"|\b(?:cita|reserva)\s+(?:cancelada|anulada|cambiada|reprogramada|movida)\b"
    r"|\b(?:he|hemos|ya|te|le)\s+(?:\w+\s+)?(?:cancelado|anulado|cambiado|reprogramado|movido)\b"
    r"|\b(?:cancele|anule|reprograme|cambie|movi)\s+(?:tu|su|la)\b"
)
# "I cannot help with that", "I do not have that information": judged on folded text.
# Also the small models' stock lines for a turn they lost track of: «no tengo una respuesta para
# esa solicitud», «no recibí ninguna respuesta, intenta de nuevo».
_REFUSAL = re.compile(
    r"\bno\s+(?:puedo|podemos|logro)\s+(?:ayudar|responder|asistir|proporcionar|dar|brindar)"
    r"|\bno\s+(?:tengo|cuento\s+con|dispongo\s+de)\s+(?:acceso\s+a\s+)?(?:esa\s+|la\s+)?"
    r"informacion"
    r"|\bno\s+tengo\s+(?:una\s+|ninguna\s+)?respuesta"
    r"|\bno\s+(?:recibi|he\s+recibido)\s+(?:ninguna\s+)?respuesta"
)
# Before the claim: a denial, or a wish or purpose ("para que te confirme", "quieres que la
# reserve") rather than a fact.
_NEGATION = re.compile(r"\b(?:no|aun no|todavia no|sin|ni|para que|quieres que|deseas que)\b")


def claims_booking(text: str) -> bool:
    """Whether a sentence of `text` states, not asks nor denies, that a booking exists."""
    return _states(_CLAIM, text)


def claims_change(text: str) -> bool:
    """Whether a sentence of `text` states, not asks nor denies, that an appointment was
    cancelled or moved."""
    return _states(_CHANGE_CLAIM, text)


def _states(claim: re.Pattern[str], text: str) -> bool:
    for sentence in _sentences(fold(text)):
        if sentence.rstrip().endswith("?") or sentence.lstrip().startswith("¿"):
            continue
        match = claim.search(sentence)
        if match and not _NEGATION.search(sentence[: match.end()]):
            return True
    return False


@dataclass(slots=True)
class Checked:
    """A reply after the guard: the text to send, or the correction to ask the model for."""

    text: str
    correction: str | None = None  # a note for one more model call, when one may still help
    actions: list[str] = field(default_factory=list)


class ReplyGuard:
    def __init__(self, max_chars: int) -> None:
        self.max_chars = max_chars

    def check(
        self,
        text: str | None,
        finish_reason: str | None,
        ctx: TurnContext,
        *,
        may_retry: bool,
    ) -> Checked:
        """Judge one model answer against the turn's facts (`ctx`, after its tools ran)."""
        actions: list[str] = []
        cleaned = self._clean(text or "", ctx, actions)
        problem = _problem(cleaned, finish_reason, ctx)
        if problem is not None and may_retry:
            return Checked(cleaned, CORRECTIONS[problem], [*actions, f"retry_{problem}"])
        if problem == "length" and cleaned and not claims_booking(cleaned):
            problem = None  # a cut-off answer, bounded below, beats none
            actions.append("kept_cut_off")
        if problem == "repeat" and not any(r.customer_text for r in ctx.results):
            # Nothing this turn to tell instead: the same answer again beats "repeat that".
            problem = None
            actions.append("kept_repeat")
        if problem is not None:
            cleaned = fallback_reply(ctx, problem)
            actions.append(f"replaced_{problem}")
        elif not ctx.booked and ctx.pending is None:
            cleaned = _with_untold(cleaned, ctx, actions)
            cleaned = _answered_from_business(cleaned, ctx, actions)
        elif not ctx.booked:
            cleaned = _with_pending(cleaned, ctx, actions)
        # Bounded before the booking details go in, so the link is never what gets cut.
        details = sum(len(booked.confirmation) + 2 for booked in ctx.booked)
        cleaned = _bounded(cleaned, max(self.max_chars - details, _MIN_BOUND), actions)
        cleaned = self._with_booking_details(cleaned, ctx, actions)
        return Checked(cleaned, None, actions)

    def _clean(self, text: str, ctx: TurnContext, actions: list[str]) -> str:
        steps = (
            ("stripped_markup", _strip_markup),
            ("collapsed_runs", lambda t: _RUN.sub(r"\1", t)),
            ("removed_instruction", lambda t: _without_echoes(t, _instructions(ctx))),
            ("removed_internal_names", _without_internal_names),
            ("removed_repeats", _without_repeats),
        )
        for action, step in steps:
            changed = step(text)
            if changed != text:
                actions.append(action)
                text = changed
        return text.strip()

    def _with_booking_details(self, text: str, ctx: TurnContext, actions: list[str]) -> str:
        """A booking made in the turn is told with its date, time and link, whatever the model
        wrote (a customer who did not get the link cannot join the meeting)."""
        for booked in ctx.booked:
            hour = booked.time.removeprefix("0")  # "9:00" says 09:00 as well
            missing_when = fold(booked.day) not in fold(text) or not re.search(
                rf"(?<!\d)0?{re.escape(hour)}\b", text
            )
            missing_link = booked.url is not None and booked.url not in text
            if missing_when or missing_link:
                text = f"{text}\n\n{booked.confirmation}" if text else booked.confirmation
                actions.append("added_booking_details")
        return text


def record(actions: Iterable[str]) -> None:
    for action in actions:
        REPLY_GUARD.labels(action=action).inc()


def fallback_reply(ctx: TurnContext, problem: str = "empty") -> str:
    """A reply built only from what the turn's tools established."""
    if ctx.booked:
        return ctx.booked[-1].confirmation
    if ctx.pending is not None and ctx.pending.customer_text:
        return ctx.pending.customer_text
    # What the tools found (a price, the free times, the customer's appointments), then what
    # the last call, if it failed, asks of the customer. Seen with a 1.5B model: a price looked
    # up, then a booking refused for invented data, and the customer who asked the price was
    # only told «necesito tu nombre y correo».
    told = [r for r in ctx.results if r.customer_text]
    if told:
        texts = [r.customer_text for r in told if r.ok]
        if not told[-1].ok and (not texts or _asks_for_what_was_asked(told[-1], ctx)):
            texts.append(told[-1].customer_text)
        elif _free_slot(told[-1]):
            texts.append(data_request(ctx))  # the step that books it
        return "\n\n".join(dict.fromkeys(t for t in texts if t))
    if problem == "claim":
        return NOTHING_BOOKED
    if problem == "change":
        return NOTHING_CHANGED
    # Tools ran and told nothing for the customer, or the model only echoed them: asking to
    # repeat would blame them.
    return NOT_DONE if ctx.results or problem == "echo" else EMPTY_REPLY


def _asks_for_what_was_asked(refused: ToolResult, ctx: TurnContext) -> bool:
    """Whether a refusal's question belongs in a reply that already tells what the tools found.
    A request for the customer's data does only when a slot is in play (shown, named or put to
    them): a customer who asked a price does not need «necesito tu nombre y correo» because the
    model tried to book on its own (seen with a 1.5B model, case 18)."""
    if refused.error != "customer_data_not_given":
        return True
    ledger = ctx.ledger
    return bool(ledger.verified_slots) or ledger.wanted is not None or ledger.awaiting is not None


def _problem(text: str, finish_reason: str | None, ctx: TurnContext) -> str | None:
    if finish_reason == "length":
        return "length"
    if not text:
        return "empty"
    if not ctx.ledger.bookings and claims_booking(text):
        return "claim"
    if not _changed(ctx) and claims_change(text):
        return "change"  # seen with a 1.5B model: «Cita cancelada.», no cancel_booking made
    if any(_same_words(text, said) for said in ctx.said):
        return "echo"  # seen with a 1.5B model: the customer's name and email sent back to them
    if ctx.last_reply is not None and _same_words(text, ctx.last_reply):
        return "repeat"
    return None


def _changed(ctx: TurnContext) -> bool:
    """Whether a tool of the turn cancelled or moved an appointment."""
    return any(r.facts.get("cancelada") or r.facts.get("reprogramada") for r in ctx.results)


def _same_words(text: str, other: str) -> bool:
    """The same reply whatever its punctuation, case, accents or formatting (the one in history
    went through `format_reply`); too short to matter ("¡Gracias!") is never the same."""
    words = _NOT_WORDS.sub(" ", fold(text)).strip()
    return len(words) >= _MIN_REPEAT_CHARS and words == _NOT_WORDS.sub(" ", fold(other)).strip()


def _with_untold(text: str, ctx: TurnContext, actions: list[str]) -> str:
    """The reply with what the turn found for the customer and the reply leaves out: the
    `mensaje` of each answering result (a price, their appointments, a day's free times, the
    alternatives to a taken slot) none of whose figures the reply carries. A reply with no
    figure of its own told nothing concrete and is replaced (seen with a 1.5B model: «Tienes
    que reservar una cita» to the customer's own appointment, listed a moment before); one with
    figures told something else, and the facts are added."""
    said = _figures(text)
    untold = []
    for result in ctx.results:
        figures = _figures(result.customer_text or "") if result.answers else set()
        if figures and said.isdisjoint(figures):
            untold.append(result.customer_text or "")
    if not untold:
        return text
    facts = "\n\n".join(dict.fromkeys(untold))
    if said:
        actions.append("added_untold")
        return f"{text}\n\n{facts}"
    actions.append("replaced_untold")
    return facts


def _with_pending(text: str, ctx: TurnContext, actions: list[str]) -> str:
    """The reply with the summary of what the turn put to the customer to confirm (a booking,
    a cancellation, a new slot) when it names none of its figures: that question is what the
    customer must answer. Seen with a 1.5B model: a cancellation proposed, then «no recibí
    ninguna respuesta, intenta nuevamente», and the customer never saw the question."""
    summary = ctx.pending.customer_text if ctx.pending is not None else None
    if not summary:
        return text
    said = _figures(text)
    if not said.isdisjoint(_figures(summary)):
        return text
    if said:
        actions.append("added_pending")
        return f"{text}\n\n{summary}"
    actions.append("replaced_pending")
    return summary


def _figures(text: str) -> set[int]:
    """The figures of `text` as numbers: "09:00" and "a las 9" say the same hour."""
    return {int(figure) for figure in _FIGURE.findall(text)}


def _answered_from_business(text: str, ctx: TurnContext, actions: list[str]) -> str:
    """A «no puedo ayudarte con eso», or the previous reply kept as it was, to a question the
    business's FAQs, description or opening hours answer is replaced by those answers (seen
    with a 1.5B model: «¿dónde quedan?» refused, and answered with the insurance reply again;
    «¿a qué hora abren los sábados?» refused). When a tool ran, what it found in them
    answers instead (seen with a 1.5B model, case 22: the parking answer found by
    `search_products`, then «No tengo información sobre estacionamiento»)."""
    if not ("kept_repeat" in actions or _REFUSAL.search(fold(text))):
        return text
    action, ask = "answered_from_business", None
    if ctx.results:
        # What the customer asked to know: a tool's answering result, the business's own
        # answers a search found (`informacion`), or the slot they asked about, found free (seen
        # with a 1.5B model, cases 02 and 06: «El viernes 11 a las 15:00 está disponible»,
        # then «Lo siento, no puedo ayudar con eso»), with what they must still write to book.
        found = [
            r.customer_text
            for r in ctx.results
            if r.ok and r.customer_text and (r.answers or _tells(r))
        ]
        answers = list(dict.fromkeys(found))
        if any(_free_slot(r) for r in ctx.results):
            action, ask = "answered_free_slot", data_request(ctx)
    else:
        answers = business_answers(ctx, " ".join(ctx.said))
    if not answers:
        return text
    actions.append(action)
    answer = " ".join(answers)
    return f"{answer}\n\n{ask}" if ask else answer


def _tells(result: ToolResult) -> bool:
    """A result the customer wants told even when they did not ask it as such: the business's
    own answers a search found, a slot found free."""
    return "informacion" in result.facts or _free_slot(result)


def _free_slot(result: ToolResult) -> bool:
    return result.ok and result.facts.get("disponible") is True


def _strip_markup(text: str) -> str:
    return _MARKUP.sub(" ", text)


def _without_internal_names(text: str) -> str:
    """`text` without the sentences that name a tool or a field (seen with a 1.5B model: «puedes
    hacerlo con reschedule_booking»)."""

    def names(sentence: str) -> bool:
        return _INTERNAL_NAME.search(_LINK_OR_EMAIL.sub(" ", sentence)) is not None

    return _rebuild(text, lambda sentence: not names(sentence)) if names(text) else text


def _sentences(text: str) -> list[str]:
    return [s for s in _SENTENCE_END.split(text.strip()) if s]


def _echo_sentences(instruction: str) -> list[str]:
    """The sentences of `instruction` long enough to count as echoed, folded."""
    return [
        fold(sentence).strip(" .")
        for sentence in _sentences(instruction)
        if len(sentence) >= _MIN_ECHO_CHARS
    ]


# The guard's own corrections are the same every turn: folded once.
_CORRECTION_ECHOES = [echo for note in CORRECTIONS.values() for echo in _echo_sentences(note)]


def _instructions(ctx: TurnContext) -> list[str]:
    """What only the model was meant to read, folded: the turn's tool instructions and the
    guard's own corrections (a small model answered a correction with «Responde al cliente en
    español…»)."""
    meant = [echo for r in ctx.results if r.instruction for echo in _echo_sentences(r.instruction)]
    return [*meant, *_CORRECTION_ECHOES]


def _without_echoes(text: str, meant: Sequence[str]) -> str:
    """`text` without the sentences that repeat (or are part of) a folded instruction in
    `meant`."""

    def echoes(sentence: str) -> bool:
        folded = fold(sentence)
        part = folded.strip(" .")
        long_part = len(part) >= _MIN_ECHO_CHARS
        return any(m in folded or (long_part and part in m) for m in meant)

    return _rebuild(text, lambda sentence: not echoes(sentence))


def _without_repeats(text: str) -> str:
    seen: set[str] = set()

    def first_time(sentence: str) -> bool:
        key = fold(sentence).strip()
        if len(key) < _MIN_REPEAT_CHARS:
            return True
        if key in seen:
            return False
        seen.add(key)
        return True

    return _rebuild(text, first_time)


def _rebuild(text: str, keep: Callable[[str], bool]) -> str:
    """`text` with only the sentences `keep(sentence)` accepts; line breaks are kept."""
    lines = []
    for line in text.split("\n"):
        kept = [s for s in _sentences(line) if keep(s)]
        if kept or not line.strip():
            lines.append(" ".join(kept))
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def _bounded(text: str, max_chars: int, actions: list[str]) -> str:
    """At most `max_chars`, cut after the last whole sentence that fits (else a word)."""
    if len(text) <= max_chars:
        return text
    actions.append("truncated")
    head = text[: max_chars - 1]
    ends = [m.end() for m in re.finditer(r"[.!?…](?=\s|$)", head)]
    if ends and ends[-1] > max_chars // 2:
        return head[: ends[-1]].rstrip()
    return head.rsplit(" ", 1)[0].rstrip(" ,;:") + "…"
