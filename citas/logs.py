"""structlog set-up: JSON or console output, request-scoped context, personal data masked.

Every line, ours or a library's (stdlib `logging` is routed through the same processors), passes
the `Redactor`: emails and phone numbers are masked wherever they appear, values under
secret-looking keys are dropped, and configured secrets are scrubbed from any text.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import re
import secrets
import sys
from collections.abc import Iterable, Mapping, MutableMapping
from typing import Any, Literal, TextIO

import structlog

# Starts only where a run of address characters starts: linear time on long runs (a megabyte of
# "xxxx…" must not cost a quadratic scan).
# The at sign as written, or its full-width and small forms (a model or a keyboard may give
# them); a domain without a dot ("ana@localhost") is an address all the same.
_AT = "@\uff20\ufe6b"
_EMAIL = re.compile(rf"(?<![\w.%+-])[\w.%+-]+[{_AT}][\w-]+(?:\.[\w-]+)*")
# Phone-like runs: 7+ digits, maybe a leading +, with up to 3 separators (spaces, dots, dashes,
# slashes, parentheses) between digits, as people write them ("(01) 234-5678",
# "+51 987 654 321"); not glued to letters on either side, so ids like "a1234567b" stay readable,
# but a JSON escape before it ("\\n987654321" inside tool arguments) counts as a separator.
# Up to 5 separators between two digits ("987  -  654  -  321"), underscores among them
# ("987_654_321").
_PHONE = re.compile(r"(?:(?<!\w)|(?<=\\[nrtfb]))\+?\d(?:[\s().\-/_]{0,5}\d){6,}(?!\w)")
# Calendar dates and timestamps are kept in clear (logs need them); they are cut out before the
# phone pattern runs, so "2026-12-01 987654321" still masks the phone.
_DATE = re.compile(
    r"(?:19|20)\d{2}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01])"
    r"(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:Z|[+-]\d{2}:?\d{2})?)?"
)
_BEARER = re.compile(r"(?i)\b(bearer|basic)\s+[^\s\"',;]+")
_OPENAI_KEY = re.compile(r"\bsk-[A-Za-z0-9_\-]{8,}")
# Text with none of these cannot hold an email, phone, date, bearer credential or OpenAI key: the
# common case (event names, outcomes, operations) skips every pattern with one search.
_SUSPECT = re.compile(rf"[{_AT}\d]|bearer|basic|sk-|nombre|name", re.IGNORECASE)
# A customer's name as a JSON field (tool arguments, backend bodies): kept as initials only.
_NAME_KEYS = ("customer_name", "cliente_nombre", "nombre_cliente")
_NAME_FIELD = re.compile(
    r'(\\?"(?:' + "|".join(_NAME_KEYS) + r')\\?"\s*:\s*\\?")((?:[^"\\]|\\[^"])*)(\\?")'
)
_SECRET_WORDS = ("api_key", "apikey", "authorization", "password", "passwd", "secret", "cookie")
MASK = "***"
# ProcessorFormatter's own bookkeeping (the stdlib record), removed before rendering.
_META_KEYS = frozenset({"_record", "_from_structlog"})
_MIN_SECRET_CHARS = 6
_SHORT_TEXT_CHARS = 64
_SHORT_TEXTS_KEPT = 4096
_PLAIN_TYPES = frozenset({int, float, bool})


def initials(name: str) -> str:
    """ "Ana Pérez" → "A. P.": recognisable in a conversation's lines, not a name any more."""
    return " ".join(f"{word[0]}." for word in name.split() if word[:1].isalpha()) or MASK


def mask_text(text: str) -> str:
    """Hide emails and phone numbers, keeping a hint of their shape for debugging, and
    customers' names in JSON fields, keeping their initials."""
    if '"' in text:
        text = _NAME_FIELD.sub(lambda m: m.group(1) + initials(m.group(2)) + m.group(3), text)
    text = _EMAIL.sub(lambda m: _mask_email(m.group(0)), text)
    if not any(ch.isdigit() for ch in text):
        return text
    pieces = []
    start = 0
    for date in _DATE.finditer(text):
        pieces.append(_mask_phones(text[start : date.start()]))
        pieces.append(date.group(0))
        start = date.end()
    pieces.append(_mask_phones(text[start:]))
    return "".join(pieces)


def _mask_phones(text: str) -> str:
    return _PHONE.sub(lambda m: MASK + m.group(0)[-2:], text)


def _mask_email(email: str) -> str:
    at = next(i for i, ch in enumerate(email) if ch in _AT)
    return f"{email[:1]}{MASK}@{email[at + 1 :]}"


def is_secret_key(key: object) -> bool:
    """`api_key`, `Authorization`, `CITAS_API_TOKEN`…: but not `prompt_tokens`."""
    return isinstance(key, str) and _is_secret_name(key)


@functools.lru_cache(maxsize=1024)
def _is_secret_name(key: str) -> bool:
    # Cached: log keys are a small fixed vocabulary, asked on every line.
    name = key.lower().replace("-", "_")
    if any(word in name for word in _SECRET_WORDS):
        return True
    return any(part.endswith("token") for part in name.split("_"))


class Redactor:
    """structlog processor: every string, however nested, is masked; secrets are dropped."""

    def __init__(self, secret_values: Iterable[str | None] = ()) -> None:
        # Longest first, so a secret containing another is scrubbed whole.
        self._secrets = sorted(
            {s for s in secret_values if s and len(s) >= _MIN_SECRET_CHARS}, key=len, reverse=True
        )
        # Most strings of a line come back on every line of the request (request id, masked
        # conversation, its reference, the model, outcomes) and most hold a digit, so they
        # would go through every pattern each time: short ones are masked once and remembered.
        self._short_texts: dict[str, str] = {}

    def __call__(
        self, _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        return {k: (v if k in _META_KEYS else self._field(k, v)) for k, v in event_dict.items()}

    def _field(self, key: Any, value: Any) -> Any:
        # Numbers and None first: half of a line's fields, and nothing to mask in them.
        if value is None or type(value) in _PLAIN_TYPES:
            return MASK if is_secret_key(key) else value
        if is_secret_key(key):
            return MASK
        if key in _NAME_KEYS and isinstance(value, str):
            return initials(value)
        return self.redact(value)

    def redact(self, value: Any) -> Any:
        if isinstance(value, str):
            if len(value) > _SHORT_TEXT_CHARS:
                return self._text(value)
            masked = self._short_texts.get(value)
            if masked is None:
                masked = self._text(value)
                if len(self._short_texts) >= _SHORT_TEXTS_KEPT:
                    self._short_texts.clear()  # cheaper than an LRU, and rare: a cold restart
                self._short_texts[value] = masked
            return masked
        if value is None or isinstance(value, bool | int | float):
            return value
        if isinstance(value, Mapping):
            return {k: self._field(k, v) for k, v in value.items()}
        if isinstance(value, list | tuple | set | frozenset):
            return [self.redact(v) for v in value]
        if isinstance(value, bytes):
            return self._text(value.decode("utf-8", "replace"))
        # Exceptions, dates, models…: their text is what a renderer would print, so mask that.
        return self._text(str(value))

    def _text(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        if not _SUSPECT.search(text):
            return text
        text = _BEARER.sub(lambda m: f"{m.group(1)} {MASK}", text)
        text = _OPENAI_KEY.sub("sk-" + MASK, text)
        return mask_text(text)


mask_personal_data = Redactor()
"""The processor without configured secrets (the patterns and secret keys still apply)."""

_REF_KEY = secrets.token_bytes(16)


def conversation_fields(id_empresa: int, session_id: str) -> dict[str, Any]:
    """Log fields naming a conversation without exposing it: the session id masked (a phone
    number as one), plus a reference keyed per process that groups its lines."""
    digest = hashlib.blake2b(
        f"{id_empresa}:{session_id}".encode(), key=_REF_KEY, digest_size=5
    ).hexdigest()
    return {
        "id_empresa": id_empresa,
        "conversation": mask_text(session_id),
        "conv_ref": "c" + digest,
    }


def bind_turn(id_empresa: int, session_id: str) -> None:
    """Bind business and conversation to every later line of the current request."""
    structlog.contextvars.bind_contextvars(**conversation_fields(id_empresa, session_id))


_HANDLER_MARK = "_citas_handler"


class _FieldAdder:
    """A processor adding the same fields to every line (a line's own values win)."""

    def __init__(self, fields: Mapping[str, object]) -> None:
        self.fields = dict(fields)

    def __call__(
        self, logger: object, method: str, event: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        for key, value in self.fields.items():
            event.setdefault(key, value)
        return event


def configure_logging(
    fmt: Literal["json", "console"] = "json",
    level: int = logging.INFO,
    *,
    stream: TextIO | None = None,
    secret_values: Iterable[str | None] = (),
    fields: Mapping[str, object] | None = None,
) -> None:
    """Configure structlog and stdlib logging once, at start-up; both write to `stream`.

    `fields` are added to every line (`citas serve --workers N`: which worker wrote it)."""
    out = stream if stream is not None else sys.stderr
    renderer: Any = (
        structlog.processors.JSONRenderer(ensure_ascii=False)
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=out.isatty())
    )
    redactor = Redactor(secret_values)
    timestamper = structlog.processors.TimeStamper(fmt="iso", utc=True)
    add_fields = _FieldAdder(fields or {})
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            add_fields,
            structlog.processors.add_log_level,
            structlog.processors.format_exc_info,
            redactor,
            timestamper,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        # One write per line (print() writes the newline apart): the workers of
        # `citas serve --workers N` share the stream, and two writes would interleave.
        logger_factory=structlog.WriteLoggerFactory(out),
        cache_logger_on_first_use=False,
    )
    # Libraries log through stdlib `logging`: route their lines through the same redaction.
    handler = logging.StreamHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[
                structlog.contextvars.merge_contextvars,
                add_fields,
                structlog.processors.add_log_level,
                structlog.stdlib.add_logger_name,
                structlog.processors.format_exc_info,
                redactor,
                timestamper,
            ],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    setattr(handler, _HANDLER_MARK, True)
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _HANDLER_MARK, False)]:
        root.removeHandler(old)
    root.addHandler(handler)
    # Libraries' INFO lines (one per HTTP request of the SDK) repeat our own llm_call lines.
    root.setLevel(max(level, logging.WARNING))
