"""structlog set-up: JSON or console output, request-scoped context, personal data masked."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any, Literal

import structlog

_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
# Phone-like runs: 7+ digits, maybe a leading + and single spaces, dots or dashes inside; not
# part of a longer word or number, and not a date, which logs need in clear.
_PHONE = re.compile(r"(?<![\w.-])(?!\d{4}-\d{2}-\d{2})\+?\d(?:[\s.-]?\d){6,}(?![\w])")
_SECRET_KEYS = ("api_key", "apikey", "token", "authorization", "password", "secret")


def mask_text(text: str) -> str:
    """Hide emails and phone numbers, keeping a hint of their shape for debugging."""
    text = _EMAIL.sub(lambda m: _mask_email(m.group(0)), text)
    return _PHONE.sub(lambda m: "***" + m.group(0)[-2:], text)


def _mask_email(email: str) -> str:
    local, _, domain = email.partition("@")
    return f"{local[:1]}***@{domain}"


def _mask(value: Any) -> Any:
    if isinstance(value, str):
        return mask_text(value)
    if isinstance(value, Mapping):
        return {k: ("***" if _is_secret(k) else _mask(v)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_mask(v) for v in value]
    return value


def _is_secret(key: object) -> bool:
    return isinstance(key, str) and any(s in key.lower() for s in _SECRET_KEYS)


def mask_personal_data(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: every string value, however nested, is masked; secrets dropped."""
    return {k: ("***" if _is_secret(k) else _mask(v)) for k, v in event_dict.items()}


def configure_logging(fmt: Literal["json", "console"] = "json", level: int = logging.INFO) -> None:
    """Configure structlog once, at start-up."""
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            mask_personal_data,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=False,
    )
