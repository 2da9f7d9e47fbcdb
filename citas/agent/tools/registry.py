"""The tools the model may call, and their dispatch: every failure becomes a result it can read.

Names and arguments are a contract (SPEC §4): recorded conversations depend on them. Tenant
values never come from arguments: handlers read them from the turn's `TurnContext`.
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
from citas.agent.tools import availability, booking, products
from citas.agent.tools.arguments import Arguments, spanish_errors
from citas.agent.tools.context import ToolServices, TurnContext
from citas.errors import BackendError, BackendRejected
from citas.messages import ToolCallRequest
from citas.metrics import SWALLOWED_ERRORS

log = structlog.get_logger("citas.tools")

MAX_ARGUMENT_CHARS = 4000
MAX_CALLS_PER_ROUND = 10
UNKNOWN_TOOL = "unknown"  # the label of a name not in the registry: never the model's own text

Handler = Callable[[ToolServices, TurnContext, Any], Awaitable[dict[str, Any]]]


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
)


def encode_result(result: dict[str, Any]) -> str:
    return json.dumps(result, ensure_ascii=False, separators=(",", ":"))


class ToolRegistry:
    """Dispatches a model's tool calls and reports each one as run events."""

    def __init__(self, services: ToolServices, tools: Iterable[Tool] = TOOLS) -> None:
        self._services = services
        self._tools = {tool.name: tool for tool in tools}
        # Built once: the same list object is sent every call (part of the stable prefix).
        self.schemas: list[dict[str, Any]] = [tool.schema for tool in self._tools.values()]

    def label(self, name: str) -> str:
        """The name as metrics and logs may show it: a registered tool, else `unknown`."""
        return name if name in self._tools else UNKNOWN_TOOL

    async def dispatch(self, ctx: TurnContext, call: ToolCallRequest, emit: EventSink) -> str:
        emit(ToolCallStarted(call))
        start = perf_counter()
        outcome, result = await self._run(ctx, call)
        content = encode_result(result)
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
            content = encode_result(_error(message, "too_many_calls"))
            emit(ToolCallFinished(call, self.label(call.name), "too_many", content, 0.0))
            results.append(content)
        return results

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


def _error(message: str, code: str = "invalid_arguments") -> dict[str, Any]:
    return {"ok": False, "error": code, "mensaje": message}
