"""What a tool handler is given: the services it may use and the turn it runs in."""

from __future__ import annotations

from dataclasses import dataclass

from citas.domain import ConversationKey, Tenant
from citas.ledger import BookingLedger
from citas.services.booking import BookingService
from citas.services.products import ProductCatalog


@dataclass(frozen=True, slots=True)
class ToolServices:
    booking: BookingService
    catalog: ProductCatalog


@dataclass(slots=True)
class TurnContext:
    """What a tool may know about the turn it runs in; built by the loop from the request, so
    tenant values never come from the model's arguments."""

    tenant: Tenant
    key: ConversationKey
    ledger: BookingLedger
    booking_url: str | None = None
    backend_failed: bool = False
