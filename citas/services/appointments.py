"""The customer's own appointments: list, cancel, reschedule. Owns the
`LISTAR_EVENTOS_CLIENTE`, `CANCELAR_EVENTO` and `REPROGRAMAR_EVENTO` wire formats.

Who may touch a booking: a conversation reaches only the events of its own phone (its
`session_id`, when that is a phone number, as WhatsApp sessions are) in its own business and
calendar; the tenant values and the phone come from the turn, never from the model. The model
sees a short reference for each event (a hash of business, conversation and event id, never the
raw backend id) and every reference it passes back is resolved against the customer's own list
first: one it invented, or took from another conversation, matches nothing there and is refused
without any change being sent.

A reschedule obeys every rule of a new booking (the availability service's checks), offers
alternatives when it cannot be made, and, like a cancellation, is two-phase when confirmation
is on (the ledger's proposals, keyed by the change's idempotency key). Keys are derived from the
business, conversation, event and (for a reschedule) the new slot, so retries and repeats change
the event once. A reschedule that happened is recorded in the ledger like a booking: the reply
guard then lets the reply state it.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog

from citas.backend import BackendClient
from citas.domain import LOCAL_FORMAT, ConversationKey, Slot, SlotProblem, Tenant, parse_local
from citas.errors import BackendRejected
from citas.ledger import BookingLedger
from citas.metrics import APPOINTMENT_CHANGES
from citas.services.availability import AvailabilityService, SlotVerdict

log = structlog.get_logger("citas.appointments")

LIST_OPERATION = "LISTAR_EVENTOS_CLIENTE"
CANCEL_OPERATION = "CANCELAR_EVENTO"
RESCHEDULE_OPERATION = "REPROGRAMAR_EVENTO"
CONFIRMED = "confirmado"
CANCELLED = "cancelado"
_PHONE = re.compile(r"\+?\d{7,15}")
_WHATSAPP_SUFFIX = re.compile(r"@(?:c\.us|s\.whatsapp\.net)$")


def session_phone(session_id: str) -> str | None:
    """The phone number a session id is (WhatsApp's `51987654321`, `+51 987 654 321`,
    `51987654321@c.us`, `whatsapp:+51987654321`), digits only; None when it is not one. The one
    form citas sends as `cliente_telefono`, both when booking and when looking bookings up."""
    text = _WHATSAPP_SUFFIX.sub("", session_id.strip())
    text = re.sub(r"^whatsapp:", "", text, flags=re.IGNORECASE)
    text = re.sub(r"[\s().-]", "", text)
    if not _PHONE.fullmatch(text):
        return None
    return text.lstrip("+")


def reference_for(tenant: Tenant, key: ConversationKey, event_id: str) -> str:
    """The short name the model and the customer see for one of the customer's events."""
    parts = (str(tenant.id_empresa), str(tenant.usuario_id or ""), key.session_id, event_id)
    return "C" + hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:5].upper()


def _normalized_reference(text: str) -> str:
    return re.sub(r"[^0-9A-Za-z]", "", text).upper()


def change_key(tenant: Tenant, key: ConversationKey, event_id: str, change: str) -> str:
    """The idempotency key of one change (`cancelar`, or the new slot's start) of one event."""
    parts = (
        str(tenant.id_empresa),
        str(tenant.usuario_id or ""),
        key.session_id,
        event_id,
        change,
    )
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class Appointment:
    """One of the customer's events, as the backend listed it."""

    event_id: str  # the backend's id: never shown to the model
    reference: str
    slot: Slot
    title: str
    url: str | None
    cancelled: bool


class ChangeProblem:
    """Why a change was refused before anything was sent (stable codes for the model)."""

    NO_PHONE = "no_phone"
    NOT_FOUND = "not_found"
    PAST = "past"
    TOO_LATE = "too_late_to_cancel"
    CANCELLED = "already_cancelled"


@dataclass(frozen=True, slots=True)
class ChangeOutcome:
    """Exactly one of: a refusal (`problem`, or a slot `refusal` with alternatives),
    `pending` (put to the customer, not sent), or `done` (maybe earlier: `deduplicated`)."""

    appointment: Appointment | None = None
    problem: str | None = None
    refusal: SlotVerdict | None = None
    pending: bool = False
    done: bool = False
    deduplicated: bool = False
    new_slot: Slot | None = None
    url: str | None = None


class AppointmentService:
    def __init__(
        self,
        client: BackendClient,
        calendar_url: str | None,
        availability: AvailabilityService,
        *,
        confirm_before_change: bool = True,
        cancel_min_notice: timedelta = timedelta(minutes=120),
    ) -> None:
        self._client = client
        self._url = calendar_url
        self._availability = availability
        self.confirm_before_change = confirm_before_change
        self.cancel_min_notice = cancel_min_notice

    async def own(self, tenant: Tenant, key: ConversationKey) -> list[Appointment] | None:
        """The customer's events from the start of today on (cancelled ones too), or None
        when the conversation has no phone to find them by (no backend call then)."""
        phone = session_phone(key.session_id)
        if phone is None:
            return None
        now = self._availability.now(tenant)
        since = now.replace(hour=0, minute=0, second=0, microsecond=0)
        answer = await self._client.call(
            self._url,
            LIST_OPERATION,
            {
                "id_empresa": tenant.id_empresa,
                "usuario_id": tenant.usuario_id,
                "cliente_telefono": phone,
                "desde": since.strftime(LOCAL_FORMAT),
            },
        )
        return _parse_events(answer.get("eventos"), tenant, key)

    async def upcoming(self, tenant: Tenant, key: ConversationKey) -> list[Appointment] | None:
        """The customer's confirmed appointments that have not started yet, soonest first."""
        own = await self.own(tenant, key)
        if own is None:
            return None
        return _upcoming(own, self._availability.now(tenant))

    async def _find(
        self, tenant: Tenant, key: ConversationKey, reference: str
    ) -> Appointment | str:
        own = await self.own(tenant, key)
        if own is None:
            return ChangeProblem.NO_PHONE
        wanted = _normalized_reference(reference)
        for appointment in own:
            if appointment.reference == wanted:
                return appointment
        upcoming = _upcoming(own, self._availability.now(tenant))
        if self.confirm_before_change and len(upcoming) == 1:
            # A reference the model made up (seen with a 1.5B model: «C12345», again and again,
            # list_my_bookings never called) can only mean the customer's one appointment; the
            # customer confirms the change, shown with that appointment, before it is made.
            log.info("appointment_reference_inferred", reference=reference[:40])
            APPOINTMENT_CHANGES.labels(change="any", outcome="only_one").inc()
            return upcoming[0]
        log.info("appointment_reference_refused", reference=reference[:40])
        APPOINTMENT_CHANGES.labels(change="any", outcome="not_found").inc()
        return ChangeProblem.NOT_FOUND

    async def cancel(
        self,
        tenant: Tenant,
        key: ConversationKey,
        ledger: BookingLedger,
        reference: str,
        reason: str | None,
        *,
        turn_id: str,
    ) -> ChangeOutcome:
        found = await self._find(tenant, key, reference)
        if isinstance(found, str):
            return ChangeOutcome(problem=found)
        ckey = change_key(tenant, key, found.event_id, CANCELLED)
        if found.cancelled:
            # Cancelled already (by an earlier turn, a retry, or the business): nothing to send.
            return ChangeOutcome(found, done=True, deduplicated=True)
        now = self._availability.now(tenant)
        if found.slot.instant <= now:
            return self._refused("cancel", found, ChangeProblem.PAST)
        if found.slot.instant - now < self.cancel_min_notice:
            return self._refused("cancel", found, ChangeProblem.TOO_LATE)
        if self.confirm_before_change and not ledger.proposed_before(ckey, turn_id):
            ledger.propose(ckey, turn_id)
            APPOINTMENT_CHANGES.labels(change="cancel", outcome="proposed").inc()
            return ChangeOutcome(found, pending=True)
        await self._client.call(
            self._url,
            CANCEL_OPERATION,
            {
                "id_empresa": tenant.id_empresa,
                "usuario_id": tenant.usuario_id,
                "id_evento": _wire_id(found.event_id),
                "motivo": (reason or "Cancelada por el cliente").strip()[:300],
                "idempotency_key": ckey,
            },
        )
        APPOINTMENT_CHANGES.labels(change="cancel", outcome="done").inc()
        log.info("appointment_cancelled", event_id=found.event_id)
        return ChangeOutcome(found, done=True)

    async def reschedule(
        self,
        tenant: Tenant,
        key: ConversationKey,
        ledger: BookingLedger,
        reference: str,
        new_start: datetime,
        *,
        turn_id: str,
    ) -> ChangeOutcome:
        found = await self._find(tenant, key, reference)
        if isinstance(found, str):
            return ChangeOutcome(problem=found)
        slot = Slot(new_start, found.slot.duration)
        if found.cancelled:
            return self._refused("reschedule", found, ChangeProblem.CANCELLED)
        if found.slot.local_start == slot.local_start:
            # Already there: this very change, made earlier (maybe by an unanswered attempt).
            return ChangeOutcome(found, done=True, deduplicated=True, new_slot=slot, url=found.url)
        now = self._availability.now(tenant)
        if found.slot.instant <= now:
            return self._refused("reschedule", found, ChangeProblem.PAST)
        rkey = change_key(tenant, key, found.event_id, slot.local_start)
        # The event's own interval does not make its new slot taken: the backend, which moves
        # it atomically, decides then.
        overlaps_itself = found.slot.instant < slot.end and slot.instant < found.slot.end
        verdict = await self._availability.check_slot(
            tenant, slot, ask_calendar=not overlaps_itself
        )
        if not verdict.bookable:
            ledger.mark_verified(*(s.local_start for s in verdict.alternatives))
            APPOINTMENT_CHANGES.labels(change="reschedule", outcome="refused").inc()
            return ChangeOutcome(found, refusal=verdict, new_slot=slot)
        if self.confirm_before_change and not ledger.proposed_before(rkey, turn_id):
            ledger.propose(rkey, turn_id)
            APPOINTMENT_CHANGES.labels(change="reschedule", outcome="proposed").inc()
            return ChangeOutcome(found, pending=True, new_slot=slot)
        try:
            answer = await self._client.call(
                self._url,
                RESCHEDULE_OPERATION,
                {
                    "id_empresa": tenant.id_empresa,
                    "usuario_id": tenant.usuario_id,
                    "id_evento": _wire_id(found.event_id),
                    "fecha_inicio": slot.local_start,
                    "fecha_fin": slot.local_end,
                    "idempotency_key": rkey,
                },
            )
        except BackendRejected as exc:
            # Taken between our check and the change: the old event stays; offer what is free.
            log.info("reschedule_refused_by_calendar", error=exc.message)
            APPOINTMENT_CHANGES.labels(change="reschedule", outcome="refused").inc()
            instead = await self._availability.offer_instead(tenant, slot)
            ledger.mark_verified(*(s.local_start for s in instead))
            return ChangeOutcome(
                found, refusal=SlotVerdict(slot, SlotProblem.TAKEN, instead), new_slot=slot
            )
        url = answer.get("url") or found.url
        ledger.record_booking(
            rkey,
            {
                "event_id": str(answer.get("id_evento") or found.event_id),
                "url": url,
                "slot_start": slot.local_start,
                "customer_name": "",
            },
        )
        APPOINTMENT_CHANGES.labels(change="reschedule", outcome="done").inc()
        log.info("appointment_rescheduled", event_id=found.event_id, slot=slot.local_start)
        return ChangeOutcome(found, done=True, new_slot=slot, url=url)

    def _refused(self, change: str, found: Appointment, problem: str) -> ChangeOutcome:
        APPOINTMENT_CHANGES.labels(change=change, outcome="refused").inc()
        return ChangeOutcome(found, problem=problem)


def _upcoming(own: list[Appointment], now: datetime) -> list[Appointment]:
    """The confirmed appointments that have not started yet, in `own`'s order."""
    return [a for a in own if not a.cancelled and a.slot.instant > now]


def _wire_id(event_id: str) -> int | str:
    return int(event_id) if event_id.isdigit() else event_id


def _parse_events(raw: Any, tenant: Tenant, key: ConversationKey) -> list[Appointment]:
    """The backend's list, skipping entries this version cannot read (logged)."""
    found: list[Appointment] = []
    for item in raw if isinstance(raw, list) else []:
        try:
            event_id = str(item["id_evento"])
            start = parse_local(str(item["fecha_inicio"]), tenant.zone)
            end = parse_local(str(item["fecha_fin"]), tenant.zone)
        except (KeyError, TypeError, ValueError):
            log.warning("customer_event_unreadable", item=str(item)[:200])
            continue
        duration = end.astimezone(UTC) - start.astimezone(UTC)
        if duration <= timedelta(0):
            duration = timedelta(minutes=tenant.duration_minutes)
        found.append(
            Appointment(
                event_id=event_id,
                reference=reference_for(tenant, key, event_id),
                slot=Slot(start, duration),
                title=str(item.get("titulo") or "Cita"),
                url=item.get("url") or None,
                cancelled=item.get("estado") == CANCELLED,
            )
        )
    found.sort(key=lambda a: a.slot.instant)
    return found
