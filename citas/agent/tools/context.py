"""What a tool handler is given: the services it may use and the turn it runs in."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import date

from citas.agent.tools.result import ToolResult
from citas.customer_words import CustomerWords
from citas.domain import ConversationKey, Faq, Offering, OpeningHours, Tenant
from citas.folding import fold
from citas.ledger import BookingLedger
from citas.services.appointments import AppointmentService
from citas.services.booking import BookingService
from citas.services.products import ProductCatalog


@dataclass(frozen=True, slots=True)
class ToolServices:
    booking: BookingService
    catalog: ProductCatalog
    appointments: AppointmentService


@dataclass(frozen=True, slots=True)
class Booked:
    """A booking the turn made (or found already made): what the reply must tell."""

    day: str  # in words, e.g. "lunes 7 de diciembre"
    time: str  # "HH:MM"
    url: str | None
    confirmation: str  # a customer-ready sentence with the day, the time and the link


@dataclass(slots=True)
class TurnContext:
    """What a tool may know about the turn it runs in; built by the loop from the request, so
    tenant values never come from the model's arguments. Tools also leave here what the turn
    did, for the reply guard: the facts a reply is checked against."""

    tenant: Tenant
    key: ConversationKey
    ledger: BookingLedger
    customer: CustomerWords
    today: date  # in the business's zone: what "mañana" is counted from
    turn_id: str
    booking_url: str | None = None
    backend_failed: bool = False
    results: list[ToolResult] = field(default_factory=list)
    booked: list[Booked] = field(default_factory=list)
    pending: ToolResult | None = None  # the latest booking put to the customer to confirm
    answered: dict[tuple[str, str], ToolResult] = field(default_factory=dict)
    """Results by (tool, canonical arguments): a repeated call is answered from here."""
    repeats: int = 0
    offerings: tuple[Offering, ...] = ()
    """The business's services (`OBTENER_SERVICIOS_CITAS`), for a service's own length."""
    faqs: tuple[Faq, ...] = ()
    business_context: str = ""
    """The business's FAQs and description, which `search_products` also searches."""
    hours: OpeningHours | None = None
    """The business's opening hours, for a question about them (`business_answers`)."""

    def find_service(self, name: str | None) -> Offering | None:
        """The service the model named (case, accents and extra words aside), if exactly one
        fits."""
        if not name:
            return None
        wanted = " ".join(fold(name).split())
        exact = [s for s in self.offerings if " ".join(fold(s.name).split()) == wanted]
        if exact:
            return exact[0]
        near = [s for s in self.offerings if wanted in fold(s.name) or fold(s.name) in wanted]
        return near[0] if len(near) == 1 else None

    def tenant_for(self, service: str | None) -> Tenant:
        """The tenant whose appointments last as long as `service` does, when the backend gives
        that service a `duracion_minutos`; else the request's own length."""
        found = self.find_service(service)
        if found is None or found.duration_minutes is None:
            return self.tenant
        return replace(self.tenant, duration_minutes=found.duration_minutes)

    said: tuple[str, ...] = ()  # the customer's message(s) of this turn, as written
    last_reply: str | None = None  # what the customer got at the end of the previous turn
    handoff: str | None = None  # request_human's reason: the turn ends, a person takes over
