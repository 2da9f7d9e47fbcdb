"""Prices in the business's currency, written the local way, in the prompt and in tool results."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from citas.config import Settings
from citas.errors import ConfigError
from citas.money import CURRENCIES, format_amount
from citas.testing import ModelScript, call, reply
from tests.conftest import ChatFn, tool_results


@pytest.mark.parametrize(
    ("amount", "code", "text"),
    [
        (80, "PEN", "S/ 80.00"),
        (1250.5, "PEN", "S/ 1,250.50"),
        (25000, "CLP", "$25.000"),
        (25000.6, "CLP", "$25.001"),  # no decimals where the currency has none
        (9.9, "USD", "US$ 9.90"),
        (1234567.891, "ARS", "$1.234.567,89"),
        (150000, "PYG", "₲ 150.000"),
        (80, "XAF", "XAF 80.00"),  # an unknown code: its name and two decimals
    ],
)
def test_amounts_are_written_the_local_way(amount: float, code: str, text: str) -> None:
    assert format_amount(amount, code) == text


@given(st.decimals(min_value=0, max_value=10**9, places=2), st.sampled_from(sorted(CURRENCIES)))
def test_every_amount_reads_back_as_its_rounded_value(amount: object, code: str) -> None:
    currency = CURRENCIES[code]
    text = format_amount(float(str(amount)), code)
    digits = text.removeprefix(currency.symbol).strip().replace(currency.thousands, "")
    value = float(digits.replace(currency.point, "."))
    assert abs(value - float(str(amount))) <= (0.5 if currency.decimals == 0 else 0.005) + 1e-9
    assert (currency.point in digits) == (currency.decimals > 0)


def test_the_default_currency_is_pen_and_codes_are_iso() -> None:
    assert Settings.from_env({}).currency == "PEN"
    assert Settings.from_env({"CITAS_CURRENCY": "CLP"}).currency == "CLP"
    with pytest.raises(ConfigError, match="CITAS_CURRENCY"):
        Settings.from_env({"CITAS_CURRENCY": "pesos"})


async def test_the_santiago_prompt_and_search_speak_pesos(chat: ChatFn, llm: ModelScript) -> None:
    llm.add(call("search_products", {"query": "evaluación"}), reply("Cuesta $25.000."))
    response = await chat("¿Cuánto cuesta la evaluación?", id_empresa=41, moneda="CLP")
    assert response.status == 200
    system = llm.requests[0]["messages"][0]["content"]
    assert "Evaluación kinesiológica: $25.000 —" in system
    assert "S/" not in system
    result = tool_results(llm.requests[-1])[-1]
    assert result["moneda"] == "CLP"
    assert result["resultados"][0]["precio_texto"] == "$25.000"
    assert "$25.000" in result["mensaje"] and "S/" not in result["mensaje"]


async def test_without_moneda_prices_are_soles(chat: ChatFn, llm: ModelScript) -> None:
    llm.add(reply("Cuesta S/ 80.00."))
    await chat("¿Precio de la limpieza?")
    assert "Limpieza dental: S/ 80.00 —" in llm.requests[0]["messages"][0]["content"]


async def test_a_moneda_that_is_no_iso_code_is_a_400(chat: ChatFn) -> None:
    response = await chat("Hola", moneda="soles")
    assert response.status == 400
    assert "moneda" in (await response.json())["error"]["message"]
