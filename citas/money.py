"""Amounts written the way the business's customers read them: S/ 80.00 in Lima, $25.000 in
Santiago.

The currency is an ISO 4217 code: the request's `context.config.moneda`, else `CITAS_CURRENCY`
(PEN). Each known code has its symbol, its decimals (ISO 4217's minor units: none for CLP, PYG,
JPY) and its country's separators; an unknown code is written `XYZ 1,234.56`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

CURRENCY_CODE = re.compile(r"^[A-Z]{3}$")


@dataclass(frozen=True, slots=True)
class Currency:
    symbol: str
    decimals: int = 2
    thousands: str = ","
    point: str = "."
    space: bool = True  # "S/ 80.00", but "$25.000"


CURRENCIES: dict[str, Currency] = {
    "PEN": Currency("S/"),
    "USD": Currency("US$"),
    "CLP": Currency("$", 0, ".", ",", space=False),
    "ARS": Currency("$", 2, ".", ",", space=False),
    "COP": Currency("$", 2, ".", ",", space=False),
    "MXN": Currency("$", 2, ",", ".", space=False),
    "UYU": Currency("$", 2, ".", ",", space=False),
    "BOB": Currency("Bs", 2, ".", ","),
    "BRL": Currency("R$", 2, ".", ","),
    "PYG": Currency("₲", 0, ".", ","),
    "EUR": Currency("€", 2, ".", ","),
    "JPY": Currency("¥", 0, ",", ".", space=False),
}
DEFAULT_CURRENCY = "PEN"


def format_amount(amount: float, code: str = DEFAULT_CURRENCY) -> str:
    """`amount` in `code`'s local way: `S/ 1,250.00`, `$25.000` (CLP), `US$ 9.90`."""
    currency = CURRENCIES.get(code) or Currency(code)
    quantum = Decimal(1).scaleb(-currency.decimals)
    value = Decimal(str(amount)).quantize(quantum, rounding=ROUND_HALF_UP)
    sign = "-" if value < 0 else ""
    whole, _, fraction = f"{abs(value):f}".partition(".")
    groups = f"{int(whole):,}".replace(",", currency.thousands)
    number = groups + (currency.point + fraction if currency.decimals else "")
    return f"{sign}{currency.symbol}{' ' if currency.space else ''}{number}"
