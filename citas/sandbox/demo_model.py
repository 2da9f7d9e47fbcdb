"""A deterministic, rule-based stand-in for the LLM, so `citas serve --sandbox` works without a key.

`demo_model()` runs it through the model seam (`FunctionModel`). It reads only the request's
messages (no clock of its own while the agent's date message is present), so replies repeat.
"""

from __future__ import annotations

import json
import re
import secrets
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date
from typing import Any

from citas.agent.function_model import FunctionModel
from citas.agent.model import ModelReply, ToolSchema
from citas.datetext import UnclearWhen, resolve_date, resolve_time
from citas.messages import ToolCallRequest

__all__ = [
    "DEMO_NOTICE",
    "Facts",
    "collect_facts",
    "demo_model",
    "demo_reply",
    "extract_facts",
    "parse_date",
    "parse_email",
    "parse_name",
    "parse_phone",
    "parse_time",
    "product_query",
    "wants_products",
]

DEMO_NOTICE = "(Modelo de demostración del sandbox: respondo con reglas fijas, no soy un LLM real.)"
GREETING = (
    "¡Hola! Puedo revisar horarios y reservar tu cita. ¿Para qué fecha y hora la quieres? "
    "Por ejemplo: «mañana a las 3pm»."
)

RawMessage = Mapping[str, Any]  # read leniently: the demo must not trip on any shape

# --------------------------------------------------------------------------- parsing


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


_NOW = re.compile(r"Fecha y hora actuales:.*?(\d{4}-\d{2}-\d{2}) (\d{2}:\d{2})")
_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
_PHONE = re.compile(r"(?<![\d+])(\+?51[\s-]?)?(9\d{2})[\s-]?(\d{3})[\s-]?(\d{3})(?!\d)")
_NAME_TRIGGER = re.compile(r"\b(me llamo|mi nombre es|soy)\s+", re.IGNORECASE)
_NAME_TOKEN = re.compile(r"[^\W\d_]+|\S")
_NAME_STOP = _words(
    "y e o mi con de del la el para por que quiero "
    "necesito correo email telefono celular numero tu su un una"
)

_PRODUCT = re.compile(r"\b(precio|cuanto|cuesta|servicio|producto|venden)")
_WORD = re.compile(r"[^\W_]+")
_PERSON = re.compile(r"\b(una persona|un humano|un asesor|una asesora|encargad[ao])\b")
_MY_BOOKINGS = re.compile(r"\b(cancel\w*|reprogram\w*|mis citas|(cambiar|mover) mi cita)\b")
_STOPWORDS = _words(
    "a al algo alguna alguno buenas buenos como con cual cuales de del dias el en es esta "
    "estan favor gracias hay hola la las le les lo los me mi mis noches o para por que "
    "quiero quisiera saber se sobre son su sus tardes te tiene tienen tienes tu un una "
    "unas uno unos usted ustedes y ya cuanta cuantas cuantos cuestan costo costos "
    "informacion info vende ofrecen ofrece"
)


def _fold(text: str) -> str:
    """Lowercase without accents, so `mañana`/`manana` and `sábado`/`sabado` match alike."""
    decomposed = unicodedata.normalize("NFD", text.lower())
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def parse_date(text: str, today: date) -> date | None:
    """The date a Spanish message names (`citas.datetext`: the service's own reading), or None
    when it names none or not a single one."""
    try:
        return resolve_date(text, today)
    except UnclearWhen:
        return None


def parse_time(text: str) -> str | None:
    """The time a Spanish message names, as HH:MM (`citas.datetext`), or None when it names none
    or not a single one ("a las 3": morning or afternoon?)."""
    try:
        return f"{resolve_time(text):%H:%M}"
    except UnclearWhen:
        return None


def parse_email(text: str) -> str | None:
    """The last email address in the text."""
    found = _EMAIL.findall(text)
    return found[-1] if found else None


def parse_phone(text: str) -> str | None:
    """A Peruvian mobile number (`987654321`, `+51 987 654 321`), normalized without spaces."""
    match = _PHONE.search(_EMAIL.sub(" ", text))
    if match is None:
        return None
    number = match[2] + match[3] + match[4]
    return f"+51{number}" if match[1] else number


def parse_name(text: str) -> str | None:
    """1–3 words after `me llamo`, `mi nombre es` or `soy` (which needs capitals: `soy de Lima`)."""
    name = None
    for trigger in _NAME_TRIGGER.finditer(text):
        strict = trigger[1].lower() == "soy"
        name = _name_words(text[trigger.end() :], strict) or name
    return name


def _name_words(rest: str, strict: bool) -> str | None:
    words: list[str] = []
    for token in _NAME_TOKEN.finditer(rest):
        word = token[0]
        if len(words) == 3 or not word.isalpha() or _fold(word) in _NAME_STOP:
            break
        if strict and not word[0].isupper():
            break
        words.append(word[0].upper() + word[1:])
    return " ".join(words) or None


def wants_products(text: str) -> bool:
    """Whether the message asks about prices, products or services."""
    return _PRODUCT.search(_fold(text)) is not None


def product_query(text: str) -> str:
    """The message's keywords, without question words and stop words (`servicios` if none)."""
    words = [
        word
        for word in _WORD.findall(text.lower())
        if _fold(word) not in _STOPWORDS and not _PRODUCT.match(_fold(word))
    ]
    return " ".join(words) or "servicios"


# --------------------------------------------------------------------------- facts


@dataclass(frozen=True, slots=True)
class Facts:
    """What the customer has told us so far; later messages override earlier ones."""

    date: str | None = None
    time: str | None = None
    name: str | None = None
    email: str | None = None
    phone: str | None = None

    def merged(self, newer: Facts) -> Facts:
        """These facts updated with every field `newer` knows."""
        updates = {k: v for k, v in _fields(newer).items() if v is not None}
        return replace(self, **updates)

    @property
    def bookable(self) -> bool:
        """Enough to call create_booking."""
        return None not in (self.date, self.time, self.name, self.email)


def _fields(facts: Facts) -> dict[str, str | None]:
    return {
        "date": facts.date,
        "time": facts.time,
        "name": facts.name,
        "email": facts.email,
        "phone": facts.phone,
    }


def extract_facts(text: str, today: date) -> Facts:
    """Everything one message says."""
    day = parse_date(text, today)
    return Facts(
        date=day.isoformat() if day else None,
        time=parse_time(text),
        name=parse_name(text),
        email=parse_email(text),
        phone=parse_phone(text),
    )


def collect_facts(user_texts: Iterable[str], today: date) -> Facts:
    """Facts from all the customer's messages, the latest winning."""
    facts = Facts()
    for text in user_texts:
        facts = facts.merged(extract_facts(text, today))
    return facts


# --------------------------------------------------------------------------- messages


def _text(content: object) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, Mapping))
    return ""


def _today(messages: Sequence[RawMessage]) -> date:
    for message in reversed(messages):
        if message.get("role") in ("system", "developer") and (
            match := _NOW.search(_text(message.get("content")))
        ):
            return date.fromisoformat(match[1])
    # Only when the agent sent no date message: better a live demo than a refusal.
    return date.today()


def _user_texts(messages: Sequence[RawMessage]) -> list[str]:
    return [_text(m.get("content")) for m in messages if m.get("role") == "user"]


def _has_spoken(messages: Sequence[RawMessage]) -> bool:
    return any(m.get("role") == "assistant" and _text(m.get("content")) for m in messages)


def _arguments(tool_call: Mapping[str, Any]) -> dict[str, Any]:
    try:
        parsed = json.loads(tool_call.get("function", {}).get("arguments") or "{}")
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _result(message: RawMessage) -> dict[str, Any]:
    content = _text(message.get("content"))
    try:
        parsed = json.loads(content)
    except ValueError:
        parsed = None
    return parsed if isinstance(parsed, dict) else {"ok": False, "mensaje": content}


def _last_round(messages: Sequence[RawMessage]) -> list[tuple[Mapping[str, Any], dict[str, Any]]]:
    """(tool call, parsed result) pairs of the latest assistant tool-call group."""
    start = max((i for i, m in enumerate(messages) if m.get("role") != "tool"), default=0)
    calls = {c.get("id"): c for c in messages[start].get("tool_calls") or ()}
    return [
        (calls.get(m.get("tool_call_id"), {}), _result(m))
        for m in messages[start + 1 :]
        if m.get("role") == "tool"
    ]


def _succeeded(messages: Sequence[RawMessage], tool: str, facts: Facts, flag: str) -> bool:
    """Whether a `tool` call for this date and time got a result with `flag` true."""
    results = {m.get("tool_call_id"): _result(m) for m in messages if m.get("role") == "tool"}
    for message in messages:
        for tool_call in message.get("tool_calls") or ():
            args = _arguments(tool_call)
            if (
                tool_call.get("function", {}).get("name") == tool
                and (args.get("date"), args.get("time")) == (facts.date, facts.time)
                and results.get(tool_call.get("id"), {}).get(flag) is True
            ):
                return True
    return False


def _booked(messages: Sequence[RawMessage], facts: Facts) -> bool:
    """Whether a create_booking for this date and time already booked (not just proposed)."""
    return _succeeded(messages, "create_booking", facts, "reservado")


def _proposed(messages: Sequence[RawMessage], facts: Facts) -> bool:
    """Whether this date and time were put to the customer to confirm."""
    return _succeeded(messages, "create_booking", facts, "pendiente_confirmacion")


_YES = re.compile(r"\b(si|confirm\w*|dale|ok|okay|claro|listo|de acuerdo|perfecto|reserv\w*)\b")
_NOT_YET = re.compile(r"\b(no|todavia|aun|pensarlo|luego|despues|mas tarde)\b")


def _agrees(text: str) -> bool:
    """Whether the customer's message says yes (and not "todavía no" / "déjame pensarlo")."""
    folded = _fold(text)
    return bool(_YES.search(folded)) and not _NOT_YET.search(folded)


def _checked(messages: Sequence[RawMessage], facts: Facts) -> bool:
    """Whether check_availability found this date and time free in the conversation."""
    return _succeeded(messages, "check_availability", facts, "disponible")


# --------------------------------------------------------------------------- decisions


def _call(name: str, arguments: Mapping[str, Any]) -> ToolCallRequest:
    # A fresh id per call: the API refuses two tool calls with one id in a history.
    return ToolCallRequest(
        f"call_{secrets.token_hex(8)}", name, json.dumps(arguments, ensure_ascii=False)
    )


def _slot_available(result: Mapping[str, Any]) -> bool:
    if result.get("ok") is not True:
        return False
    for key in ("disponible", "available"):
        if key in result:
            return bool(result[key])
    # Without an explicit flag, offered alternatives mean the asked slot was taken.
    return not (result.get("alternativas") or result.get("alternatives"))


def _missing_contact(facts: Facts) -> str | None:
    missing = [label for label, v in (("nombre", facts.name), ("correo", facts.email)) if not v]
    if not missing:
        return None
    return f"Para reservarla, ¿me das tu {' y '.join(missing)}?"


def _after_tools(messages: Sequence[RawMessage], facts: Facts) -> ModelReply:
    """Relay each tool result's `mensaje`, then ask for what the booking still needs."""
    parts: list[str] = []
    follow_up: str | None = None
    last_round = _last_round(messages)
    checked_now = any(
        call.get("function", {}).get("name") == "check_availability" for call, _ in last_round
    )
    if checked_now and facts.bookable and _checked(messages, facts):
        return _booking_call(facts)  # the slot is free and the customer gave everything
    for tool_call, result in last_round:
        parts.append(str(result.get("mensaje") or "No pude completar esa consulta."))
        if tool_call.get("function", {}).get("name") != "check_availability":
            continue
        if "time" not in _arguments(tool_call):
            follow_up = "¿Qué horario prefieres?" if result.get("ok") else follow_up
        elif _slot_available(result):
            follow_up = _missing_contact(facts) or follow_up
    return ModelReply(" ".join([*parts, *([follow_up] if follow_up else [])]))


def _ask_missing(facts: Facts) -> ModelReply:
    if facts.date is None:
        thanks = f"Gracias, {facts.name}. " if facts.name else ""
        return ModelReply(f"{thanks}¿Para qué fecha y hora quieres tu cita?")
    if facts.time is None:
        return ModelReply(f"¿A qué hora te acomoda el {facts.date}?")
    ask = _missing_contact(facts) or "¿Confirmo tu cita?"
    return ModelReply(f"Tu cita sería el {facts.date} a las {facts.time}. {ask}")


def _booking_call(facts: Facts) -> ModelReply:
    args = {
        "date": facts.date,
        "time": facts.time,
        "customer_name": facts.name,
        "customer_email": facts.email,
    }
    if facts.phone:
        args["customer_phone"] = facts.phone
    return ModelReply(None, (_call("create_booking", args),))


def _next_action(messages: Sequence[RawMessage], today: date) -> ModelReply:
    texts = _user_texts(messages)
    if not texts:
        return ModelReply(GREETING)
    latest = texts[-1]
    facts = collect_facts(texts, today)
    folded = _fold(latest)
    if _PERSON.search(folded):
        return ModelReply(
            None, (_call("request_human", {"reason": "pidió hablar con una persona"}),)
        )
    if _MY_BOOKINGS.search(folded):
        return ModelReply(None, (_call("list_my_bookings", {}),))
    if wants_products(latest):
        return ModelReply(None, (_call("search_products", {"query": product_query(latest)}),))
    if facts.bookable:
        if _booked(messages, facts):
            return ModelReply(
                f"Tu cita del {facts.date} a las {facts.time} ya está registrada. ¿Algo más?"
            )
        if not _checked(messages, facts):
            args = {"date": facts.date, "time": facts.time}
            return ModelReply(None, (_call("check_availability", args),))
        if _proposed(messages, facts) and not _agrees(latest):
            return ModelReply("De acuerdo. Cuando quieras confirmar tu cita, escríbeme «sí».")
        return _booking_call(facts)
    said = extract_facts(latest, today)
    # Only a message that names a date or time re-checks; "ok" or a name alone does not.
    if facts.date and (said.date or said.time):
        args = {"date": facts.date, **({"time": facts.time} if facts.time else {})}
        return ModelReply(None, (_call("check_availability", args),))
    if facts.date or facts.name or facts.email:
        return _ask_missing(facts)
    return ModelReply(GREETING)


def _introduced(step: ModelReply, first: bool) -> ModelReply:
    if not first or not step.text:
        return step
    return replace(step, text=f"{DEMO_NOTICE} {step.text}")


def demo_model() -> FunctionModel:
    """The demo model, named `demo` wherever a model's name is shown."""
    return FunctionModel(demo_reply, name="demo")


def demo_reply(messages: Sequence[RawMessage], _tools: Sequence[ToolSchema] = ()) -> ModelReply:
    """The demo model's next reply to the conversation so far; pure of the messages."""
    today = _today(messages)
    if messages and messages[-1].get("role") == "tool":
        step = _after_tools(messages, collect_facts(_user_texts(messages), today))
    else:
        step = _next_action(messages, today)
    return _introduced(step, first=not _has_spoken(messages))
