"""The one JSON error shape outside: `{"error": {"code", "message"}}` with its HTTP status."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from citas.api.models import ErrorDetail, ErrorResponse


def error_body(code: str, message: str) -> dict[str, Any]:
    """The error shape as JSON data (a stream sends it in an `error` event)."""
    return ErrorResponse(error=ErrorDetail(code=code, message=message)).model_dump()


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    return web.json_response(error_body(code, message), status=status, headers=headers)
