"""Business information (context, FAQs, hours, services, products): fetched concurrently and
cached per business. The single source of opening hours for both the prompt and the rules."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar

import structlog
from cachetools import TTLCache

from citas.backend import BackendClient
from citas.cache import SingleFlightCache
from citas.domain import BusinessInfo, Faq, OpeningHours
from citas.errors import BackendRejected, UnknownBusiness
from citas.metrics import SWALLOWED_ERRORS
from citas.services.products import fetch_products, fetch_services
from citas.services.schedule import fetch_opening_hours

log = structlog.get_logger("citas.business")

T = TypeVar("T")


UNKNOWN_TTL_SECONDS = 60.0
"""How long a business the backend does not know is answered as unknown without asking again."""


class BusinessDirectory:
    """`await directory.get(id_empresa)` → `BusinessInfo`, at most one backend round per TTL.

    A business for which the backend refuses every part (context, FAQs, hours, services,
    products) does not exist there: `UnknownBusiness`, remembered for `unknown_ttl_seconds`
    (bounded), so a stream of messages for it costs neither backend calls nor model calls."""

    def __init__(
        self,
        client: BackendClient,
        info_url: str | None,
        cache: SingleFlightCache[int, BusinessInfo],
        *,
        unknown_ttl_seconds: float = UNKNOWN_TTL_SECONDS,
    ) -> None:
        self._client = client
        self._info_url = info_url
        self._cache = cache
        self._unknown: TTLCache[int, bool] = TTLCache(maxsize=4096, ttl=unknown_ttl_seconds)

    async def get(self, id_empresa: int) -> BusinessInfo:
        if id_empresa in self._unknown:
            raise UnknownBusiness(id_empresa)
        try:
            return await self._cache.get(id_empresa, lambda: self._fetch(id_empresa))
        except UnknownBusiness:
            self._unknown[id_empresa] = True
            raise

    async def _fetch(self, id_empresa: int) -> BusinessInfo:
        client, url = self._client, self._info_url
        missing: list[str] = []
        context, faqs, hours, services, products = await _gather_all(
            _or_empty(fetch_context(client, url, id_empresa), "", id_empresa, missing),
            _or_empty(fetch_faqs(client, url, id_empresa), (), id_empresa, missing),
            _or_empty(
                fetch_opening_hours(client, url, id_empresa), OpeningHours(), id_empresa, missing
            ),
            _or_empty(fetch_services(client, url, id_empresa), (), id_empresa, missing),
            _or_empty(fetch_products(client, url, id_empresa), (), id_empresa, missing),
        )
        if len(missing) == _PARTS:
            log.warning("business_unknown", id_empresa=id_empresa)
            raise UnknownBusiness(id_empresa)
        return BusinessInfo(context, faqs, hours, services, products)


_PARTS = 5


async def fetch_context(client: BackendClient, info_url: str | None, id_empresa: int) -> str:
    answer = await client.call(info_url, "OBTENER_CONTEXTO_NEGOCIO", {"id_empresa": id_empresa})
    return str(answer.get("contexto") or "").strip()


async def fetch_faqs(
    client: BackendClient, info_url: str | None, id_empresa: int
) -> tuple[Faq, ...]:
    answer = await client.call(info_url, "OBTENER_PREGUNTAS_FRECUENTES", {"id_empresa": id_empresa})
    raw = answer.get("preguntas")
    if not isinstance(raw, list):
        return ()
    return tuple(
        Faq(str(item["pregunta"]).strip(), str(item["respuesta"]).strip())
        for item in raw
        if isinstance(item, dict) and item.get("pregunta") and item.get("respuesta")
    )


async def _or_empty(aw: Awaitable[T], empty: T, id_empresa: int, missing: list[str]) -> T:
    """Optional parts: a business that has none configured answers `success: false` (noted in
    `missing`)."""
    try:
        return await aw
    except BackendRejected as exc:
        missing.append(exc.operation)
        SWALLOWED_ERRORS.labels(where=exc.operation).inc()
        log.info(
            "business_part_missing",
            operation=exc.operation,
            id_empresa=id_empresa,
            error=exc.message,
        )
        return empty


async def _gather_all(*aws: Awaitable[Any]) -> list[Any]:
    """Run concurrently to the end, then raise the first failure as itself.

    Not cancelling the rest at the first failure costs a little latency when the backend is
    down, but lets every operation's circuit breaker count its own failure: cancelled calls
    teach a breaker nothing, and the breakers would open only by chance.
    """
    results = await asyncio.gather(*aws, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results
