"""What the customer has written in a conversation, kept to check where booking data came from.

A model may invent a customer ("Cliente", "cliente@example.com") or copy a placeholder; a booking
must carry only a name and an email the customer wrote. Words are kept folded (lowercase, no
accents) and emails lowercased, bounded, and outlive the trimming of old turns.
"""

from __future__ import annotations

import re
from typing import Any

from citas.folding import fold

_MAX_WORDS = 2000
_MAX_EMAILS = 20
_MAX_NAMES = 5
_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
_WORD = re.compile(r"[^\W\d_]+(?:['’-][^\W\d_]+)*")
# "me llamo Ana Pérez", "mi nombre es ana perez", "Soy Ana Pérez": up to four words, ending at
# punctuation or at the words that usually follow ("y mi correo…"). After «soy» only capitalised
# words count, so "soy nueva" is not a name.
_NAME_WORD = r"[^\W\d_]+(?:['’-][^\W\d_]+)*"
_CAPITALISED = r"[^\W\d_a-zß-ÿ][^\W\d_]*(?:['’-][^\W\d_]+)*"
_STOP = (
    r"(?:y|e|mi|con|correo|email|e-mail|para|por|porque|pero|quiero|quisiera|necesito|gracias"
    r"|de\s+(?:nuevo|la\s+tarde|la\s+mañana))\b"
)
_NAME = re.compile(
    rf"\b(?:[Mm]e\s+llamo|[Mm]i\s+nombre\s+es|[Aa]\s+nombre\s+de)\s+"
    rf"((?:(?!{_STOP}){_NAME_WORD}\s*){{1,5}})"
    rf"|\b[Ss]oy\s+((?:{_CAPITALISED}\s*){{1,4}})",
)
_TRAILING_PARTICLES = re.compile(r"(?:\s+(?:de|del|la|las|los))+$", re.IGNORECASE)


def name_words(text: str) -> list[str]:
    return _WORD.findall(fold(text))


class CustomerWords:
    def __init__(
        self,
        words: list[str] | None = None,
        emails: list[str] | None = None,
        contact: dict[str, str] | None = None,
        names: list[str] | None = None,
    ) -> None:
        # dicts as ordered sets: the oldest entries go first when over the bound.
        self._words = dict.fromkeys(words or ())
        self._emails = dict.fromkeys(emails or ())
        self._names = dict.fromkeys(names or ())
        """Names the customer introduced themselves with, as written ("me llamo Ana Pérez")."""
        self.contact: dict[str, str] | None = contact
        """The name and email of this conversation's last booking (made or proposed): offered
        back to a returning customer instead of asked again."""

    def remember_contact(self, name: str, email: str) -> None:
        self.contact = {"nombre": name, "correo": email} if email else {"nombre": name}

    def add(self, text: str) -> None:
        for email in _EMAIL.findall(text):
            _push(self._emails, email.lower(), _MAX_EMAILS)
        without_emails = _EMAIL.sub(" ", text)
        for word in name_words(without_emails):
            _push(self._words, word, _MAX_WORDS)
        for match in _NAME.finditer(without_emails):
            name = _TRAILING_PARTICLES.sub("", " ".join((match.group(1) or match.group(2)).split()))
            _push(self._names, name, _MAX_NAMES)

    def latest_name(self) -> str | None:
        """The name the customer last introduced themselves with, as they wrote it."""
        return next(reversed(self._names), None)

    def latest_email(self) -> str | None:
        return next(reversed(self._emails), None)

    def wrote_name(self, name: str) -> bool:
        """Every word of `name` was written by the customer."""
        words = name_words(name)
        return bool(words) and all(word in self._words for word in words)

    def wrote_word_starting(self, starts: tuple[str, ...]) -> bool:
        """Some word the customer wrote starts with one of `starts` (folded)."""
        return any(word.startswith(starts) for word in self._words)

    def wrote_email(self, email: str) -> bool:
        return email.strip().lower() in self._emails

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CustomerWords) and self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]  # mutable

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"words": list(self._words), "emails": list(self._emails)}
        if self._names:
            data["names"] = list(self._names)
        if self.contact:
            data["contact"] = dict(self.contact)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> CustomerWords:
        data = data or {}
        contact = data.get("contact")
        return cls(
            list(data.get("words", [])),
            list(data.get("emails", [])),
            dict(contact) if isinstance(contact, dict) else None,
            list(data.get("names", [])),
        )

    def copy(self) -> CustomerWords:
        contact = dict(self.contact) if self.contact else None
        return CustomerWords(list(self._words), list(self._emails), contact, list(self._names))


def _push(items: dict[str, None], item: str, bound: int) -> None:
    items.pop(item, None)
    items[item] = None
    while len(items) > bound:
        del items[next(iter(items))]
