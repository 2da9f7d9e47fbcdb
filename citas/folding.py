"""Text folded for comparison: lowercase, without accents, as every matcher of customer text
reads it (dates and times, customer data, the reply guard)."""

from __future__ import annotations

import re
import unicodedata

# The Combining Diacritical Marks blocks (with their Extended and Supplement) and those for
# symbols and half marks: what NFD splits off «é», «ñ», «ü».
_DIACRITICS = re.compile("[\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]")


def fold(text: str) -> str:
    """Lowercase without accents: `Pérez` and `perez` are the same word. The accents dropped are
    the combining diacritical marks of Latin (and Greek) text; other scripts keep their marks."""
    if text.isascii():  # most text: nothing to decompose
        return text.lower()
    return _DIACRITICS.sub("", unicodedata.normalize("NFD", text.casefold()))
