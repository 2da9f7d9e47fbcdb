"""The reply as the customer's app shows it: models write Markdown, WhatsApp does not read it.

WhatsApp marks `*bold*`, `_italic_` and `~strike~`, and has no headings and no links with a
text; a message holds at most 4096 characters. `format_reply` converts what models write
(`**bold**`, `*italic*`, `~~strike~~`, `# headings`, `[text](url)`, `* item`) to the chosen
style (`CITAS_REPLY_FORMAT`) and bounds it, keeping every word:

- `whatsapp` (the default): WhatsApp's own marks; a heading becomes a bold line, a link
  `text (url)`, a `*`/`+` bullet `- `.
- `plain`: no marks at all (an SMS, a web widget that shows text as it is).
- `markdown`: the model's text unchanged, only bounded.

It runs after the reply guard and before the reply is saved and sent, so history holds what the
customer was sent.
"""

from __future__ import annotations

import re
from typing import Literal

ReplyFormat = Literal["whatsapp", "plain", "markdown"]
REPLY_FORMATS: tuple[ReplyFormat, ...] = ("whatsapp", "plain", "markdown")

MAX_CHARS = 4096
"""WhatsApp's limit on one text message, counted here in UTF-16 units as the app counts them
(an emoji outside the Basic Multilingual Plane is two)."""

ELLIPSIS = "…"

# One pass over the emphasis marks, longest first at each position, so `**a**` is bold and not
# two italics. No mark is inside a word (`2*3*4` stays; `a**b**c` would lose its words in plain
# text) and none touches a space inside.
_EMPHASIS = re.compile(
    r"(?<![\w*])\*\*(?=\S)(?P<b1>.+?)(?<=\S)\*\*(?![\w*])"
    r"|(?<![\w*])__(?=\S)(?P<b2>.+?)(?<=\S)__(?![\w_])"
    r"|(?<![\w~])~~(?=\S)(?P<s>.+?)(?<=\S)~~(?![\w~])"
    r"|(?<![\w*])\*(?=[^\s*])(?P<i1>[^*\n]*?)(?<=[^\s*])\*(?![\w*])"
    r"|(?<![\w_])_(?=[^\s_])(?P<i2>[^_\n]*?)(?<=[^\s_])_(?![\w_])"
    r"|(?<![\w~])~(?=[^\s~])(?P<s1>[^~\n]*?)(?<=[^\s~])~(?![\w~])"
)
_LINK = re.compile(r"!?\[([^\]]*)\]\(([^)]*)\)")
_HEADING = re.compile(r"^[ \t]*(?:#{1,6}(?:[ \t]+|$))+(?P<title>.*)$", re.MULTILINE)
_BULLET = re.compile(r"^(?P<indent>[ \t]*)[*+][ \t]+", re.MULTILINE)
_RULE = re.compile(r"^[ \t]*(?:[-*_][ \t]*){3,}$", re.MULTILINE)
_DOUBLED = re.compile(r"\*{2,}|_{2,}|~{2,}")
_BLANK_LINES = re.compile(r"\n{3,}")

# What no formatted reply holds (whatever the model wrote): the tests check these.
LEFTOVER_MARKDOWN = re.compile(
    r"\*\*|__|~~|\[[^\]]*\]\([^)]*\)|^[ \t]*#{1,6}(?:[ \t]|$)", re.MULTILINE
)


def format_reply(text: str, style: ReplyFormat = "whatsapp", limit: int = MAX_CHARS) -> str:
    """`text` (Markdown, as models write it) in `style`, at most `limit` UTF-16 units."""
    if style != "markdown":
        text = _convert(text, bold="*" if style == "whatsapp" else "")
    return bound(text, limit)


def _convert(text: str, *, bold: str) -> str:
    whatsapp = bool(bold)
    text = _RULE.sub("", text)
    text = _links(text)
    text = _BULLET.sub(lambda m: m.group("indent") + "- ", text)
    italic, strike = ("_", "~") if whatsapp else ("", "")

    def emphasis(match: re.Match[str]) -> str:
        groups = match.groupdict()
        for name, mark in (
            ("b1", bold),
            ("b2", bold),
            ("s", strike),
            ("i1", italic),
            ("i2", italic),
            ("s1", strike),
        ):
            inner = groups[name]
            if inner is not None:
                return f"{mark}{inner}{mark}"
        return match.group(0)  # pragma: no cover - one group always matches

    text = _EMPHASIS.sub(emphasis, text)
    text = _HEADING.sub(lambda m: _heading(m.group("title"), bold), text)
    text = _sanitize(text)
    return _BLANK_LINES.sub("\n\n", text).strip()


def _sanitize(text: str) -> str:
    """Undo whatever Markdown is left (an unclosed `**`, `***`, marks that made a new link or
    heading once others went): each step shortens the text, so this ends."""
    while LEFTOVER_MARKDOWN.search(text):
        # One mark is left, never none: `a__b` must not become the word `ab`.
        text = _DOUBLED.sub(lambda m: m.group(0)[0], text)
        text = _links(text)
        text = _HEADING.sub(lambda m: m.group("title"), text)
    return text


def _links(text: str) -> str:
    """`[text](url)` → `text (url)`; nested brackets are undone from the inside out."""
    while True:
        changed = _LINK.sub(_link, text)
        if changed == text:
            return changed
        text = changed


def _link(match: re.Match[str]) -> str:
    label, url = match.group(1).strip(), match.group(2).strip()
    if not url or url == label:
        return label or url
    return f"{label} ({url})" if label else url


def _heading(title: str, bold: str) -> str:
    title = title.strip().rstrip("#").strip()
    if not title or not bold:
        return title
    # Already bold (`# **Horario**`): one pair of marks is enough.
    inner = title.strip("*").strip()
    return f"{bold}{inner}{bold}" if inner else title


def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def bound(text: str, limit: int = MAX_CHARS) -> str:
    """`text` cut to `limit` UTF-16 units at a word's end, with `…` when cut."""
    if utf16_len(text) <= limit:
        return text
    room = limit - utf16_len(ELLIPSIS)
    cut = text.encode("utf-16-le")[: 2 * room]
    head = cut.decode("utf-16-le", errors="ignore")  # never half a surrogate pair
    space = head.rfind(" ")
    if space > len(head) // 2:
        head = head[:space]
    return head.rstrip() + ELLIPSIS
