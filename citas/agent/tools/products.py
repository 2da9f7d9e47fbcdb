"""`search_products`: the business's services and products matching what the customer asks."""

from __future__ import annotations

from pydantic import Field

from citas.agent.tools.arguments import Arguments
from citas.agent.tools.context import ToolServices, TurnContext
from citas.agent.tools.result import ToolResult
from citas.errors import BackendRejected
from citas.money import format_amount

DESCRIPTION = "Busca servicios y productos del negocio (nombre, precio, descripción)."


class SearchProductsArgs(Arguments):
    query: str = Field(
        min_length=1,
        max_length=200,
        description="Las palabras del cliente sobre lo que busca (un producto, un servicio o "
        "su precio).",
    )


async def search_products(
    services: ToolServices, ctx: TurnContext, args: SearchProductsArgs
) -> ToolResult:
    try:
        found = await services.catalog.search(ctx.tenant.id_empresa, args.query)
    except BackendRejected:
        found = ()
    currency = ctx.tenant.currency
    items = [
        {
            "tipo": o.kind,
            "nombre": o.name,
            "precio": o.price,
            # Written as the customer reads it, so no model turns 25000 pesos into "S/ 25000.00".
            "precio_texto": None if o.price is None else format_amount(o.price, currency),
            "descripcion": o.description,
        }
        for o in found
    ]
    if not items:
        return ToolResult(
            True,
            {"resultados": []},
            customer_text=f"No encontré servicios ni productos para «{args.query}».",
        )
    lines = "; ".join(
        f"{o.name} ({o.kind})"
        + (f": {format_amount(o.price, currency)}" if o.price is not None else "")
        for o in found
    )
    return ToolResult(
        True, {"resultados": items, "moneda": currency}, customer_text=f"Encontré: {lines}."
    )
