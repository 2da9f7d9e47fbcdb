"""Handing a conversation to a person: `request_human` ends the turn with `handoff`, later
messages are stored unanswered (`paused`) until resumed or `CITAS_HANDOFF_TTL_SECONDS` passes,
a person's messages are recorded for the assistant, and all of it holds across instances."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from citas.agent.tools.handoff import HANDOFF_REPLY, handoff_label
from citas.config import Settings
from citas.testing import ModelScript, call, reply
from citas.testing.harness import LocalCitas
from tests.conftest import chat_body, tool_results
from tests.helpers import sample
from tests.test_booking import MakeClient

SESSION = "51987654321"
CONVERSATION = f"/api/conversations/12/{SESSION}"


async def send(client: LocalCitas, message: str) -> dict[str, Any]:
    response = await client.post("/api/chat", json=chat_body(message, session_id=SESSION))
    assert response.status == 200
    body: dict[str, Any] = await response.json()
    return body


async def hand_off(client: LocalCitas, llm: ModelScript) -> dict[str, Any]:
    llm.add(call("request_human", {"reason": "pidió hablar con una persona"}))
    return await send(client, "Quiero hablar con una persona, por favor")


async def test_handoff_pauses_until_resumed_and_keeps_what_was_said(
    client: LocalCitas, llm: ModelScript
) -> None:
    before = sample("citas_handoffs_total", reason="customer_asked")
    body = await hand_off(client, llm)
    assert body == {
        "reply": HANDOFF_REPLY,
        "url": None,
        "handoff": {"reason": "pidió hablar con una persona"},
    }
    assert sample("citas_handoffs_total", reason="customer_asked") == before + 1
    asked = len(llm.requests)

    paused = await send(client, "¿Hola? ¿Alguien?")
    assert paused == {"reply": None, "url": None, "paused": True}
    assert len(llm.requests) == asked, "no model call while a person has the conversation"

    person = {"text": "Hola, soy Carla de la clínica: tu cita queda el martes.", "author": "Carla"}
    recorded = await client.post(f"{CONVERSATION}/messages", json=person)
    assert recorded.status == 200
    assert (await recorded.json())["paused"] is True

    resumed = await client.post(f"{CONVERSATION}/resume")
    assert resumed.status == 200
    assert (await resumed.json()) == {
        "id_empresa": 12,
        "session_id": SESSION,
        "paused": False,
        "handoff": None,
    }
    llm.add(reply("¡Con gusto!"))
    assert (await send(client, "Gracias"))["reply"] == "¡Con gusto!"
    contents = [m.get("content") or "" for m in llm.requests[-1]["messages"]]
    assert "¿Hola? ¿Alguien?" in contents
    assert any("Carla de la clínica" in text for text in contents)


async def test_recording_a_message_needs_a_paused_conversation(client: LocalCitas) -> None:
    response = await client.post(
        f"{CONVERSATION}/messages", json={"text": "Hola", "author": "Carla"}
    )
    assert response.status == 409
    assert (await response.json())["error"]["code"] == "not_paused"
    bad = await client.post(f"{CONVERSATION}/messages", json={"text": " ", "author": "Carla"})
    assert bad.status == 400
    assert (await client.post("/api/conversations/0/x/resume")).status == 400


async def test_the_handoff_expires_after_its_ttl(
    make_client: MakeClient, llm: ModelScript, settings: Settings, now: datetime
) -> None:
    moment = [now]
    client = await make_client(
        settings.with_updates(handoff_ttl_seconds=600), clock=lambda: moment[0]
    )
    await hand_off(client, llm)
    assert (await send(client, "¿Sigue ahí?"))["paused"] is True
    moment[0] = now + timedelta(seconds=601)
    llm.add(reply("Aquí estoy."))
    assert (await send(client, "¿Hola?"))["reply"] == "Aquí estoy."


async def test_the_stream_of_a_paused_conversation_sends_no_text(
    client: LocalCitas, llm: ModelScript
) -> None:
    await hand_off(client, llm)
    response = await client.post("/api/chat/stream", json=chat_body("¿Hola?", session_id=SESSION))
    text = await response.text()
    assert "event: delta" not in text
    assert '"paused": true' in text or '"paused":true' in text


async def test_a_handoff_holds_across_instances(
    make_client: MakeClient, redis_settings: Settings, llm: ModelScript
) -> None:
    a, b = await make_client(redis_settings), await make_client(redis_settings)
    await hand_off(a, llm)
    assert (await send(b, "¿Hola?"))["paused"] is True
    assert (await b.post(f"{CONVERSATION}/resume")).status == 200
    llm.add(reply("Hola de nuevo."))
    assert (await send(a, "¿Hola?"))["reply"] == "Hola de nuevo."


def test_handoff_reasons_become_a_few_labels() -> None:
    assert handoff_label("El cliente pidió hablar con una persona") == "customer_asked"
    assert handoff_label("Reclamo por mala atención") == "complaint"
    assert handoff_label("Emergencia: dolor fuerte") == "emergency"
    assert handoff_label("xyz") == "other"


async def test_a_handoff_the_customer_never_asked_for_is_refused_and_the_model_keeps_helping(
    client: LocalCitas, llm: ModelScript
) -> None:
    # Seen with a 1.5B model: a price question, one refused booking call, then a handoff.
    llm.add(call("request_human", {"reason": "no pude ayudar"}), reply("La limpieza cuesta S/ 80."))
    body = await send(client, "¿Cuánto cuesta una limpieza?")
    assert body == {"reply": "La limpieza cuesta S/ 80.", "url": None}
    refused = tool_results(llm.requests[-1])[-1]
    assert refused["error"] == "handoff_not_requested" and refused["ok"] is False
    llm.add(reply("A las 9."))
    assert (await send(client, "¿Y a qué hora abren?"))["reply"] == "A las 9."


async def test_the_model_s_own_refused_calls_do_not_back_a_handoff(
    client: LocalCitas, llm: ModelScript
) -> None:
    # Seen with a 1.5B model: two bookings with invented data refused, then a handoff of a
    # customer who had only asked for 3pm; the conversation went silent.
    invented = {"date": "2026-12-01", "time": "15:00", "customer_name": "Nombre del cliente"}
    invented["customer_email"] = "email@example.com"
    llm.add(
        call("create_booking", invented),
        call("create_booking", {**invented, "notes": "Nada"}),
        call("request_human", {"reason": "no se reservó"}),
        reply("¿Me das tu nombre y correo?"),
    )
    body = await send(client, "Quiero sacar cita para mañana a las 3pm")
    assert body == {"reply": "¿Me das tu nombre y correo?", "url": None}
    assert tool_results(llm.requests[-1])[-1]["error"] == "handoff_not_requested"


@pytest.mark.parametrize(
    "message", ["Tengo un reclamo por mi última cita", "Es urgente, me duele mucho la muela"]
)
async def test_a_complaint_or_an_emergency_backs_a_handoff(
    client: LocalCitas, llm: ModelScript, message: str
) -> None:
    llm.add(call("request_human", {"reason": "reclamo"}))
    assert (await send(client, message))["handoff"] == {"reason": "reclamo"}


async def test_a_person_offered_last_turn_and_accepted_backs_a_handoff(
    client: LocalCitas, llm: ModelScript
) -> None:
    llm.add(reply("No tengo ese dato. ¿Quieres que te comunique con una persona del equipo?"))
    await send(client, "¿Atienden con seguro Pacífico?")
    llm.add(call("request_human", {"reason": "consulta de seguro"}))
    assert (await send(client, "Sí, por favor"))["handoff"] == {"reason": "consulta de seguro"}


async def test_a_tool_that_cannot_help_backs_a_handoff(
    client: LocalCitas, llm: ModelScript
) -> None:
    # No phone to look the customer's appointments up with: the result says to offer a person.
    llm.add(call("list_my_bookings", {}), call("request_human", {"reason": "sin teléfono"}))
    response = await client.post("/api/chat", json=chat_body("¿Qué citas tengo?", "web-abc"))
    body = await response.json()
    assert tool_results(llm.requests[-1])[-1]["error"] == "no_phone"
    assert body["handoff"] == {"reason": "sin teléfono"}
