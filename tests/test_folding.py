"""`fold`: the one way customer text is compared (dates, customer data, the reply guard)."""

from __future__ import annotations

import unicodedata

import pytest

from citas.folding import fold


def _by_combining_class(text: str) -> str:
    """The textbook definition: drop every code point with a combining class after NFD."""
    decomposed = unicodedata.normalize("NFD", text.casefold())
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


@pytest.mark.parametrize(
    ("text", "folded"),
    [
        ("Pérez", "perez"),
        ("ÁNGELA Muñoz", "angela munoz"),
        ("¿Mañana a las 3 p. m.?", "¿manana a las 3 p. m.?"),
        ("pingüino", "pinguino"),
        ("Straße", "strasse"),
        ("plain ASCII, 10:30", "plain ascii, 10:30"),
    ],
)
def test_folds_case_and_accents(text: str, folded: str) -> None:
    assert fold(text) == folded


def test_every_latin_letter_folds_as_by_combining_class() -> None:
    # Latin-1 Supplement, Latin Extended-A/B, IPA, Latin Extended Additional, and Greek.
    ranges = [(0x00A0, 0x02AF), (0x0370, 0x03FF), (0x1E00, 0x1EFF)]
    letters = "".join(chr(c) for low, high in ranges for c in range(low, high + 1))
    differing = [ch for ch in letters if fold(ch) != _by_combining_class(ch)]
    assert differing == []
    assert fold(letters) == _by_combining_class(letters)
