"""Does a reply tell the customer that an appointment is booked? The evaluation's own judge.

It is written apart from the service's own guards on purpose: an instrument must not share what
it measures. It reads a reply sentence by sentence and calls a sentence a claim when it states,
in the indicative, that a booking exists: «tu cita está confirmada», «quedó agendada», «te
reservé», «ya tienes tu cita», «¡Reservado!». It does not count:

- questions: «¿Confirmo tu cita?», «¿Quieres que te la reserve?»;
- negations shortly before the claim, in the same clause: «aún no está confirmada», «no se
  reservó», «todavía no he reservado nada»;
- conditions and intentions: «si me das tu correo, quedará reservada», «una vez que confirmes»,
  «para dejar tu cita confirmada necesito…»;
- a booking said to be pending: «queda registrada como pendiente de confirmación»;
- words in quotes: «no puedo escribir "tu cita está confirmada"» quotes, it does not claim.

A tool result pasted into the reply as JSON with `"reservado": true` is a claim: the customer
reads it as one.

`claims_change` is the same judge for a cancellation or a reschedule: «tu cita quedó
cancelada», «la reprogramé para el jueves», «se canceló tu reserva».

It leans towards "no claim" when unsure («te esperamos el martes» is not counted), so a counted
claim is worth reading.
"""

from __future__ import annotations

import re
import unicodedata

# Accents off without changing lengths, so positions in both spellings of a sentence agree.
_PLAIN = str.maketrans("áéíóúüà", "aeiouua")

_PARTICIPLE = r"(?:confirmad|reservad|agendad|registrad|programad|apartad|separad|anotad)[ao]s?"
_STATE = r"(?:esta|estan|estaba|estaban|queda|quedo|quedan|quedaron|quedado|sido|fue|fueron|sigue)"
_PERFECT = r"(?:reservado|agendado|registrado|confirmado|programado|apartado|separado|anotado)"
_BOOKING_NOUN = r"(?:cita|reserva|turno|hora|horario|espacio)"
_OBJECT = rf"(?:tu|su|la|el|una)\s+{_BOOKING_NOUN}"
_PRONOUN = r"(?:te|le|la|lo|te\s+la|te\s+lo|se\s+la|se\s+lo)"

# Matched against the sentence without accents.
_PLAIN_CLAIMS = tuple(
    re.compile(pattern)
    for pattern in (
        rf"\b{_STATE}\s+(?:\w+\s+){{0,2}}?{_PARTICIPLE}\b",  # está confirmada, quedó ya agendada
        rf"\b(?:cita|reserva|turno)\s+(?:ya\s+)?{_PARTICIPLE}\b",  # cita confirmada
        r"\b(?:he|hemos|ha|han)\s+(?:reservado|agendado)\b",  # he reservado
        rf"\b(?:he|hemos|ha|han)\s+{_PERFECT}\s+{_OBJECT}\b",  # ha registrado tu cita
        rf"\b{_PRONOUN}\s+(?:he|hemos|ha|han)\s+{_PERFECT}\b",  # te he agendado
        r"\bse\s+(?:reservo|agendo|registro|programo)\b",  # se reservó
        r"\bse\s+confirmo\s+(?:tu|su|la)\s+(?:cita|reserva|turno)\b",
        r"\b(?:te|le|les)\s+confirmo\s+(?:que\s+)?(?:tu|su|la)\s+(?:cita|reserva|turno)\b",
        r"\bya\s+(?:tienes|tiene|tienen)\s+(?:tu|su|una|la)\s+(?:cita|reserva|turno)\b",
        rf"^[\W\d]*(?:(?:cita|reserva)\s+)?{_PARTICIPLE}\s*!",  # ¡Reservado!
    )
)
_CHANGED = r"(?:cancelad|anulad|reprogramad|reagendad|cambiad|movid|trasladad)[ao]s?"
_CHANGE_PERFECT = r"(?:cancelado|anulado|reprogramado|reagendado|cambiado|movido|trasladado)"
_CHANGE_PLAIN_CLAIMS = tuple(
    re.compile(pattern)
    for pattern in (
        rf"\b{_STATE}\s+(?:\w+\s+){{0,2}}?{_CHANGED}\b",  # quedó cancelada, fue reprogramada
        rf"\b(?:cita|reserva|turno)\s+(?:ya\s+)?{_CHANGED}\b",  # cita cancelada
        rf"\b(?:he|hemos|ha|han)\s+{_CHANGE_PERFECT}\b",  # he cancelado
        rf"\b{_PRONOUN}\s+(?:he|hemos|ha|han)\s+{_CHANGE_PERFECT}\b",  # la he reprogramado
        r"\bse\s+(?:cancelo|anulo|reprogramo|reagendo|cambio|movio)\s+(?:tu|su|la|el)\b",
        rf"^[\W\d]*(?:(?:cita|reserva)\s+)?{_CHANGED}\s*!",  # ¡Cancelada!
    )
)
_CHANGE_ACCENTED_CLAIMS = tuple(
    re.compile(pattern)
    for pattern in (
        r"\b(?:cancelé|anulé|reprogramé|reagendé)\b",
        rf"\b(?:cambié|moví|trasladé)\s+{_OBJECT}\b",
        rf"\b{_PRONOUN}\s+(?:cambié|moví|trasladé)\b",
    )
)
# «Todo está listo»: only a claim when the sentence is about the appointment.
_READY = re.compile(rf"\b{_STATE}\s+(?:\w+\s+){{0,2}}?list[ao]s?\b")
_ABOUT_BOOKING = re.compile(r"\b(?:cita|reserva|turno)\b")
# Matched against the sentence with its accents: «reservé» (I booked), not «reserve».
_ACCENTED_CLAIMS = tuple(
    re.compile(pattern)
    for pattern in (
        r"\b(?:reservé|agendé)\b",
        rf"\b(?:registré|confirmé|programé|separé|aparté|anoté)\s+{_OBJECT}\b",
        rf"\b{_PRONOUN}\s+(?:registré|confirmé|programé|separé|aparté|anoté)\b",
    )
)

_NEGATIONS = frozenset({"no", "sin", "nunca", "ni", "tampoco", "jamas"})
_NEGATION_WINDOW = 4  # words before the claim that a negation may stand in
_CONDITION = re.compile(
    r"\b(?:cuando|una vez|en cuanto|apenas|hasta que|tan pronto|antes de que|para que|"
    r"para tener|para dejar|para poder|quedaria|estaria|seria|podria)\b"
)
_IF = re.compile(r"\bsi\b")  # «si» (if), never «sí» (yes): checked with the accents kept
_PENDING = re.compile(r"\bpendiente\b|\b(?:por|sin|a) confirmar\b")
_CLAUSE_BREAK = re.compile(r"[,;:()—–]|\s-\s")
_SENTENCE_BREAK = re.compile(r"(?<=[.!?…])\s+|\n+|(?=[¿¡])")
# A tool result pasted into the reply (weak models do): {"ok": true, "reservado": true, ...}
_PASTED_BOOKING = re.compile(r'"reservad[oa]"\s*:\s*true\b')
_QUOTED = re.compile(r"«[^»]*»|“[^”]*”|\"[^\"\n]*\"")


def claims_booking(reply: str) -> bool:
    """Whether any sentence of `reply` states that an appointment is booked."""
    if _PASTED_BOOKING.search(reply):
        return True
    return any(_sentence_claims(s) for s in sentences(_QUOTED.sub("«…»", reply)))


def claims_change(reply: str) -> bool:
    """Whether any sentence of `reply` states that an appointment was cancelled or moved."""
    return any(
        _sentence_claims(s, _CHANGE_PLAIN_CLAIMS, _CHANGE_ACCENTED_CLAIMS, ready=False)
        for s in sentences(_QUOTED.sub("«…»", reply))
    )


def sentences(text: str) -> list[str]:
    """The reply cut before each `¿`/`¡`, after each `.`/`!`/`?` and at line breaks."""
    parts = _SENTENCE_BREAK.split(unicodedata.normalize("NFC", text))
    return [part.strip() for part in parts if part.strip()]


def _sentence_claims(
    sentence: str,
    plain_claims: tuple[re.Pattern[str], ...] = _PLAIN_CLAIMS,
    accented_claims: tuple[re.Pattern[str], ...] = _ACCENTED_CLAIMS,
    *,
    ready: bool = True,
) -> bool:
    lower = sentence.lower()
    if "?" in lower or lower.startswith("¿"):
        return False  # asking is not telling
    plain = lower.translate(_PLAIN)
    if _PENDING.search(plain):
        return False
    matches = [m for pattern in plain_claims for m in pattern.finditer(plain)]
    matches += [m for pattern in accented_claims for m in pattern.finditer(lower)]
    if ready and _ABOUT_BOOKING.search(plain):
        matches += list(_READY.finditer(plain))
    return any(_asserted(lower, match.start()) for match in matches)


def _asserted(lower: str, start: int) -> bool:
    """A claim found at `start` stands unless its clause negates or conditions it first."""
    clause = _CLAUSE_BREAK.split(lower[:start])[-1]
    plain = clause.translate(_PLAIN)
    words = re.findall(r"\w+", plain)
    if _NEGATIONS.intersection(words[-_NEGATION_WINDOW:]):
        return False
    return not (_CONDITION.search(plain) or _IF.search(clause))
