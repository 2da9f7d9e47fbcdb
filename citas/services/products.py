"""Services and products: `OBTENER_SERVICIOS_CITAS`, `OBTENER_PRODUCTOS_CITAS`,
`BUSCAR_PRODUCTOS_SERVICIOS_CITAS` wire formats → `Offering`."""

from __future__ import annotations

from typing import Any

import structlog

from citas.backend import BackendClient
from citas.domain import Offering

log = structlog.get_logger("citas.products")


async def fetch_services(
    client: BackendClient, info_url: str | None, id_empresa: int
) -> tuple[Offering, ...]:
    answer = await client.call(info_url, "OBTENER_SERVICIOS_CITAS", {"id_empresa": id_empresa})
    return parse_offerings(answer.get("servicios"), default_kind="servicio")


async def fetch_products(
    client: BackendClient, info_url: str | None, id_empresa: int
) -> tuple[Offering, ...]:
    answer = await client.call(info_url, "OBTENER_PRODUCTOS_CITAS", {"id_empresa": id_empresa})
    return parse_offerings(answer.get("productos"), default_kind="producto")


class ProductCatalog:
    """The business's services and products, searched by the backend."""

    def __init__(self, client: BackendClient, info_url: str | None) -> None:
        self._client = client
        self._url = info_url

    async def search(self, id_empresa: int, query: str, limit: int = 10) -> tuple[Offering, ...]:
        """Raises BackendError / BackendRejected like every backend call."""
        answer = await self._client.call(
            self._url,
            "BUSCAR_PRODUCTOS_SERVICIOS_CITAS",
            {"id_empresa": id_empresa, "busqueda": query, "limite": limit},
        )
        return parse_offerings(answer.get("resultados"), default_kind="producto")


def parse_offerings(raw: Any, default_kind: str) -> tuple[Offering, ...]:
    if not isinstance(raw, list):
        return ()
    items = []
    for entry in raw:
        try:
            price = entry.get("precio")
            minutes = entry.get("duracion_minutos")
            items.append(
                Offering(
                    id=int(entry.get("id") or 0),
                    kind=str(entry.get("tipo") or default_kind),
                    name=str(entry["nombre"]),
                    price=None if price is None else float(price),
                    description=str(entry.get("descripcion") or ""),
                    duration_minutes=_minutes(minutes),
                )
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            log.warning("offering_ignored", entry=str(entry), error=str(exc))
    return tuple(items)


def _minutes(raw: object) -> int | None:
    """A service's `duracion_minutos` when it is a sane length (5 to 600 minutes), else None:
    a bad value must not stop the business's other data, and the request's default holds."""
    if isinstance(raw, bool) or not isinstance(raw, int | float | str):
        return None
    try:
        minutes = float(raw)
    except ValueError:
        return None
    if not minutes.is_integer() or not 5 <= minutes <= 600:
        return None
    return int(minutes)
