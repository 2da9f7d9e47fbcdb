"""The tools the model may call: argument models (→ JSON schema), handlers, and the registry.

Names and arguments are a contract (SPEC §4): recorded conversations depend on them. Tenant
values never come from arguments: handlers read them from the turn's `TurnContext`.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, time
from time import perf_counter
from typing import Annotated, Any

import structlog
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, WithJsonSchema

from citas.agent.llm import ToolCallRequest
from citas.backend import BackendClient
from citas.conversation import Conversation
from citas.domain import ConversationKey, Slot, Tenant
from citas.errors import BackendError, BackendRejected
from citas.logs import mask_text
from citas.metrics import SWALLOWED_ERRORS, TOOL_CALLS
from citas.services.availability import AvailabilityService, DayListing, SlotVerdict
from citas.services.booking import BookingRequest, BookingService, Customer
from citas.services.products import search_offerings

log = structlog.get_logger("citas.tools")

MAX_ARGUMENT_CHARS = 4000
MAX_CALLS_PER_ROUND = 10


@dataclass
class TurnContext:
    """What a tool may know about the turn it runs in; built by the loop from the request."""

    tenant: Tenant
    key: ConversationKey
    conversation: Conversation
    booking_url: str | None = None
    backend_failed: bool = False


# --- argument types ------------------------------------------------------------------------


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


class _Arguments(BaseModel):
    # Unknown fields (e.g. a model trying to pass `id_empresa`) are ignored, never used.
    model_config = ConfigDict(extra="ignore", frozen=True)


class CheckAvailabilityArgs(_Arguments):
    date: LocalDate
    time: LocalTime | None = Field(
        None, description="Hora HH:MM; sin ella se listan los horarios libres de ese día"
    )


class CreateBookingArgs(_Arguments):
    date: LocalDate
    time: LocalTime
    customer_name: PersonName
    customer_email: Email
    customer_phone: Phone = None
    service: str | None = Field(None, max_length=120, description="Servicio solicitado")
    notes: str | None = Field(None, max_length=500, description="Notas para el negocio")


class SearchProductsArgs(_Arguments):
    query: str = Field(min_length=1, max_length=200, description="Qué busca el cliente")


# --- results -------------------------------------------------------------------------------


def _slot_brief(slot: Slot) -> dict[str, str]:
    return {"fecha": f"{slot.start:%Y-%m-%d}", "hora": f"{slot.start:%H:%M}"}


def _offer_text(alternatives: Iterable[Slot]) -> str:
    offers = [s.describe() for s in alternatives]
    return (
        ("Horarios disponibles cercanos: " + "; ".join(offers) + ".")
        if offers
        else ("No encontré horarios libres cercanos; pide al cliente otra fecha.")
    )


def _verdict_result(verdict: SlotVerdict) -> dict[str, Any]:
    slot = verdict.slot
    if verdict.problem is None:
        return {
            "ok": True,
            "disponible": True,
            **_slot_brief(slot),
            "mensaje": f"El {slot.describe()} está disponible.",
        }
    return {
        "ok": True,
        "disponible": False,
        **_slot_brief(slot),
        "motivo": verdict.problem.value,
        "alternativas": [_slot_brief(s) for s in verdict.alternatives],
        "mensaje": f"El {slot.describe()} no se puede reservar: {verdict.problem.value}. "
        + _offer_text(verdict.alternatives),
    }


def _listing_result(listing: DayListing) -> dict[str, Any]:
    if listing.slots:
        times = ", ".join(f"{s.start:%H:%M}" for s in listing.slots)
        return {
            "ok": True,
            "fecha": listing.day.isoformat(),
            "horarios_libres": [f"{s.start:%H:%M}" for s in listing.slots],
            "mensaje": f"Horarios libres el {listing.day.isoformat()}: {times}.",
        }
    reason = listing.problem.value if listing.problem else "no quedan horarios libres"
    return {
        "ok": True,
        "fecha": listing.day.isoformat(),
        "horarios_libres": [],
        "motivo": reason,
        "alternativas": [_slot_brief(s) for s in listing.alternatives],
        "mensaje": f"El {listing.day.isoformat()} no hay horarios: {reason}. "
        + _offer_text(listing.alternatives),
    }


# --- handlers ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ToolServices:
    availability: AvailabilityService
    booking: BookingService
    client: BackendClient
    info_url: str | None


async def check_availability(
    services: ToolServices, ctx: TurnContext, args: CheckAvailabilityArgs
) -> dict[str, Any]:
    tenant = ctx.tenant
    if args.time is None:
        listing = await services.availability.list_day(tenant, args.date)
        ctx.conversation.remember_verified(
            *(s.local_start for s in (*listing.slots, *listing.alternatives))
        )
        return _listing_result(listing)
    slot = Slot.at(args.date, args.time, tenant.zone, tenant.duration_minutes)
    verdict = await services.availability.check_slot(tenant, slot)
    shown = (slot,) if verdict.bookable else verdict.alternatives
    ctx.conversation.remember_verified(*(s.local_start for s in shown))
    return _verdict_result(verdict)


async def create_booking(
    services: ToolServices, ctx: TurnContext, args: CreateBookingArgs
) -> dict[str, Any]:
    tenant = ctx.tenant
    request = BookingRequest(
        slot=Slot.at(args.date, args.time, tenant.zone, tenant.duration_minutes),
        customer=Customer(args.customer_name, args.customer_email, args.customer_phone),
        service=args.service,
        notes=args.notes,
    )
    outcome = await services.booking.book(tenant, ctx.key, ctx.conversation, request)
    if outcome.unverified:
        return {
            "ok": False,
            "reservado": False,
            "mensaje": "No se reservó: ese horario no se verificó en esta conversación. Antes "
            "de reservar, consulta ese horario con check_availability y confírmalo con el cliente.",
        }
    if outcome.refusal is not None:
        # The alternatives are shown as bookable, as check_availability's are.
        ctx.conversation.remember_verified(*(s.local_start for s in outcome.refusal.alternatives))
        return {**_verdict_result(outcome.refusal), "reservado": False}
    confirmation = outcome.confirmation
    assert confirmation is not None
    ctx.booking_url = confirmation.url
    what = "Esta cita ya estaba registrada" if outcome.deduplicated else "Cita confirmada"
    link = f" Enlace de la reunión: {confirmation.url}" if confirmation.url else ""
    return {
        "ok": True,
        "reservado": True,
        "ya_existia": outcome.deduplicated,
        "id_evento": confirmation.event_id,
        "url": confirmation.url,
        **_slot_brief(request.slot),
        "mensaje": f"{what} para {confirmation.customer_name} el {request.slot.describe()}.{link}",
    }


async def search_products(
    services: ToolServices, ctx: TurnContext, args: SearchProductsArgs
) -> dict[str, Any]:
    try:
        found = await search_offerings(
            services.client, services.info_url, ctx.tenant.id_empresa, args.query
        )
    except BackendRejected:
        found = ()
    items = [
        {"tipo": o.kind, "nombre": o.name, "precio": o.price, "descripcion": o.description}
        for o in found
    ]
    if not items:
        return {
            "ok": True,
            "resultados": [],
            "mensaje": f"No encontré servicios ni productos para «{args.query}».",
        }
    lines = "; ".join(
        f"{o.name} ({o.kind})" + (f": S/ {o.price:.2f}" if o.price is not None else "")
        for o in found
    )
    return {"ok": True, "resultados": items, "mensaje": f"Encontré: {lines}."}


# --- registry ------------------------------------------------------------------------------

Handler = Callable[[ToolServices, TurnContext, Any], Awaitable[dict[str, Any]]]


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    arguments: type[_Arguments]
    handler: Handler
    schema: dict[str, Any] = field(init=False)

    def __post_init__(self) -> None:
        parameters = self.arguments.model_json_schema()
        parameters.pop("title", None)
        for prop in parameters.get("properties", {}).values():
            prop.pop("title", None)
        object.__setattr__(
            self,
            "schema",
            {
                "type": "function",
                "function": {
                    "name": self.name,
                    "description": self.description,
                    "parameters": parameters,
                },
            },
        )


TOOLS = (
    Tool(
        "check_availability",
        "Consulta si una fecha y hora se puede reservar (en el futuro, dentro del horario de "
        "atención y libre en el calendario) y ofrece alternativas; sin hora, lista los horarios "
        "libres de ese día.",
        CheckAvailabilityArgs,
        check_availability,
    ),
    Tool(
        "create_booking",
        "Reserva la cita en un horario ya verificado con check_availability. Requiere nombre y "
        "correo del cliente. Devuelve la confirmación y el enlace.",
        CreateBookingArgs,
        create_booking,
    ),
    Tool(
        "search_products",
        "Busca servicios y productos del negocio (nombre, precio, descripción).",
        SearchProductsArgs,
        search_products,
    ),
)


def encode_result(result: dict[str, Any]) -> str:
    return json.dumps(result, ensure_ascii=False, separators=(",", ":"))


class ToolRegistry:
    """Dispatches a model's tool call; every failure becomes a result the model can read."""

    def __init__(self, services: ToolServices, tools: Iterable[Tool] = TOOLS) -> None:
        self._services = services
        self._tools = {tool.name: tool for tool in tools}
        # Built once: the same list object is sent every call (part of the stable prefix).
        self.schemas: list[dict[str, Any]] = [tool.schema for tool in self._tools.values()]

    async def dispatch(self, ctx: TurnContext, call: ToolCallRequest) -> str:
        start = perf_counter()
        outcome, result = await self._run(ctx, call)
        known = call.name in self._tools
        TOOL_CALLS.labels(tool=call.name if known else "unknown", outcome=outcome).inc()
        log.info(
            "tool_call",
            # An unknown name is the model's text: bounded like the arguments.
            tool=call.name if known else call.name[:64],
            outcome=outcome,
            duration_ms=round((perf_counter() - start) * 1000, 1),
            arguments=_loggable(call.arguments),
        )
        return encode_result(result)

    async def run_all(self, ctx: TurnContext, calls: Iterable[ToolCallRequest]) -> list[str]:
        """Several calls of one round run concurrently; results keep the calls' order. Calls
        beyond `MAX_CALLS_PER_ROUND` are answered with an error, not run: a runaway (or
        hijacked) model cannot fan out into hundreds of backend requests."""
        calls = list(calls)
        run, refused = calls[:MAX_CALLS_PER_ROUND], calls[MAX_CALLS_PER_ROUND:]
        results = list(await asyncio.gather(*(self.dispatch(ctx, call) for call in run)))
        for call in refused:
            known = call.name in self._tools
            TOOL_CALLS.labels(tool=call.name if known else "unknown", outcome="too_many").inc()
        if refused:
            log.warning("tool_calls_refused", count=len(refused))
        message = (
            f"Demasiadas herramientas en una sola respuesta: se ejecutaron las primeras "
            f"{MAX_CALLS_PER_ROUND}. Pide menos a la vez."
        )
        return results + [encode_result(_error(message, "too_many_calls")) for _ in refused]

    async def _run(self, ctx: TurnContext, call: ToolCallRequest) -> tuple[str, dict[str, Any]]:
        tool = self._tools.get(call.name)
        if tool is None:
            names = ", ".join(self._tools)
            return "unknown_tool", _error(
                f"La herramienta «{call.name}» no existe. Solo puedes usar: {names}."
            )
        if len(call.arguments) > MAX_ARGUMENT_CHARS:
            return "invalid_arguments", _error("Los argumentos son demasiado largos.")
        try:
            raw = json.loads(call.arguments or "{}")
        except ValueError:
            return "invalid_arguments", _error(
                "Los argumentos no son un JSON válido. Vuelve a llamar con un objeto JSON."
            )
        if not isinstance(raw, dict):
            return "invalid_arguments", _error("Los argumentos deben ser un objeto JSON.")
        try:
            args = tool.arguments.model_validate(raw)
        except ValidationError as exc:
            return "invalid_arguments", _error(
                "Datos inválidos: "
                + spanish_errors(exc)
                + ". Pide al cliente el dato correcto antes de volver a intentar."
            )
        try:
            return "ok", await tool.handler(self._services, ctx, args)
        except BackendError as exc:
            ctx.backend_failed = True
            SWALLOWED_ERRORS.labels(where=f"tool_{call.name}").inc()
            log.warning("tool_backend_failure", tool=call.name, error=str(exc))
            return "backend_error", _error(
                "El sistema de reservas no responde en este momento. Discúlpate con el cliente "
                "y sugiere intentarlo en unos minutos; no confirmes nada.",
                code="backend_unavailable",
            )
        except BackendRejected as exc:
            # A `success: false` the service did not expect (e.g. an unknown calendar owner).
            SWALLOWED_ERRORS.labels(where=f"tool_{call.name}").inc()
            log.warning("tool_backend_rejected", tool=call.name, error=str(exc))
            return "backend_rejected", _error(
                f"El sistema de reservas rechazó la operación ({exc.message}). Discúlpate con el "
                "cliente; no confirmes nada.",
                code="backend_rejected",
            )
        except Exception:
            # A bug or an unexpected answer must not cost the customer the turn (nor reach the
            # gateway as a 500): the model reads that this step failed and can say so.
            SWALLOWED_ERRORS.labels(where=f"tool_{call.name}").inc()
            log.exception("tool_failed", tool=call.name)
            return "error", _error(
                "No pude completar esta consulta por un error interno. Discúlpate con el "
                "cliente y ofrece intentarlo de nuevo más tarde; no confirmes nada.",
                code="tool_failed",
            )


def _loggable(arguments: str) -> str:
    # Masked before cutting, so a cut never leaves half an email or phone in clear; arguments
    # too long to be run are not logged at all.
    if len(arguments) > MAX_ARGUMENT_CHARS:
        return f"<{len(arguments)} characters>"
    return mask_text(arguments)[:500]


def _error(message: str, code: str = "invalid_arguments") -> dict[str, Any]:
    return {"ok": False, "error": code, "mensaje": message}


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
