"""How the evaluation compares what people write: case, accents and spacing do not matter.

The evaluation has its own few lines for this on purpose: an instrument must not share code with
what it measures (the service's own text handling may be what a case catches out).
"""

from __future__ import annotations

import re
import unicodedata


def fold(text: str) -> str:
    """Lowercase, without accents, with runs of whitespace as one space: `  Pérez\\nRÍOS` and
    `perez rios` fold alike."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    plain = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return " ".join(plain.split())


def same_name(a: str, b: str) -> bool:
    return fold(a) == fold(b)


def same_email(a: str, b: str) -> bool:
    return a.strip().casefold() == b.strip().casefold()


def mentions(text: str, fact: str) -> bool:
    """Whether `text` says `fact` as a whole: `80` is in `S/ 80.00` and `80 soles`, not in `180`
    or `800`; `Larco 123` is in `av. larco 123,` whatever the case and accents."""
    wanted = fold(fact)
    if not wanted:
        return False
    # Letters and digits may not touch the fact on either side; punctuation and spaces may.
    pattern = r"(?<![0-9a-z])" + re.escape(wanted) + r"(?![0-9a-z])"
    return re.search(pattern, fold(text)) is not None
