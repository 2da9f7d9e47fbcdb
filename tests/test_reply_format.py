"""Replies converted from the Markdown models write to WhatsApp's marks (or plain text) and
bounded to one WhatsApp message, whatever the model wrote."""

from __future__ import annotations

import re

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from citas.agent.reply_format import (
    ELLIPSIS,
    LEFTOVER_MARKDOWN,
    MAX_CHARS,
    REPLY_FORMATS,
    format_reply,
    utf16_len,
)
from citas.config import Settings
from citas.testing import ModelScript, reply
from tests.conftest import ChatFn, MakeClient, chat_body

WORD = re.compile(r"[^\W_]+")

# Text shaped like a model's Markdown: words, marks, brackets, newlines, emoji, anything.
_PIECES = st.sampled_from(
    [
        "**", "*", "__", "_", "~~", "~", "#", "## ", "# ", "[", "]", "(", ")", "](", "\n",
        "\n\n", " ", "- ", "* ", "---", "`", "!", "https://x.pe/r/1", "S/ 80.00", "😀", "ñ",
    ]
)  # fmt: skip
_WORDS = st.from_regex(r"[A-Za-zÁÉÍÓÚáéíóúñ0-9]{1,12}", fullmatch=True)
MODEL_TEXT = st.lists(st.one_of(_PIECES, _WORDS, st.text(max_size=5)), max_size=60).map("".join)


@pytest.mark.parametrize(
    ("text", "whatsapp", "plain"),
    [
        ("**Lunes**: 9:00", "*Lunes*: 9:00", "Lunes: 9:00"),
        ("Es *muy* fácil", "Es _muy_ fácil", "Es muy fácil"),
        ("~~100~~ 80", "~100~ 80", "100 80"),
        ("## Horario\nLunes", "*Horario*\nLunes", "Horario\nLunes"),
        ("# **Horario**", "*Horario*", "Horario"),
        (
            "Reserva [aquí](https://x.pe/r/1).",
            "Reserva aquí (https://x.pe/r/1).",
            "Reserva aquí (https://x.pe/r/1).",
        ),
        ("[https://x.pe](https://x.pe)", "https://x.pe", "https://x.pe"),
        ("* corte\n* tinte", "- corte\n- tinte", "- corte\n- tinte"),
        ("Hola\n\n---\n\nAdiós", "Hola\n\nAdiós", "Hola\n\nAdiós"),
        ("2*3*4 y snake_case_name", "2*3*4 y snake_case_name", "2*3*4 y snake_case_name"),
        ("Tu cita: S/ 80.00 😀", "Tu cita: S/ 80.00 😀", "Tu cita: S/ 80.00 😀"),
    ],
)
def test_markdown_becomes_whatsapp_or_plain(text: str, whatsapp: str, plain: str) -> None:
    assert format_reply(text, "whatsapp") == whatsapp
    assert format_reply(text, "plain") == plain
    assert format_reply(text, "markdown") == text


def test_a_long_reply_is_cut_at_a_word_within_one_whatsapp_message() -> None:
    text = "palabra " * 1000
    out = format_reply(text)
    assert utf16_len(out) <= MAX_CHARS
    assert out.endswith("palabra" + ELLIPSIS)


def test_the_bound_counts_emoji_as_whatsapp_does() -> None:
    out = format_reply("😀" * 3000)  # 6000 UTF-16 units
    assert utf16_len(out) <= MAX_CHARS
    assert out.endswith(ELLIPSIS)
    assert "\ud83d" not in out  # never half an emoji


@given(MODEL_TEXT, st.sampled_from(REPLY_FORMATS))
@example("[a]**(b)", "plain")
@example("[# ](x)", "whatsapp")
@example("***a***", "whatsapp")
def test_any_model_text_is_valid_bounded_and_keeps_its_words(text: str, style: str) -> None:
    out = format_reply(text, style)  # type: ignore[arg-type]
    assert utf16_len(out) <= MAX_CHARS
    if style != "markdown":
        assert LEFTOVER_MARKDOWN.search(out) is None, out
    assert set(WORD.findall(text)) <= set(WORD.findall(out))


@given(st.text(min_size=1, max_size=600), st.sampled_from(REPLY_FORMATS))
def test_any_text_at_all_is_bounded_and_keeps_its_words(text: str, style: str) -> None:
    out = format_reply(text, style, limit=300)  # type: ignore[arg-type]
    assert utf16_len(out) <= 300
    if style != "markdown":
        assert LEFTOVER_MARKDOWN.search(out) is None
    if utf16_len(text) <= 200:
        assert set(WORD.findall(text)) <= set(WORD.findall(out))


def test_the_setting_defaults_to_whatsapp() -> None:
    assert Settings.from_env({}).reply_format == "whatsapp"
    assert Settings.from_env({"CITAS_REPLY_FORMAT": "plain"}).reply_format == "plain"


async def test_the_customer_gets_and_history_keeps_the_whatsapp_reply(
    chat: ChatFn, llm: ModelScript
) -> None:
    llm.add(reply("## Horario\n**Lunes** a *viernes*, [ver mapa](https://x.pe/m)"), reply("ok"))
    first = await (await chat("Hola")).json()
    assert first["reply"] == "*Horario*\n*Lunes* a _viernes_, ver mapa (https://x.pe/m)"
    await chat("Gracias")
    kept = [m["content"] for m in llm.requests[-1]["messages"] if m["role"] == "assistant"]
    assert kept == [first["reply"]]


async def test_plain_replies_have_no_marks(
    make_client: MakeClient, settings: Settings, llm: ModelScript
) -> None:
    client = await make_client(settings.with_updates(reply_format="plain"))
    llm.add(reply("**Lunes** a *viernes*"))
    response = await client.post("/api/chat", json=chat_body("Hola"))
    assert (await response.json())["reply"] == "Lunes a viernes"
