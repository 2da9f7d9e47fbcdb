"""Creating appointments exactly once. Owns the `CREAR_EVENTO` wire format and every change to
a conversation's `BookingLedger`.

A booking needs the slot to have been found bookable earlier in the conversation (checks made
through this service, and proposals, record what they showed), is re-checked right before the
event is created,
and carries an idempotency key derived here from business, conversation, slot and customer, so
retries and repeats can never create a second event. With confirmation on, the first request for
a slot and customer only proposes it: the event is created when the same booking is asked again
in a later turn, after the customer has seen the summary.

The ledger is saved with the conversation only when the turn ends, so before `CREAR_EVENTO`
goes out the booking's intent (key, slot, customer) is written to the session store on its own.
A process killed after the backend committed but before the turn was saved leaves that intent:
the retry (any instance) then finds the slot taken by its own event, and sends `CREAR_EVENTO`
with the same key, which the backend answers with the first event, instead of calling the slot
taken. The same holds for a booking this conversation had proposed (its key is derived again).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import date, datetime, time
from typing import Any

import structlog

from citas.backend import BackendClient
from citas.domain import LOCAL_FORMAT, ConversationKey, Slot, SlotProblem, Tenant, local_time
from citas.errors import BackendError, BackendRejected
from citas.ledger import BookingLedger
from citas.metrics import BOOKINGS
from citas.services.appointments import session_phone
from citas.services.availability import AvailabilityService, DayListing, SlotVerdict
from citas.singleflight import SingleFlight
from citas.store.base import SessionStore

log = structlog.get_logger("citas.booking")

OPERATION = "CREAR_EVENTO"


@dataclass(frozen=True, slots=True)
class Customer:
    name: str
    email: str
    phone: str | None = None


@dataclass(frozen=True, slots=True)
class BookingRequest:
    slot: Slot
    customer: Customer
    service: str | None = None
    notes: str | None = None


@dataclass(frozen=True, slots=True)
class Confirmation:
    event_id: str
    url: str | None
    slot_start: str
    customer_name: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "url": self.url,
            "slot_start": self.slot_start,
            "customer_name": self.customer_name,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Confirmation:
        return cls(
            str(data["event_id"]),
            data.get("url"),
            str(data["slot_start"]),
            str(data["customer_name"]),
        )


@dataclass(frozen=True, slots=True)
class BookingOutcome:
    """Exactly one of: a confirmation (maybe an earlier one), a refusal verdict, `unverified`,
    or `pending` (bookable, put to the customer, not created yet)."""

    confirmation: Confirmation | None = None
    deduplicated: bool = False
    refusal: SlotVerdict | None = None
    unverified: bool = False
    pending: bool = False


def idempotency_key(tenant: Tenant, conversation: ConversationKey, request: BookingRequest) -> str:
    """Stable for the same business, calendar, conversation, slot and customer email."""
    parts = (
        str(tenant.id_empresa),
        str(tenant.usuario_id or ""),
        conversation.session_id,
        request.slot.local_start,
        request.customer.email.strip().lower(),
    )
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]


class BookingService:
    def __init__(
        self,
        client: BackendClient,
        calendar_url: str | None,
        availability: AvailabilityService,
        *,
        confirm_before_booking: bool = True,
        intents: SessionStore | None = None,
    ) -> None:
        self._client = client
        self._intents = intents
        self._url = calendar_url
        self._availability = availability
        self.confirm_before_booking = confirm_before_booking
        # Parallel identical calls in one round share one attempt (single-flight by key).
        self._flights: SingleFlight[str, BookingOutcome] = SingleFlight()

    async def check_slot(
        self, tenant: Tenant, ledger: BookingLedger, slot: Slot, service: str | None = None
    ) -> SlotVerdict:
        """Whether `slot` is bookable (else why, and what instead); what it shows as bookable
        (the slot, or the alternatives) may then be booked, and a bookable slot is the one the
        customer wants (`BookingLedger.wanted`)."""
        verdict = await self._availability.check_slot(tenant, slot)
        shown = (slot,) if verdict.bookable else verdict.alternatives
        ledger.mark_verified(*(s.local_start for s in shown))
        if verdict.bookable:
            self.want(ledger, slot, service)
        else:
            _unwant(ledger, slot)
        return verdict

    async def list_day(self, tenant: Tenant, ledger: BookingLedger, day: date) -> DayListing:
        """The free slots of `day` (or the nearest others); each may then be booked."""
        listing = await self._availability.list_day(tenant, day)
        ledger.mark_verified(*(s.local_start for s in (*listing.slots, *listing.alternatives)))
        ledger.wanted = None  # the customer is choosing again
        return listing

    def want(
        self, ledger: BookingLedger, slot: Slot, service: str | None, *, asked: bool = False
    ) -> None:
        """Record `slot`, shown as bookable or `asked` in the customer's own words, as the one
        the customer wants, so that their data, when it comes, proposes it (`follow_through`;
        a proposal checks the slot itself). Only with confirmation on: the step makes a
        proposal the customer still has to accept, never a booking."""
        if self.confirm_before_booking and (asked or ledger.is_verified(slot.local_start)):
            ledger.wanted = {"slot": slot.local_start, "service": service}

    def choose(
        self, ledger: BookingLedger, day: date | None, at: time | None, *, asking: bool = True
    ) -> None:
        """The customer named `day` and/or `at` in their own words: the one slot shown as
        bookable that they name becomes the wanted one; a wanted slot they did not name is
        dropped (they moved away from it). A day and a time named together, `asking` for them
        (not «el jueves a las 6 no puedo»), name a slot whole: shown or not, it is the wanted
        one, as `want(asked=True)` (seen with a 1.5B model: «quiero uno el jueves a las 6 de la
        tarde» answered «no puedo ayudarte con eso», and nothing proposed on the data that
        followed). Only with confirmation on, as `want`."""
        if day is None and at is None:
            return

        def named(start: str) -> bool:
            moment = local_time(start)
            return (day is None or moment.date() == day) and (at is None or moment.time() == at)

        wanted = ledger.wanted
        if wanted is not None and not named(wanted["slot"]):
            ledger.wanted = None
        # A day alone names many slots; a time picks one among those offered.
        offered = [start for start in ledger.verified_slots if named(start)] if at else []
        if day is not None and at is not None and asking and not offered:
            offered = [datetime.combine(day, at).strftime(LOCAL_FORMAT)]
        if len(offered) == 1 and self.confirm_before_booking:
            kept = (
                wanted["service"] if wanted is not None and wanted["slot"] == offered[0] else None
            )
            ledger.wanted = {"slot": offered[0], "service": kept}

    async def book(
        self,
        tenant: Tenant,
        key: ConversationKey,
        ledger: BookingLedger,
        request: BookingRequest,
        *,
        turn_id: str,
    ) -> BookingOutcome:
        """Book `request` (or propose it, see the module's docstring); `turn_id` names the turn
        asking, so a proposal is only confirmed by a later one."""
        ikey = idempotency_key(tenant, key, request)
        earlier = ledger.booking(ikey)
        if earlier is not None:
            BOOKINGS.labels(outcome="deduplicated").inc()
            return BookingOutcome(Confirmation.from_dict(earlier), deduplicated=True)
        confirmed = not self.confirm_before_booking or ledger.proposed_before(ikey, turn_id)
        outcome, shared = await self._flights.run(
            ikey,
            lambda: self._book_once(
                tenant, key=key, ledger=ledger, request=request, ikey=ikey, confirmed=confirmed
            ),
        )
        if outcome.pending:
            customer = request.customer
            awaiting: dict[str, str | None] = {"slot": request.slot.local_start}
            awaiting |= {"name": customer.name, "email": customer.email, "service": request.service}
            ledger.propose(ikey, turn_id, awaiting)
        if shared and outcome.confirmation is not None:
            BOOKINGS.labels(outcome="deduplicated").inc()
            return BookingOutcome(outcome.confirmation, deduplicated=True)
        if outcome.refusal is not None:
            # The alternatives are offered as bookable, as check_availability's are.
            ledger.mark_verified(*(s.local_start for s in outcome.refusal.alternatives))
            _unwant(ledger, request.slot)
        return outcome

    async def _book_once(
        self,
        tenant: Tenant,
        *,
        key: ConversationKey,
        ledger: BookingLedger,
        request: BookingRequest,
        ikey: str,
        confirmed: bool,
    ) -> BookingOutcome:
        intended = self._intents is not None and (
            await self._intents.recall_intent(key, ikey) is not None
        )
        if intended:
            # This exact booking was sent before (by a turn whose end was never saved): the
            # customer had confirmed it and it was verified then; the backend decides by key.
            confirmed = True
            ledger.mark_unsettled(ikey)
        if confirmed and not ledger.is_verified(request.slot.local_start) and not intended:
            BOOKINGS.labels(outcome="unverified").inc()
            return BookingOutcome(unverified=True)
        # A proposal needs no earlier check: it is checked here and shown to the customer as a
        # summary, which is what a check would have shown; the commit comes in a later turn.
        # After an unanswered CREAR_EVENTO our own event may hold the slot, so the calendar
        # would call it taken: the rules alone are re-checked and the backend decides by key.
        unsettled = ledger.is_unsettled(ikey)
        verdict = await self._availability.check_slot(
            tenant, request.slot, ask_calendar=not unsettled
        )
        if verdict.problem is SlotProblem.TAKEN and confirmed and ledger.was_proposed(ikey):
            # Taken maybe by this very booking, committed by a turn that never got to save it:
            # the rules alone, then the backend answers our key with the event it already has.
            verdict = await self._availability.check_slot(tenant, request.slot, ask_calendar=False)
        if not verdict.bookable:
            BOOKINGS.labels(outcome="refused").inc()
            return BookingOutcome(refusal=verdict)
        if not confirmed:
            ledger.mark_verified(request.slot.local_start)
            BOOKINGS.labels(outcome="proposed").inc()
            return BookingOutcome(pending=True)
        if self._intents is not None and not intended:
            # Durably, before anything leaves: a StoreUnavailable here books nothing.
            await self._intents.remember_intent(
                key,
                ikey,
                {"slot": request.slot.local_start, "email": request.customer.email.strip().lower()},
            )
        try:
            answer = await self._client.call(
                self._url, OPERATION, _event_body(tenant, key, request, ikey)
            )
        except BackendRejected as exc:
            # The slot was taken between our check and the event: offer what is still free.
            ledger.settle(ikey)
            log.info("booking_refused_by_calendar", error=exc.message)
            BOOKINGS.labels(outcome="refused").inc()
            instead = await self._availability.offer_instead(tenant, request.slot)
            return BookingOutcome(refusal=SlotVerdict(request.slot, SlotProblem.TAKEN, instead))
        except BackendError:
            # Every attempt went unanswered; the backend may still have committed one of them.
            ledger.mark_unsettled(ikey)
            BOOKINGS.labels(outcome="failed").inc()
            raise
        ledger.settle(ikey)
        confirmation = Confirmation(
            event_id=str(answer.get("id_evento")),
            url=answer.get("url") or None,
            slot_start=request.slot.local_start,
            customer_name=request.customer.name,
        )
        ledger.record_booking(ikey, confirmation.to_dict())
        BOOKINGS.labels(outcome="created").inc()
        log.info(
            "booking_created",
            event_id=confirmation.event_id,
            slot=request.slot.local_start,
            after_unanswered_attempt=unsettled,
        )
        return BookingOutcome(confirmation)


def _event_body(
    tenant: Tenant, key: ConversationKey, request: BookingRequest, ikey: str
) -> dict[str, Any]:
    customer = request.customer
    # Without a phone from the customer, the conversation's own (a WhatsApp session id is
    # one): list_my_bookings finds the customer's events by it.
    phone = customer.phone or session_phone(key.session_id) or ""
    title = (
        f"Cita: {request.service} - {customer.name}"
        if request.service
        else f"Cita - {customer.name}"
    )
    description = "Reservada por el asistente."
    if request.notes:
        description += f" Notas: {request.notes}"
    return {
        "id_empresa": tenant.id_empresa,
        "usuario_id": tenant.usuario_id,
        "titulo": title,
        "descripcion": description,
        "fecha_inicio": request.slot.local_start,
        "fecha_fin": request.slot.local_end,
        "cliente_nombre": customer.name,
        "cliente_correo": customer.email,
        "cliente_telefono": phone,
        "idempotency_key": ikey,
    }


def _unwant(ledger: BookingLedger, slot: Slot) -> None:
    """`slot` cannot be booked: no longer the wanted one, if it was. A slot the customer never
    asked for leaves theirs alone (seen with a 1.5B model: «el 15 a las 5 de la tarde» asked, a
    booking tried for a past hour nobody named, and the customer's data then proposed nothing)."""
    if ledger.wanted is not None and ledger.wanted["slot"] == slot.local_start:
        ledger.wanted = None
