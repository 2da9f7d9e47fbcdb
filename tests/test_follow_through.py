"""What counts as a bare yes to a proposed booking (`citas.agent.follow_through`)."""

from __future__ import annotations

import json

import pytest

from citas.agent.follow_through import booking_call, is_bare_yes


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
    assert call.name == "create_booking" and call.id.startswith("call_yes_")
    assert json.loads(call.arguments) == {
        "date": "2026-12-01",
        "time": "15:00",
        "customer_name": "Ana Pérez",
    }
