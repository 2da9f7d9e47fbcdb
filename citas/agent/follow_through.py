"""Steps the loop takes itself when the customer clearly asked for them and the model did not.

A bare «sí» to a proposed booking books it. With `CITAS_CONFIRM_BEFORE_BOOKING` the customer is
shown the exact summary (slot, name, email) and asked to confirm; the second `create_booking` is
then a formality, and it is the step small models miss most: they answer «Sí, confírmala» with
the summary again, or an apology, and the customer leaves without the appointment they
confirmed. So when the customer's whole message is a yes, a booking awaits it
(`BookingLedger.awaiting`) and the model's turn made no booking and no new proposal, the loop
makes that call itself, through the same tool and rules. Anything more than a yes ("sí, pero a
las 5", "déjame pensarlo") is left to the model.

Customer data for the slot they asked proposes it. The customer asks for a time, it is free
(`BookingLedger.wanted`), they are asked for their name and email and send them: the model's one
job is then `create_booking`, and small models answer with thanks, or the question again. So
when a turn brings the customer's name or email, their data is complete, no booking awaits a
yes and the model made no booking and no proposal, the loop makes the proposal, the same call the
model would: the customer still sees the summary and has to say yes. A message that also names
a day or a time ("Ana Pérez, pero mejor el viernes") is left to the model, unless the wanted
slot was found in this very turn (the time asked is then the one checked).

A time chosen among those offered is the one wanted. The customer's slot is taken, the
alternatives are offered, they answer «la de las 4 de la tarde»: small models then ask for the
name and email without checking that time, so nothing is wanted when the data comes. So a
message naming a time (and maybe a day) that matches exactly one slot shown as bookable makes
it the wanted one, before the model answers; a day or time naming another slot drops the wanted
one, so that data sent later never proposes a slot the customer moved away from (`named_when`,
`BookingService.choose`). A day and a time named together («el jueves a las 6 de la tarde»;
«el sábado a la misma hora», the hour the customer named before) name the slot whole and make it
the wanted one, shown or not: the proposal checks it, and the customer still says yes to a
summary. When the model answers such a message without any tool («no tengo información
suficiente»), or only with calls that were all refused, the loop checks that slot itself and the
model answers again with the result. A time alone right after a message that named a day alone
(«para mañana», then «a las 10») is that day's slot.

A bare «sí» to a proposed change makes it. The last turn put a cancellation or a new slot to
the customer (`proposed_change`, read from that turn's tool results) and the customer answers
yes only («Sí», «Sí, cancélala»): when the model does not make the call, the loop does, with
the appointment's reference as the service gave it.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Iterable, Sequence
from contextlib import suppress
from datetime import date, time
from functools import lru_cache
from typing import Any

from citas.customer_words import CustomerWords
from citas.datetext import UnclearWhen, resolve_date, resolve_time
from citas.domain import local_time
from citas.folding import fold
from citas.messages import Message, ToolCallRequest

# Every word of the message must be one of these, and one of them a yes.
_YES_WORDS = (
    "si sii sip siii yes ok okay oki dale claro listo perfecto correcto exacto adelante hazlo "
    "confirmo confirma confirmala confirmalo confirmar confirmado confirmada acuerdo reservala "
    "reservalo agendala agendalo va"
)
_OTHER_WORDS = (
    "de por favor porfa porfis gracias muchas mil ya bueno bien esta eso es asi genial super "
    "excelente la lo me te nomas parece"
)
_YES = frozenset(_YES_WORDS.split())
_ALSO = frozenset(_OTHER_WORDS.split())
_WORD = re.compile(r"[a-z]+")
_DAY_OR_TIME = (
    "hoy manana pasado lunes martes miercoles jueves viernes sabado domingo semana mes "
    "mediodia tarde noche hora horas am pm enero febrero marzo abril mayo junio julio agosto "
    "setiembre septiembre octubre noviembre diciembre"
)
_DAY_OR_TIME_WORDS = frozenset(_DAY_OR_TIME.split())
_EMAIL = re.compile(r"\S+@\S+")
_SAME_TIME = re.compile(r"\bmisma\s+hora\b")
_NO = re.compile(r"\bno\b")
_SENTENCE_BREAK = re.compile(r"[.!?¿¡\n]+")


# The verb of the change itself says yes to it («Sí, cancélala»), and only to it: to a booking
# put to the customer, «cancélala» is a no.
# «Sí, confirmo el cambio», «Sí, confirmo la cancelación»: the change named, around a yes.
_YES_TO_CHANGE = {
    "cancel_booking": (
        _YES | {"cancela", "cancelala", "cancelalo", "cancelar", "anulala"},
        _ALSO | {"el", "cancelacion"},
    ),
    "reschedule_booking": (
        _YES
        | {"cambia", "cambiala", "cambialo", "cambiar", "muevela", "muevelo", "pasala", "pasalo"}
        | {"reprogramala", "reprogramalo", "reprogramar"},
        _ALSO | {"el", "cambio"},
    ),
}


def is_bare_yes(
    messages: Iterable[str], yes: frozenset[str] = _YES, also: frozenset[str] = _ALSO
) -> bool:
    """Whether the customer's message(s) of the turn say yes and nothing else."""
    words = [w for message in messages for w in _WORD.findall(fold(message))]
    allowed = all(w in yes or w in also for w in words)
    return allowed and any(w in yes for w in words)


def is_bare_yes_to(change: ToolCallRequest, messages: Iterable[str]) -> bool:
    """Whether the message(s) say yes, and nothing else, to `change` (`proposed_change`)."""
    yes, also = _YES_TO_CHANGE.get(change.name, (_YES, _ALSO))
    return is_bare_yes(messages, yes, also)


def confirming_arguments(awaiting: dict[str, Any]) -> dict[str, str]:
    """The `create_booking` arguments that confirm the awaiting booking, as the model would
    write them (the turn's note shows them; `booking_call` sends them)."""
    start = local_time(str(awaiting["slot"]))
    arguments = {
        "date": f"{start:%Y-%m-%d}",
        "time": f"{start:%H:%M}",
        "customer_name": awaiting.get("name"),
        "customer_email": awaiting.get("email"),
        "service": awaiting.get("service"),
    }
    return {name: str(value) for name, value in arguments.items() if value}


def wanted_data(
    said: Iterable[str], customer: CustomerWords, *, email_required: bool
) -> dict[str, str] | None:
    """The name and email the wanted slot is proposed with: the customer's latest, when this
    turn's message(s) brought one of them and both are known (the email only if required)."""
    this_turn = CustomerWords()
    for message in said:
        this_turn.add(message)
    if this_turn.latest_name() is None and this_turn.latest_email() is None:
        return None
    name, email = customer.latest_name(), customer.latest_email()
    if name is None or (email is None and email_required):
        return None
    return {"name": name, "email": email} if email else {"name": name}


def mentions_day_or_time(said: Iterable[str]) -> bool:
    """Whether the message(s) name a day or a time (a digit outside an email, or a word such as
    «viernes», «mañana», «tarde»)."""
    text = fold(" ".join(_EMAIL.sub(" ", message) for message in said))
    return any(ch.isdigit() for ch in text) or not _DAY_OR_TIME_WORDS.isdisjoint(
        _WORD.findall(text)
    )


def named_when(
    said: Iterable[str], today: date, earlier: Callable[[], Iterable[str]] = tuple
) -> tuple[date | None, time | None]:
    """The day and the time the customer's message(s) name, each None when none or unclear
    («la de las 4» could be morning or afternoon); the latest message naming one wins. «A la
    misma hora» is the time of the latest of the customer's `earlier` messages that names one
    (read only then)."""
    day: date | None = None
    at: time | None = None
    for text in said:
        named_day, named_time, same_time = _named_in(text, today)
        if named_day is not None:
            day = named_day
        if named_time is not None:
            at = named_time
        if same_time:
            at = _latest_time(earlier()) or at
    return day, at


@lru_cache(maxsize=1024)
def _named_in(text: str, today: date) -> tuple[date | None, time | None, bool]:
    """The day and the time one message names clearly, and whether it says «a la misma hora».
    Cached: a turn reads its message here from the loop and again from the tools."""
    day: date | None = None
    at: time | None = None
    with suppress(UnclearWhen):
        day = resolve_date(text, today)
    with suppress(UnclearWhen):
        at = resolve_time(text)
    return day, at, _SAME_TIME.search(fold(text)) is not None


_TOWARDS = re.compile(r"\b(?:al|para)\b")
# Where the appointment is now, not where it goes: «mi cita del martes», «la cita de mañana».
_FROM = re.compile(r"\b(?:cita|reserva|turno)\s+(?:del|de)\b[^,.;:?!]*")


def day_moved_to(said: Iterable[str], today: date) -> date | None:
    """The day an appointment is to be moved to, in the customer's words: the day named after
    the last «al» / «para» («pasar mi cita del miércoles al jueves»), else the one day named
    outside «mi cita del…». The latest message naming one wins; None when none is clear."""
    for text in reversed(list(said)):
        folded = fold(text)
        for towards in reversed(list(_TOWARDS.finditer(folded))):
            day, _, _ = _named_in(folded[towards.end() :], today)
            if day is not None:
                return day
        day, _, _ = _named_in(_FROM.sub(" ", folded), today)
        if day is not None:
            return day
    return None


def day_named_alone(message: str | None, today: date) -> date | None:
    """The day `message` names when it names a day and no time («para mañana»): what a
    customer who writes one thing per message («para mañana», «a las 10») means the next
    message's time for."""
    if message is None:
        return None
    day, at, _ = _named_in(message, today)
    return day if at is None else None


def _latest_time(messages: Iterable[str]) -> time | None:
    for text in reversed(list(messages)):
        with suppress(UnclearWhen):
            return resolve_time(text)
    return None


def denies(said: Iterable[str]) -> bool:
    """Whether a sentence of the message(s) that names a day or a time says no («el jueves a
    las 6 no puedo»): what they name is not asked for. A no in another sentence denies
    nothing (seen with a 1.5B model, case 34: «Ah, no sabía. Entonces el martes 8 a la misma
    hora» read as a no, the Tuesday never checked)."""
    return any(
        _NO.search(fold(sentence)) and mentions_day_or_time([sentence])
        for text in said
        for sentence in _SENTENCE_BREAK.split(text)
    )


def proposed_change(previous_turn: Sequence[Message]) -> ToolCallRequest | None:
    """The change (a cancellation, a new slot) the previous turn ended by putting to the
    customer, as the call that makes it: the same arguments, with the appointment's reference as
    the service gave it (a model may have passed one it made up). None when that turn's last
    tool call that did something was anything else (refused calls after it did nothing: seen
    with a 1.5B model, a cancellation proposed and then a handoff nobody asked for)."""
    calls = {
        call["id"]: call["function"]
        for m in previous_turn
        if m["role"] == "assistant"
        for call in m.get("tool_calls", [])
    }
    for message in reversed(previous_turn):
        if message["role"] != "tool":
            continue
        try:
            result = json.loads(message["content"] or "")
        except ValueError:
            return None
        if isinstance(result, dict) and result.get("ok") is False:
            continue
        break
    else:
        return None
    function = calls.get(message["tool_call_id"])
    if function is None or function["name"] not in _YES_TO_CHANGE:
        return None
    try:
        arguments = json.loads(function["arguments"])
    except ValueError:
        return None
    if not isinstance(result, dict) or result.get("pendiente_confirmacion") is not True:
        return None
    if not isinstance(arguments, dict) or not isinstance(result.get("referencia"), str):
        return None
    return _call(function["name"], {**arguments, "reference": result["referencia"]})


def availability_call(wanted: dict[str, Any]) -> ToolCallRequest:
    """The `check_availability` call for the wanted slot: the call the model should have made."""
    start = local_time(str(wanted["slot"]))
    arguments: dict[str, str] = {"date": f"{start:%Y-%m-%d}", "time": f"{start:%H:%M}"}
    if wanted.get("service"):
        arguments["service"] = str(wanted["service"])
    return _call("check_availability", arguments)


def booking_call(awaiting: dict[str, Any]) -> ToolCallRequest:
    """The `create_booking` call for `awaiting` (or for the wanted slot with the customer's
    data, which has the same keys): the call the model should have made."""
    return _call("create_booking", confirming_arguments(awaiting))


def _call(tool: str, arguments: dict[str, Any]) -> ToolCallRequest:
    encoded = json.dumps(arguments, ensure_ascii=False)
    return ToolCallRequest(f"call_citas_{uuid.uuid4().hex[:12]}", tool, encoded)
