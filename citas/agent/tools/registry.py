"""The tools the model may call, and their dispatch: every failure becomes a result it can read.

Names and arguments are a contract (SPEC §4): recorded conversations depend on them. Tenant
values never come from arguments: handlers read them from the turn's `TurnContext`. A call
repeated with identical arguments in one turn is answered from the first result, with a note that
the model already has it (small models loop on a call otherwise).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from time import perf_counter
from typing import Any

import structlog
from pydantic import ValidationError

from citas.agent.events import EventSink, ToolCallFinished, ToolCallStarted
from citas.agent.tools import appointments, availability, booking, handoff, products
from citas.agent.tools.arguments import (
    EMAIL_DESCRIPTION,
    OPTIONAL_EMAIL_DESCRIPTION,
    Arguments,
    spanish_errors,
    unclear_question,
)
from citas.agent.tools.context import ToolServices, TurnContext
from citas.agent.tools.result import ToolResult, failure
from citas.domain import Tenant
from citas.errors import BackendError, BackendRejected
from citas.messages import ToolCallRequest
from citas.metrics import SWALLOWED_ERRORS

log = structlog.get_logger("citas.tools")

MAX_ARGUMENT_CHARS = 4000
MAX_CALLS_PER_ROUND = 10
UNKNOWN_TOOL = "unknown"  # the label of a name not in the registry: never the model's own text
REPEATED = (
    "Ya hiciste esta misma consulta en este turno y este es su resultado: no la repitas. "
    "Responde al cliente con lo que ya sabes."
)
ASK_CUSTOMER = (
    "Haz esta pregunta al cliente y espera su respuesta; no supongas la fecha ni la hora."
)

Handler = Callable[[ToolServices, TurnContext, Any], Awaitable[ToolResult]]


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    arguments: type[Arguments]
    handler: Handler
    schema: dict[str, Any] = field(init=False)

    def __post_init__(self) -> None:
        parameters = self.arguments.model_json_schema()
        parameters.pop("title", None)
        for prop in parameters.get("properties", {}).values():
            prop.pop("title", None)
        email = parameters.get("properties", {}).get("customer_email")
        if email is not None and "customer_email" not in parameters.get("required", ()):
            # This schema is the one for a business that does not need the email.
            email["description"] = OPTIONAL_EMAIL_DESCRIPTION
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


def _email_required(schema: dict[str, Any]) -> dict[str, Any]:
    """`schema` with an optional `customer_email` made required (kept in the fields' order), as
    every business that needs the email sees it; the arguments model itself lets it be absent,
    and `create_booking` refuses a booking without it for such a business."""
    parameters = schema["function"]["parameters"]
    properties = parameters.get("properties", {})
    if "customer_email" not in properties:
        return schema
    required = set(parameters.get("required", ())) | {"customer_email"}
    email = {**properties["customer_email"], "description": EMAIL_DESCRIPTION}
    return {
        **schema,
        "function": {
            **schema["function"],
            "parameters": {
                **parameters,
                "properties": {**properties, "customer_email": email},
                "required": [p for p in properties if p in required],
            },
        },
    }


TOOLS = (
    Tool(
        "check_availability",
        availability.DESCRIPTION,
        availability.CheckAvailabilityArgs,
        availability.check_availability,
    ),
    Tool(
        "create_booking",
        booking.DESCRIPTION,
        booking.CreateBookingArgs,
        booking.create_booking,
    ),
    Tool(
        "search_products",
        products.DESCRIPTION,
        products.SearchProductsArgs,
        products.search_products,
    ),
    Tool(
        "list_my_bookings",
        appointments.LIST_DESCRIPTION,
        appointments.ListMyBookingsArgs,
        appointments.list_my_bookings,
    ),
    Tool(
        "cancel_booking",
        appointments.CANCEL_DESCRIPTION,
        appointments.CancelBookingArgs,
        appointments.cancel_booking,
    ),
    Tool(
        "reschedule_booking",
        appointments.RESCHEDULE_DESCRIPTION,
        appointments.RescheduleBookingArgs,
        appointments.reschedule_booking,
    ),
    Tool(
        "request_human",
        handoff.DESCRIPTION,
        handoff.RequestHumanArgs,
        handoff.request_human,
    ),
)


class ToolRegistry:
    """Dispatches a model's tool calls and reports each one as run events."""

    def __init__(self, services: ToolServices, tools: Iterable[Tool] = TOOLS) -> None:
        self._services = services
        self._tools = {tool.name: tool for tool in tools}
        # Built once: the same list object is sent every call (part of the stable prefix).
        self.schemas: list[dict[str, Any]] = [
            _email_required(tool.schema) for tool in self._tools.values()
        ]
        self._schemas_without_email = [tool.schema for tool in self._tools.values()]

    @property
    def services(self) -> ToolServices:
        """What the tools work with; the loop uses them for the steps it takes itself."""
        return self._services

    def schemas_for(self, tenant: Tenant) -> list[dict[str, Any]]:
        """The tools as this business's model sees them: `create_booking` asks for the email
        unless the request says the business does not need it (`correo_obligatorio: false`)."""
        return self.schemas if tenant.email_required else self._schemas_without_email

    def label(self, name: str) -> str:
        """The name as metrics and logs may show it: a registered tool, else `unknown`."""
        return name if name in self._tools else UNKNOWN_TOOL

    async def dispatch(self, ctx: TurnContext, call: ToolCallRequest, emit: EventSink) -> str:
        """Run one call and return the text the model reads; the result is also kept in `ctx`
        (the turn's facts, which the reply guard checks a reply against)."""
        emit(ToolCallStarted(call))
        start = perf_counter()
        same_call = (call.name, _canonical(call.arguments))
        earlier = ctx.answered.get(same_call)
        if earlier is not None:
            ctx.repeats += 1
            outcome, result = "repeated", earlier.with_instruction(REPEATED)
        else:
            outcome, result = await self._run(ctx, call)
            ctx.answered[same_call] = result
        ctx.results.append(result)
        content = result.encode()
        emit(
            ToolCallFinished(call, self.label(call.name), outcome, content, perf_counter() - start)
        )
        return content

    async def run_all(
        self, ctx: TurnContext, calls: Iterable[ToolCallRequest], emit: EventSink
    ) -> list[str]:
        """Several calls of one round run concurrently; results keep the calls' order. Calls
        beyond `MAX_CALLS_PER_ROUND` are answered with an error, not run: a runaway (or
        hijacked) model cannot fan out into hundreds of backend requests."""
        calls = list(calls)
        run, refused = calls[:MAX_CALLS_PER_ROUND], calls[MAX_CALLS_PER_ROUND:]
        results = list(await asyncio.gather(*(self.dispatch(ctx, call, emit) for call in run)))
        if refused:
            log.warning("tool_calls_refused", count=len(refused))
        message = (
            f"Demasiadas herramientas en una sola respuesta: se ejecutaron las primeras "
            f"{MAX_CALLS_PER_ROUND}. Pide menos a la vez."
        )
        for call in refused:
            content = failure("too_many_calls", message).encode()
            emit(ToolCallFinished(call, self.label(call.name), "too_many", content, 0.0))
            results.append(content)
        return results

    async def _run(self, ctx: TurnContext, call: ToolCallRequest) -> tuple[str, ToolResult]:
        tool = self._tools.get(call.name)
        if tool is None:
            names = ", ".join(self._tools)
            return "unknown_tool", failure(
                "unknown_tool",
                f"La herramienta «{call.name}» no existe. Solo puedes usar: {names}.",
            )
        args = _arguments(tool, call.arguments, ctx)
        if isinstance(args, ToolResult):
            return "invalid_arguments", args
        try:
            return "ok", await tool.handler(self._services, ctx, args)
        except BackendError as exc:
            ctx.backend_failed = True
            SWALLOWED_ERRORS.labels(where=f"tool_{call.name}").inc()
            log.warning("tool_backend_failure", tool=call.name, error=str(exc))
            return "backend_error", failure(
                "backend_unavailable",
                "No confirmes nada: discúlpate y sugiere intentarlo en unos minutos.",
                "Disculpa, nuestro sistema de reservas no responde en este momento.",
            )
        except BackendRejected as exc:
            # A `success: false` the service did not expect (e.g. an unknown calendar owner).
            SWALLOWED_ERRORS.labels(where=f"tool_{call.name}").inc()
            log.warning("tool_backend_rejected", tool=call.name, error=str(exc))
            return "backend_rejected", failure(
                "backend_rejected",
                f"El sistema de reservas rechazó la operación ({exc.message}). No confirmes nada.",
                "Disculpa, no pude completar esa operación en nuestro sistema de reservas.",
            )
        except Exception:
            # A bug or an unexpected answer must not cost the customer the turn (nor reach the
            # gateway as a 500): the model reads that this step failed and can say so.
            SWALLOWED_ERRORS.labels(where=f"tool_{call.name}").inc()
            log.exception("tool_failed", tool=call.name)
            return "error", failure(
                "tool_failed",
                "No confirmes nada: discúlpate y ofrece intentarlo de nuevo más tarde.",
                "Disculpa, no pude completar esa consulta por un error interno.",
            )


def _arguments(tool: Tool, text: str, ctx: TurnContext) -> Arguments | ToolResult:
    """The call's validated arguments, or the result that tells the model what was wrong."""
    if len(text) > MAX_ARGUMENT_CHARS:
        return failure("invalid_arguments", "Los argumentos son demasiado largos.")
    try:
        raw = json.loads(text or "{}")
    except (ValueError, RecursionError):  # deep nesting fits in the size limit
        return failure(
            "invalid_arguments",
            "Los argumentos no son un JSON válido. Vuelve a llamar con un objeto JSON.",
        )
    if not isinstance(raw, dict):
        return failure("invalid_arguments", "Los argumentos deben ser un objeto JSON.")
    try:
        return tool.arguments.model_validate(
            raw, context={"today": ctx.today, "email_optional": not ctx.tenant.email_required}
        )
    except ValidationError as exc:
        question = unclear_question(exc)
        if question is not None:
            return failure("unclear_when", ASK_CUSTOMER, customer_text=question)
        return failure(
            "invalid_arguments",
            "Datos inválidos: "
            + spanish_errors(exc)
            + ". Pide al cliente el dato correcto antes de volver a intentar.",
        )


def _canonical(arguments: str) -> str:
    """Arguments compared as JSON values, so spacing or key order do not hide a repeat (only
    within the size any valid call has: a huge or deeply nested text is never parsed)."""
    if len(arguments) > MAX_ARGUMENT_CHARS:
        return arguments
    try:
        return json.dumps(json.loads(arguments or "{}"), sort_keys=True, ensure_ascii=False)
    except (ValueError, RecursionError):
        return arguments
