"""The follow-through steps' judgements (`citas.agent.follow_through`): a bare yes, the data for the
wanted slot, a message naming a day or time."""

from __future__ import annotations

import json
from datetime import date, time

import pytest

from citas.agent.follow_through import (
    booking_call,
    day_moved_to,
    day_named_alone,
    denies,
    is_bare_yes,
    is_bare_yes_to,
    mentions_day_or_time,
    named_when,
    wanted_data,
)
from citas.customer_words import CustomerWords
from citas.messages import ToolCallRequest


@pytest.mark.parametrize(
    "said",
    [
        ["Sí"],
        ["Sí, confírmala por favor."],
        ["si"],
        ["Dale 👍"],
        ["OK, perfecto, gracias"],
        ["De acuerdo"],
        ["sí", "confirmo"],  # a burst of yeses
    ],
)
def test_a_bare_yes(said: list[str]) -> None:
    assert is_bare_yes(said)


@pytest.mark.parametrize(
    "said",
    [
        ["No"],
        ["Sí, pero a las 4"],
        ["Déjame pensarlo"],
        ["Gracias"],  # thanks, not a yes
        ["sí", "¿y cuánto cuesta?"],
        ["Sí, mi correo es ana@x.com"],
        [""],
        ["Sí, el 15"],
    ],
)
def test_not_a_bare_yes(said: list[str]) -> None:
    assert not is_bare_yes(said)


def test_the_call_confirms_with_what_was_proposed() -> None:
    awaiting = {"key": "k", "slot": "2026-12-01 15:00:00", "name": "Ana Pérez", "email": ""}
    call = booking_call({**awaiting, "service": None})
    assert call.name == "create_booking" and call.id.startswith("call_citas_")
    assert json.loads(call.arguments) == {
        "date": "2026-12-01",
        "time": "15:00",
        "customer_name": "Ana Pérez",
    }


def words(*messages: str) -> CustomerWords:
    customer = CustomerWords()
    for message in messages:
        customer.add(message)
    return customer


@pytest.mark.parametrize(
    ("earlier", "said", "email_required", "data"),
    [
        ([], "Soy Ana Pérez, ana@x.com", True, {"name": "Ana Pérez", "email": "ana@x.com"}),
        (["Me llamo Ana Pérez"], "ana@x.com", True, {"name": "Ana Pérez", "email": "ana@x.com"}),
        ([], "Me llamo Ana Pérez", False, {"name": "Ana Pérez"}),
        ([], "Me llamo Ana Pérez", True, None),  # the email is still missing
        (["Soy Ana Pérez, ana@x.com"], "Sí", True, None),  # nothing new this turn
        ([], "ana@x.com", True, None),  # no name anywhere
    ],
)
def test_the_data_the_wanted_slot_is_proposed_with(
    earlier: list[str], said: str, email_required: bool, data: dict[str, str] | None
) -> None:
    customer = words(*earlier, said)
    assert wanted_data([said], customer, email_required=email_required) == data


@pytest.mark.parametrize(
    ("said", "mentions"),
    [
        ("Soy Ana Pérez, ana.perez2@gmail.com", False),  # a digit inside the email is not a time
        ("Me llamo Ana Pérez", False),
        ("Soy Ana Pérez, mejor el viernes", True),
        ("Ana Pérez, a las 5", True),
        ("Ana Pérez, por la tarde", True),
        ("Ana Pérez, mañana", True),
    ],
)
def test_a_message_that_names_a_day_or_time(said: str, mentions: bool) -> None:
    assert mentions_day_or_time([said]) is mentions


@pytest.mark.parametrize(
    ("tool", "said", "yes"),
    [
        ("cancel_booking", "Sí, cancélala.", True),
        ("cancel_booking", "Sí, por favor", True),
        ("cancel_booking", "Sí, cámbiala", False),  # the other change
        ("reschedule_booking", "Sí, cámbiala por favor", True),
        ("reschedule_booking", "Sí, confirmo el cambio.", True),  # case 40's customer
        ("cancel_booking", "Sí, confirmo la cancelación", True),
        ("cancel_booking", "Sí, confirmo el cambio.", False),
        ("reschedule_booking", "el cambio", False),  # no yes in it
        ("reschedule_booking", "Sí, cancélala", False),
        ("cancel_booking", "Sí, pero el jueves", False),
    ],
)
def test_a_yes_to_a_change_may_name_that_change(tool: str, said: str, yes: bool) -> None:
    assert is_bare_yes_to(ToolCallRequest("c1", tool, "{}"), [said]) is yes


def test_to_a_booking_cancelala_is_not_a_yes() -> None:
    assert not is_bare_yes(["Sí, cancélala."])


MONDAY = date(2026, 11, 30)


@pytest.mark.parametrize(
    ("said", "day"),
    [
        ("¿Puedo pasar mi cita del miércoles al jueves a las 11 de la mañana?", date(2026, 12, 3)),
        ("Quiero cambiar mi cita del miércoles para el jueves a las 11.", date(2026, 12, 3)),
        ("Quiero mover la cita de mañana al 15 de diciembre", date(2026, 12, 15)),
        ("Cámbiala para el viernes", date(2026, 12, 4)),
        ("Mejor el jueves a las 5", date(2026, 12, 3)),
        ("Mi cita del martes, ¿la puedo mover?", None),  # where it is, not where it goes
        ("Sí, confirmo el cambio.", None),
    ],
)
def test_the_day_an_appointment_is_moved_to(said: str, day: date | None) -> None:
    assert day_moved_to([said], MONDAY) == day


@pytest.mark.parametrize(
    ("said", "named"),
    [
        (["Ya, entonces la de las 4 de la tarde."], (None, time(16, 0))),
        (["Mañana a las 10 y media"], (date(2026, 12, 1), time(10, 30))),
        (["Mejor el viernes"], (date(2026, 12, 4), None)),
        (["el viernes", "a las 5 de la tarde"], (date(2026, 12, 4), time(17, 0))),
        (["La de las 4"], (None, None)),  # morning or afternoon: unclear, so not named
        (["Soy Ana Pérez, ana99@example.com, 987654321"], (None, None)),
        (["Sí, confírmala"], (None, None)),
        (["Ah ya, entonces el sábado a la misma hora."], (date(2026, 12, 5), time(10, 0))),
        (["a la misma hora"], (None, time(10, 0))),
    ],
)
def test_the_day_and_time_a_message_names(
    said: list[str], named: tuple[date | None, time | None]
) -> None:
    earlier = ["Hola", "¿Puedo el domingo a las 10 de la mañana?", "¿Atienden los domingos?"]
    assert named_when(said, MONDAY, lambda: earlier) == named


@pytest.mark.parametrize(
    ("message", "day"),
    [
        ("para mañana", date(2026, 12, 1)),
        ("el viernes mejor", date(2026, 12, 4)),
        ("mañana a las 10", None),  # a time too: the message named a whole slot
        ("a las 10", None),
        ("hola", None),
        (None, None),
    ],
)
def test_the_day_a_message_names_alone(message: str | None, day: date | None) -> None:
    assert day_named_alone(message, MONDAY) == day


def test_the_same_hour_with_no_hour_named_before_names_no_time() -> None:
    assert named_when(["el sábado a la misma hora"], MONDAY) == (date(2026, 12, 5), None)


@pytest.mark.parametrize(
    ("said", "denied"),
    [
        (["El jueves a las 6 no puedo"], True),
        (["Mañana no, mejor el viernes"], True),
        (["Quiero uno el jueves a las 6 de la tarde"], False),
        (["Soy Noemí Nole"], False),  # «no» inside a name is no denial
        # Case 34 with a 1.5B model: the no is about something else, in another sentence.
        (["Ah, no sabía. Entonces el martes 8 de diciembre a la misma hora."], False),
        (["No sabía", "el martes a las 11 entonces"], False),
        (["Ya veo. El martes tampoco puedo, no."], True),
    ],
)
def test_a_message_that_says_no(said: list[str], denied: bool) -> None:
    assert denies(said) is denied
