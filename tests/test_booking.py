"""Safe booking over HTTP: exactly one event whatever the backend's timing, duplicates, tenant
values the model cannot change, verification first, taken slots, argument validation, and the
business's zone and booking settings."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import pytest
from pydantic import ValidationError

from citas.agent.tools import Tool, ToolRegistry, TurnContext
from citas.agent.tools.arguments import Arguments, spanish_errors
from citas.agent.tools.booking import CreateBookingArgs
from citas.agent.tools.result import ToolResult
from citas.config import Settings
from citas.conversation import Conversation
from citas.customer_words import CustomerWords
from citas.domain import ConversationKey, Slot, SlotProblem, Tenant
from citas.errors import BackendRejected
from citas.ledger import BookingLedger
from citas.messages import ToolCallRequest
from citas.sandbox import Fault, RunningSandbox
from citas.services.availability import AvailabilityService
from citas.services.booking import BookingRequest, Customer, idempotency_key
from citas.testing import ModelScript, call, reply, tool_calls
from citas.testing.harness import LocalCitas
from tests.conftest import OTHER_EMAIL, ChatFn, chat_body, occupy, tool_results
from tests.test_slot_rules import process_zone

LIMA = ZoneInfo("America/Lima")
SLOT = {"date": "2026-12-01", "time": "15:00"}
CUSTOMER = {"customer_name": "Ana Pérez", "customer_email": "ana.perez@example.com"}
BOOKING = {**SLOT, **CUSTOMER}
MakeClient = Callable[..., Awaitable[LocalCitas]]


async def verify(chat: ChatFn, llm: ModelScript, slot: dict[str, str] = SLOT, **kw: Any) -> None:
    """A turn in which the model checks `slot` and finds it bookable."""
    llm.add(call("check_availability", slot), reply("Está libre. ¿Tu nombre y correo?"))
    await chat("¿Tienen el martes a las 3pm?", **kw)
    assert tool_results(llm.requests[-1])[-1]["disponible"] is True


async def book(chat: ChatFn, llm: ModelScript, args: dict[str, Any] = BOOKING, **kw: Any) -> Any:
    """A turn in which the model calls create_booking once; returns (HTTP body, tool result)."""
    llm.add(call("create_booking", args), reply("Hecho."))
    response = await chat("Ana Pérez, ana.perez@example.com", **kw)
    assert response.status == 200
    return await response.json(), tool_results(llm.requests[-1])[-1]


def creates_for_ana(sandbox: RunningSandbox) -> list[dict[str, Any]]:
    """The CREAR_EVENTO requests citas sent (not the other customer's, made in `occupy`)."""
    return [
        body
        for body in sandbox.backend.calls_of("CREAR_EVENTO")
        if body["cliente_correo"] == CUSTOMER["customer_email"]
    ]


# --- exactly once, whatever the backend's timing -------------------------------------------


async def test_commit_then_late_answer_makes_one_event_and_confirms(
    chat: ChatFn, llm: ModelScript, sandbox: RunningSandbox, settings: Settings
) -> None:
    await verify(chat, llm)
    late = settings.backend_read_timeout_seconds + 0.5
    sandbox.backend.faults.add("CREAR_EVENTO", Fault("commit_then_late", seconds=late))

    body, result = await book(chat, llm)

    assert sandbox.backend.faults.triggered == ["CREAR_EVENTO"]
    [event] = sandbox.backend.events
    first, retry = sandbox.backend.calls_of("CREAR_EVENTO")
    assert first == retry, "the retry must carry the same body, so the same idempotency key"
    assert first["idempotency_key"] == event.idempotency_key
    assert result["reservado"] is True and result["id_evento"] == str(event.id_evento)
    assert body["url"] == event.url
    assert body["reply"].startswith("Hecho.") and event.url in body["reply"]


async def test_no_answer_at_all_then_asking_again_still_makes_one_event(
    make_client: MakeClient, llm: ModelScript, sandbox: RunningSandbox, settings: Settings
) -> None:
    # One try per operation: the late answer is lost for good, though the event was committed.
    client = await make_client(
        settings.with_updates(backend_read_timeout_seconds=0.3, backend_max_tries=1)
    )

    async def chat(message: str, **kw: Any) -> aiohttp.ClientResponse:
        return await client.post("/api/chat", json=chat_body(message, **kw))

    await verify(chat, llm)
    sandbox.backend.faults.add("CREAR_EVENTO", Fault("commit_then_late", seconds=0.8))
    body, result = await book(chat, llm)
    assert result["ok"] is False and result["error"] == "backend_unavailable"
    assert body["error"]["code"] == "backend_unavailable" and body["url"] is None
    [event] = sandbox.backend.events  # committed, though nobody heard about it

    # The calendar now shows the slot busy (with our own event): asking again must not offer
    # alternatives, which would make a second event, but get the first one by its key.
    body, result = await book(chat, llm)
    assert sandbox.backend.events == [event]
    assert result["reservado"] is True and result["id_evento"] == str(event.id_evento)
    assert body["url"] == event.url
    keys = {c["idempotency_key"] for c in sandbox.backend.calls_of("CREAR_EVENTO")}
    assert keys == {event.idempotency_key}


async def test_parallel_and_later_duplicates_make_one_event(
    chat: ChatFn, llm: ModelScript, sandbox: RunningSandbox
) -> None:
    await verify(chat, llm)
    llm.add(
        tool_calls(
            call("create_booking", BOOKING, id="call_dup_1"),
            call("create_booking", BOOKING, id="call_dup_2"),
        ),
        reply("Listo."),
    )
    await chat("Sí, resérvalo. Ana Pérez, ana.perez@example.com")
    [event] = sandbox.backend.events
    assert len(sandbox.backend.calls_of("CREAR_EVENTO")) == 1  # one attempt, not two
    first, second = tool_results(llm.requests[-1])[-2:]
    assert (first["ya_existia"], second["ya_existia"]) == (False, True)
    assert first["id_evento"] == second["id_evento"] == str(event.id_evento)
    assert first["url"] == second["url"] == event.url

    # A later turn: same slot and customer (the email in other case) → the first confirmation.
    again = {**BOOKING, "customer_email": "ANA.PEREZ@EXAMPLE.COM"}
    body, result = await book(chat, llm, again)
    assert sandbox.backend.events == [event]
    assert len(sandbox.backend.calls_of("CREAR_EVENTO")) == 1
    assert result["ya_existia"] is True and result["id_evento"] == str(event.id_evento)
    assert body["url"] == event.url


def test_the_idempotency_key_is_derived_from_business_calendar_conversation_slot_customer() -> None:
    tenant = Tenant(12, LIMA, 30, usuario_id=7)
    conversation = ConversationKey(12, "51987654321")
    slot = Slot(datetime(2026, 12, 1, 15, 0, tzinfo=LIMA), timedelta(minutes=30))
    request = BookingRequest(slot, Customer("Ana Pérez", "ana.perez@example.com"))
    key = idempotency_key(tenant, conversation, request)
    same = [
        idempotency_key(
            tenant,
            conversation,
            BookingRequest(slot, Customer("ana perez", "ANA.perez@EXAMPLE.com")),
        ),
        idempotency_key(tenant, conversation, BookingRequest(slot, request.customer, "Limpieza")),
    ]
    different = [
        idempotency_key(Tenant(13, LIMA, 30, usuario_id=7), conversation, request),
        idempotency_key(Tenant(12, LIMA, 30, usuario_id=8), conversation, request),
        idempotency_key(tenant, ConversationKey(12, "51900000000"), request),
        idempotency_key(
            tenant,
            conversation,
            BookingRequest(Slot(slot.start + slot.duration, slot.duration), request.customer),
        ),
        idempotency_key(
            tenant, conversation, BookingRequest(slot, Customer("Ana Pérez", "ana@example.com"))
        ),
    ]
    assert same == [key, key]
    assert len({key, *different}) == 6


def test_an_unanswered_booking_survives_the_conversation_being_saved() -> None:
    conversation = Conversation()
    conversation.ledger.mark_unsettled("k1")
    conversation.ledger.mark_unsettled("k1")
    restored = Conversation.from_dict(json.loads(json.dumps(conversation.to_dict())))
    assert restored.ledger.unsettled == ["k1"]
    restored.ledger.settle("k1")
    assert restored.ledger.unsettled == []
    older = {"v": 1, "turns": [], "verified_slots": [], "bookings": {}}  # saved before the field
    assert Conversation.from_dict(older).ledger.unsettled == []


# --- tenant values belong to the request ----------------------------------------------------


async def test_model_arguments_cannot_choose_business_owner_zone_or_duration(
    chat: ChatFn, llm: ModelScript, sandbox: RunningSandbox
) -> None:
    intruder = {
        "id_empresa": 99,
        "usuario_id": 1,
        "zona_horaria": "Asia/Tokyo",
        "duracion_cita_minutos": 600,
        "idempotency_key": "chosen-by-the-model",
    }
    await verify(chat, llm, {**SLOT, **intruder})
    await book(chat, llm, {**BOOKING, **intruder})

    assert sandbox.backend.calls, "the backend was used"
    for operation, body in sandbox.backend.calls:
        assert body["id_empresa"] == 12, operation
        assert body.get("usuario_id", 7) == 7, operation
        if operation in {"CONSULTAR_DISPONIBILIDAD", "SUGERIR_HORARIOS", "CREAR_EVENTO"}:
            assert body["usuario_id"] == 7, operation
    [event] = sandbox.backend.events
    assert (event.id_empresa, event.usuario_id) == (12, 7)
    assert (event.fecha_inicio, event.fecha_fin) == (
        datetime(2026, 12, 1, 15, 0),
        datetime(2026, 12, 1, 15, 30),
    )
    assert event.idempotency_key != "chosen-by-the-model"


# --- verification first, and a slot taken meanwhile ------------------------------------------


async def test_booking_without_a_check_is_refused(
    chat: ChatFn, llm: ModelScript, sandbox: RunningSandbox
) -> None:
    await verify(chat, llm, session_id="another-customer")  # verified elsewhere does not count
    body, result = await book(chat, llm)
    assert (result["ok"], result["reservado"]) == (False, False)
    assert result["error"] == "unverified_slot" and "mensaje" not in result
    assert (
        "No se reservó" in result["instruccion"] and "check_availability" in result["instruccion"]
    )
    assert body["url"] is None
    assert sandbox.backend.calls_of("CREAR_EVENTO") == []
    assert sandbox.backend.events == []


async def test_a_slot_taken_after_the_check_answers_with_alternatives(
    chat: ChatFn, llm: ModelScript, sandbox: RunningSandbox
) -> None:
    await verify(chat, llm)
    occupy(sandbox, "2026-12-01 15:00:00", "2026-12-01 15:30:00")
    body, result = await book(chat, llm)
    assert (result["reservado"], result["disponible"]) == (False, False)
    assert result["motivo"] == SlotProblem.TAKEN.value
    assert [(a["fecha"], a["hora"]) for a in result["alternativas"]][:2] == [
        ("2026-12-01", "15:30"),
        ("2026-12-01", "16:00"),
    ]
    assert "Horarios disponibles cercanos" in result["mensaje"]
    assert creates_for_ana(sandbox) == []  # the re-check caught it
    assert body["url"] is None

    # An alternative offered counts as checked: booking it works.
    body, result = await book(chat, llm, {**BOOKING, "time": "15:30"})
    assert result["reservado"] is True
    assert [e.cliente_correo for e in sandbox.backend.events] == [
        OTHER_EMAIL,
        "ana.perez@example.com",
    ]


async def test_a_slot_taken_between_the_recheck_and_the_event_answers_with_alternatives(
    chat: ChatFn, llm: ModelScript, sandbox: RunningSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    await verify(chat, llm)
    original = AvailabilityService.is_free

    async def free_then_taken(self: AvailabilityService, tenant: Tenant, slot: Slot) -> bool:
        answer = await original(self, tenant, slot)
        occupy(sandbox, slot.local_start, slot.local_end)  # someone is faster
        return answer

    monkeypatch.setattr(AvailabilityService, "is_free", free_then_taken)
    _, result = await book(chat, llm)
    assert len(creates_for_ana(sandbox)) == 1
    assert (result["reservado"], result["motivo"]) == (False, SlotProblem.TAKEN.value)
    assert result["alternativas"]
    assert [e.cliente_correo for e in sandbox.backend.events] == [OTHER_EMAIL]


# --- argument validation --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("customer_name", "ana.perez@example.com", "no un correo ni números"),
        ("customer_name", "51987654321", "no un correo ni números"),
        ("customer_name", "A", "de 2 a 80 letras"),
        ("customer_name", "Ana <script>", "solo puede tener letras"),
        ("customer_email", "ana.perez", "no es un correo electrónico válido"),
        ("customer_email", "ana@example", "no es un correo electrónico válido"),
        ("customer_email", "ana perez@example.com", "no es un correo electrónico válido"),
        ("customer_phone", "llámame", "no es un teléfono válido"),
        ("customer_phone", "12345", "no es un teléfono válido"),
        ("date", "2026-02-30", "esa fecha no existe"),
        ("date", "01/12/2026", "formato AAAA-MM-DD"),  # words need the turn's date (context)
        ("time", "25:00", "¿A qué hora exactamente?"),
        ("time", "a las 3", "¿A las 3 de la mañana o de la tarde?"),
    ],
)
def test_invalid_booking_arguments_are_named_in_spanish(
    field: str, value: str, message: str
) -> None:
    with pytest.raises(ValidationError) as raised:
        CreateBookingArgs.model_validate({**BOOKING, field: value})
    text = spanish_errors(raised.value)
    assert text.startswith(f"{field}: ")
    assert message in text


def test_valid_booking_arguments_are_normalized() -> None:
    args = CreateBookingArgs.model_validate(
        {
            **SLOT,
            "customer_name": "  María  José   O'Neill-Pérez ",
            "customer_email": "Maria.Jose@Example.COM",
            "customer_phone": "+51 (987) 654-321",
        }
    )
    assert args.customer_name == "María José O'Neill-Pérez"
    assert args.customer_email == "Maria.Jose@example.com"
    assert args.customer_phone == "+51987654321"
    missing = CreateBookingArgs.model_validate
    with pytest.raises(ValidationError) as raised:
        missing(SLOT)
    assert spanish_errors(raised.value) == (
        "customer_name: falta este dato; customer_email: falta este dato"
    )


async def test_an_invalid_email_reaches_the_model_and_not_the_backend(
    chat: ChatFn, llm: ModelScript, sandbox: RunningSandbox
) -> None:
    await verify(chat, llm)
    _, result = await book(chat, llm, {**BOOKING, "customer_email": "ana.perez@"})
    assert result["ok"] is False and result["error"] == "invalid_arguments"
    assert "customer_email: no es un correo electrónico válido" in result["instruccion"]
    assert "Pide al cliente el dato correcto" in result["instruccion"]
    assert sandbox.backend.calls_of("CREAR_EVENTO") == []


async def test_an_unexpected_backend_refusal_becomes_a_tool_result() -> None:
    class Args(Arguments):
        pass

    async def refused(_services: Any, _ctx: Any, _args: Any) -> ToolResult:
        raise BackendRejected("CONSULTAR_DISPONIBILIDAD", "Usuario no encontrado")

    registry = ToolRegistry(None, [Tool("probe", "d", Args, refused)])  # type: ignore[arg-type]
    ctx = TurnContext(
        Tenant(12, LIMA, 30),
        ConversationKey(12, "s"),
        BookingLedger(),
        CustomerWords(),
        today=date(2026, 11, 30),
        turn_id="t",
    )
    events: list[Any] = []
    call = ToolCallRequest("c1", "probe", "{}")
    result = json.loads(await registry.dispatch(ctx, call, events.append))
    assert result["ok"] is False and result["error"] == "backend_rejected"
    assert "Usuario no encontrado" in result["instruccion"]
    assert [type(e).__name__ for e in events] == ["ToolCallStarted", "ToolCallFinished"]
    assert (events[-1].tool, events[-1].outcome) == ("probe", "backend_rejected")


# --- the business's zone and the booking settings -------------------------------------------


async def test_the_request_zone_decides_now(
    chat: ChatFn, llm: ModelScript, sandbox: RunningSandbox
) -> None:
    today_11 = {"date": "2026-11-30", "time": "11:00"}
    llm.add(call("check_availability", today_11), reply("."))
    await chat("¿Hoy a las 11?")  # Lima: it is 10:00
    assert tool_results(llm.requests[-1])[-1]["disponible"] is True
    llm.add(call("check_availability", today_11), reply("."))
    await chat("¿Hoy a las 11?", session_id="cl-1", zona_horaria="America/Santiago")  # 12:00
    result = tool_results(llm.requests[-1])[-1]
    assert result["motivo"] == SlotProblem.PAST.value
    assert result["alternativas"][0]["hora"] == "12:30"


@pytest.mark.parametrize("process", ["UTC", "Asia/Tokyo"])
async def test_citas_timezone_is_the_default_zone_and_the_request_overrides_it(
    make_client: MakeClient, llm: ModelScript, settings: Settings, process: str
) -> None:
    client = await make_client(settings.with_updates(timezone="America/Santiago"))
    today_11 = {"date": "2026-11-30", "time": "11:00"}
    verdicts = []
    with process_zone(process):
        for zone in (None, "America/Lima"):
            llm.add(call("check_availability", today_11), reply("."))
            config = {"zona_horaria": zone} if zone else {}
            body = chat_body("¿Hoy a las 11?", session_id=f"s-{zone}", **config)
            assert (await client.post("/api/chat", json=body)).status == 200
            verdicts.append(tool_results(llm.requests[-1])[-1]["disponible"])
    assert verdicts == [False, True]


async def test_minimum_notice_and_horizon_come_from_the_settings(
    make_client: MakeClient, llm: ModelScript, settings: Settings
) -> None:
    client = await make_client(
        settings.with_updates(booking_min_notice_minutes=120, booking_horizon_days=7)
    )
    answers = {}
    for day, at in [("2026-11-30", "11:30"), ("2026-11-30", "12:00"), ("2026-12-08", "10:00")]:
        llm.add(call("check_availability", {"date": day, "time": at}), reply("."))
        await client.post("/api/chat", json=chat_body("¿Se puede?"))
        result = tool_results(llm.requests[-1])[-1]
        answers[(day, at)] = result.get("motivo")
    assert answers == {
        ("2026-11-30", "11:30"): SlotProblem.TOO_SOON.value,
        ("2026-11-30", "12:00"): None,
        ("2026-12-08", "10:00"): SlotProblem.TOO_FAR.value,
    }


async def test_a_day_listing_offers_slots_that_can_then_be_booked(
    chat: ChatFn, llm: ModelScript, sandbox: RunningSandbox
) -> None:
    llm.add(call("check_availability", {"date": "2026-12-06"}), reply("."))
    await chat("¿Qué tienen el domingo?")
    listing = tool_results(llm.requests[-1])[-1]
    assert listing["horarios_libres"] == []
    assert listing["motivo"] == SlotProblem.CLOSED_DAY.value
    offered = listing["alternativas"][0]
    assert (offered["fecha"], offered["hora"]) == ("2026-12-07", "09:00")

    llm.add(call("check_availability", {"date": "2026-12-07"}), reply("."))
    await chat("¿Y el lunes?")
    listing = tool_results(llm.requests[-1])[-1]
    assert listing["horarios_libres"][:2] == ["09:00", "09:30"]
    assert "motivo" not in listing

    _, result = await book(chat, llm, {**BOOKING, "date": "2026-12-07", "time": "09:30"})
    assert result["reservado"] is True
    [event] = sandbox.backend.events
    assert event.fecha_inicio == datetime(2026, 12, 7, 9, 30)


async def test_opening_hours_come_from_the_one_cached_source_the_prompt_uses(
    chat: ChatFn, llm: ModelScript, sandbox: RunningSandbox
) -> None:
    for at in ("15:00", "20:00"):
        llm.add(call("check_availability", {"date": "2026-12-01", "time": at}), reply("."))
        await chat(f"¿El martes a las {at}?")
    assert "lunes: 09:00–13:00, 15:00–19:00" in llm.requests[0]["messages"][0]["content"]
    assert tool_results(llm.requests[-1])[-1]["motivo"] == SlotProblem.OUTSIDE_HOURS.value
    assert len(sandbox.backend.calls_of("OBTENER_HORARIO_REUNIONES")) == 1


@pytest.mark.parametrize("now", [datetime(2026, 9, 5, 23, 50, tzinfo=ZoneInfo("America/Santiago"))])
async def test_a_time_skipped_by_daylight_saving_is_refused_over_http(
    chat: ChatFn, llm: ModelScript, now: datetime
) -> None:
    # Santiago's clocks jump from 00:00 to 01:00 on Sunday 2026-09-06; business 41 is there.
    gap = {"date": "2026-09-06", "time": "00:30"}
    llm.add(call("check_availability", gap), reply("."))
    await chat("¿Domingo 00:30?", id_empresa=41, zona_horaria="America/Santiago")
    result = tool_results(llm.requests[-1])[-1]
    assert result["motivo"] == SlotProblem.NONEXISTENT.value
    # Nearest real slots: Saturday is already over, Sunday closed, so Monday from 08:00.
    assert [(a["fecha"], a["hora"]) for a in result["alternativas"]][:2] == [
        ("2026-09-07", "08:00"),
        ("2026-09-07", "08:30"),
    ]


class _BreaksAfter:
    """The test's model for `good` calls, then an unexpected exception (a bug, a chunk that no
    check caught): what a model failure that is not an `LLMUnavailable` looks like."""

    def __init__(self, inner: Any, good: int) -> None:
        self.inner, self.good, self.name = inner, good, inner.name

    async def complete(self, messages: Any, tools: Any, **kw: Any) -> Any:
        if self.good <= 0:
            raise ValueError("invalid literal for int() with base 10: 'abc'")
        self.good -= 1
        return await self.inner.complete(messages, tools, **kw)


async def test_a_failure_after_the_booking_is_a_200_with_the_confirmation(
    make_client: MakeClient,
    model: Any,
    llm: ModelScript,
    sandbox: RunningSandbox,
    settings: Settings,
) -> None:
    broken = _BreaksAfter(model, good=3)
    client = await make_client(settings, model=broken)

    async def chat(message: str, **kw: Any) -> aiohttp.ClientResponse:
        return await client.post("/api/chat", json=chat_body(message, **kw))

    await verify(chat, llm)
    llm.add(call("create_booking", BOOKING))
    response = await chat("Ana Pérez, ana.perez@example.com", message_id="wamid.x")
    body = await response.json()
    [event] = sandbox.backend.events
    assert response.status == 200
    assert body["url"] == event.url and event.url in body["reply"]

    # The redelivery (the model well again) gets the same booking, never "taken".
    broken.good = 10
    llm.add(call("create_booking", BOOKING), reply("Ya quedó."))
    response = await chat("Ana Pérez, ana.perez@example.com", message_id="wamid.x")
    assert response.status == 200 and (await response.json())["url"] == event.url
    assert sandbox.backend.events == [event]


def test_the_wanted_slot_outlives_the_store_and_ends_when_proposed_or_booked() -> None:
    conversation = Conversation()
    wanted = {"slot": "2026-12-01 15:00:00", "service": "Limpieza"}
    conversation.ledger.wanted = dict(wanted)
    restored = Conversation.from_dict(json.loads(json.dumps(conversation.to_dict())))
    assert restored.ledger.wanted == wanted
    assert restored.ledger.copy().wanted == wanted
    restored.ledger.propose("k1", "turn-1", {"slot": wanted["slot"], "name": "Ana Pérez"})
    assert restored.ledger.wanted is None
    restored.ledger.wanted = dict(wanted)
    restored.ledger.record_booking("k2", {})
    assert restored.ledger.wanted is None
    older = conversation.to_dict()
    del older["wanted"]  # saved before the field existed
    assert Conversation.from_dict(older).ledger.wanted is None
