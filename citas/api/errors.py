"""The one JSON error shape outside: `{"error": {"code", "message"}}` with its HTTP status."""

from __future__ import annotations

from aiohttp import web

from citas.api.models import ErrorDetail, ErrorResponse


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    body = ErrorResponse(error=ErrorDetail(code=code, message=message))
    return web.json_response(body.model_dump(), status=status, headers=headers)
