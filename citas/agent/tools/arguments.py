"""What the model may pass to the tools: argument types, their validators and JSON schema, and
validation errors said in Spanish so the model can ask the customer for the right value.

Dates and times may come as `YYYY-MM-DD` / `HH:MM` or in the customer's words ("el próximo
lunes", "3 de la tarde"): resolving those is the server's job (`citas.datetext`), in the business's
zone, from the `today` the registry passes as validation context. An expression that names no
single day or hour ("el 15" said on the 20th, "a las 3") comes back as a question for the
customer. Every argument is described by what to put there, never by an example a model could
copy as a value.
"""

from __future__ import annotations

import re
from datetime import date, time
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
)
from pydantic_core import PydanticCustomError

from citas.datetext import UnclearWhen, resolve_date, resolve_time

UNCLEAR = "unclear_when"  # the error type of an expression to ask the customer about


class Arguments(BaseModel):
    """Base of every tool's arguments. Unknown fields (e.g. a model trying to pass `id_empresa`)
    are ignored, never used."""

    model_config = ConfigDict(extra="ignore", frozen=True)


def _parse_date(value: Any, info: ValidationInfo) -> date:
    if isinstance(value, date):
        return value
    text = str(value).strip()
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        try:
            return date.fromisoformat(text)
        except ValueError:
            raise ValueError("esa fecha no existe") from None
    today = (info.context or {}).get("today")
    if not isinstance(today, date):
        raise ValueError("la fecha debe tener el formato AAAA-MM-DD")
    try:
        return resolve_date(text, today)
    except UnclearWhen as unclear:
        raise PydanticCustomError(UNCLEAR, "{question}", {"question": unclear.question}) from None


def _parse_time(value: Any) -> time:
    if isinstance(value, time):
        return value
    try:
        return resolve_time(str(value))
    except UnclearWhen as unclear:
        raise PydanticCustomError(UNCLEAR, "{question}", {"question": unclear.question}) from None


def _person_name(value: Any) -> str:
    name = " ".join(str(value).split())
    if "@" in name or any(ch.isdigit() for ch in name):
        raise ValueError("debe ser el nombre de una persona, no un correo ni números")
    if not 2 <= len(name) <= 80 or sum(ch.isalpha() for ch in name) < 2:
        raise ValueError("debe ser un nombre de persona de 2 a 80 letras")
    if not all(ch.isalpha() or ch in " '-." for ch in name):
        raise ValueError("el nombre solo puede tener letras, espacios, apóstrofos o guiones")
    return name


_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")


def _email(value: Any) -> str:
    email = str(value).strip()
    if len(email) > 254 or not _EMAIL.fullmatch(email):
        raise ValueError("no es un correo electrónico válido (ejemplo: nombre@dominio.com)")
    local, _, domain = email.partition("@")
    return f"{local}@{domain.lower()}"


def _phone(value: Any) -> str | None:
    if value is None or str(value).strip() == "":
        return None
    phone = re.sub(r"[\s().-]", "", str(value))
    if not re.fullmatch(r"\+?\d{6,15}", phone):
        raise ValueError("no es un teléfono válido (6 a 15 dígitos, puede empezar con +)")
    return phone


def _described(description: str) -> WithJsonSchema:
    return WithJsonSchema({"type": "string", "description": description})


LocalDate = Annotated[
    date,
    BeforeValidator(_parse_date),
    _described(
        "El día que pidió el cliente: la fecha AAAA-MM-DD tomada del calendario del mensaje de "
        "fecha y hora, o las palabras del cliente tal cual («mañana», «el próximo viernes», "
        "«15 de diciembre»)."
    ),
]
LocalTime = Annotated[
    time,
    BeforeValidator(_parse_time),
    _described(
        "La hora que pidió el cliente: HH:MM de 24 horas, o sus palabras tal cual («3 de la "
        "tarde», «10 y media de la mañana», «mediodía»)."
    ),
]
PersonName = Annotated[
    str,
    BeforeValidator(_person_name),
    _described(
        "El nombre y apellido de la persona, copiados de lo que el cliente escribió en este chat. "
        "Si todavía no los escribió, no llames a la herramienta: pregúntaselos."
    ),
]
EMAIL_DESCRIPTION = (
    "La dirección de correo electrónico (con @) que el cliente escribió en este chat. Si "
    "todavía no la escribió, no llames a la herramienta: pregúntasela. Nunca la inventes."
)
Email = Annotated[
    str,
    BeforeValidator(_email),
    _described(EMAIL_DESCRIPTION),
]
OptionalEmail = Annotated[
    str | None,
    BeforeValidator(
        lambda value: None if value is None or str(value).strip() == "" else _email(value)
    ),
    _described(EMAIL_DESCRIPTION),
]
"""`Email` where a business may not ask for one (`correo_obligatorio: false`); the tool's schema
then drops it from `required` (`citas.agent.tools.registry`)."""
OPTIONAL_EMAIL_DESCRIPTION = (
    "El correo electrónico que el cliente escribió en este chat, solo si lo dio: este negocio no "
    "lo exige, no se lo pidas. Nunca lo inventes."
)
Phone = Annotated[
    str | None,
    BeforeValidator(_phone),
    _described("El número de teléfono que el cliente escribió, solo si lo dio."),
]


_MESSAGES = {
    "missing": "falta este dato",
    "string_too_long": "es demasiado largo",
    "string_too_short": "está vacío",
    "string_type": "debe ser texto",
}


def unclear_question(exc: ValidationError) -> str | None:
    """The question to put to the customer when a date or time named no single value."""
    for error in exc.errors(include_url=False):
        if error["type"] == UNCLEAR:
            return str(error["msg"])
    return None


def spanish_errors(exc: ValidationError) -> str:
    """One short Spanish phrase per invalid field, e.g. `customer_email: no es un correo…`."""
    parts = []
    for error in exc.errors(include_url=False):
        where = ".".join(str(p) for p in error["loc"]) or "argumentos"
        if error["type"] in ("value_error", UNCLEAR):
            text = str(error.get("ctx", {}).get("error", error["msg"]))
        else:
            text = _MESSAGES.get(error["type"], "valor inválido")
        parts.append(f"{where}: {text}")
    return "; ".join(parts)
