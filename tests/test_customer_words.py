"""What the customer wrote: the words and emails a booking's data must come from, and the name
the customer introduced themselves with, as written."""

from __future__ import annotations

import pytest

from citas.customer_words import CustomerWords


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("Me llamo Ana Pérez, mi correo es ana.perez@gmail.com", "Ana Pérez"),
        ("me llamo ana perez y mi correo es ana@x.com", "ana perez"),
        ("Mi nombre es Rosa Quispe y mi correo rosa.quispe@yahoo.com", "Rosa Quispe"),
        ("Perfecto. Soy Jorge Ramírez, jorge.ramirez@outlook.com", "Jorge Ramírez"),
        (
            "Hola, soy Carlos Mendoza (carlos.mendoza@hotmail.com). Quiero una limpieza",
            "Carlos Mendoza",
        ),
        ("A nombre de Lucía Fernández por favor", "Lucía Fernández"),
        ("me llamo Rosa Quispe de la Cruz", "Rosa Quispe de la Cruz"),
        ("Mi nombre es Jhon Quispe mi correo jhon@x.com", "Jhon Quispe"),
    ],
)
def test_the_name_a_customer_introduces_themselves_with_is_kept_as_written(
    text: str, name: str
) -> None:
    words = CustomerWords()
    words.add(text)
    assert words.latest_name() == name
    assert words.wrote_name(name)


@pytest.mark.parametrize(
    "text", ["soy nueva aquí", "Soy de Lima", "Quiero una cita mañana a las 3pm", "Hola"]
)
def test_words_that_are_not_an_introduction_give_no_name(text: str) -> None:
    words = CustomerWords()
    words.add(text)
    assert words.latest_name() is None


def test_the_latest_name_and_email_win_and_survive_the_store() -> None:
    words = CustomerWords()
    words.add("Soy Ana Pérez, ana@x.com")
    words.add("Perdón, me llamo Ana María Pérez y mi correo es ana.maria@x.com")
    assert (words.latest_name(), words.latest_email()) == ("Ana María Pérez", "ana.maria@x.com")
    again = CustomerWords.from_dict(words.to_dict())
    assert again == words and again.latest_name() == "Ana María Pérez"
    assert CustomerWords.from_dict({"words": [], "emails": []}).latest_name() is None
