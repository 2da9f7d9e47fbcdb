"""What the model may pass to the tools: argument types, their validators and JSON schema, and
validation errors said in Spanish so the model can ask the customer for the right value."""

from __future__ import annotations

import re
from datetime import date, time
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError, WithJsonSchema


class Arguments(BaseModel):
    """Base of every tool's arguments. Unknown fields (e.g. a model trying to pass `id_empresa`)
    are ignored, never used."""

    model_config = ConfigDict(extra="ignore", frozen=True)


def _parse_date(value: Any) -> date:
    if isinstance(value, date):
        return value
    text = str(value).strip()
    try:
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            raise ValueError
        return date.fromisoformat(text)
    except ValueError:
        raise ValueError("la fecha debe existir y tener el formato AAAA-MM-DD") from None


def _parse_time(value: Any) -> time:
    if isinstance(value, time):
        return value
    match = re.fullmatch(r"(\d{1,2}):(\d{2})(?::00)?", str(value).strip())
    if not match or int(match[1]) > 23 or int(match[2]) > 59:
        raise ValueError("la hora debe tener el formato HH:MM de 24 horas")
    return time(int(match[1]), int(match[2]))


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


LocalDate = Annotated[
    date,
    BeforeValidator(_parse_date),
    WithJsonSchema({"type": "string", "description": "Fecha en formato YYYY-MM-DD"}),
]
LocalTime = Annotated[
    time,
    BeforeValidator(_parse_time),
    WithJsonSchema({"type": "string", "description": "Hora en formato HH:MM (24 horas)"}),
]
PersonName = Annotated[
    str,
    BeforeValidator(_person_name),
    WithJsonSchema({"type": "string", "description": "Nombre y apellido del cliente"}),
]
Email = Annotated[
    str, BeforeValidator(_email), WithJsonSchema({"type": "string", "description": "Correo"})
]
Phone = Annotated[
    str | None,
    BeforeValidator(_phone),
    WithJsonSchema({"type": "string", "description": "Teléfono del cliente (opcional)"}),
]


_MESSAGES = {
    "missing": "falta este dato",
    "string_too_long": "es demasiado largo",
    "string_too_short": "está vacío",
    "string_type": "debe ser texto",
}


def spanish_errors(exc: ValidationError) -> str:
    """One short Spanish phrase per invalid field, e.g. `customer_email: no es un correo…`."""
    parts = []
    for error in exc.errors(include_url=False):
        where = ".".join(str(p) for p in error["loc"]) or "argumentos"
        if error["type"] == "value_error":
            text = str(error.get("ctx", {}).get("error", error["msg"]))
        else:
            text = _MESSAGES.get(error["type"], "valor inválido")
        parts.append(f"{where}: {text}")
    return "; ".join(parts)
