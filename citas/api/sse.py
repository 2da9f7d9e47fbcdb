"""The Server-Sent Events wire: one `text/event-stream` answer, written event by event."""

from __future__ import annotations

import json
from typing import Any

import structlog
from aiohttp import web

from citas.api.middlewares import REQUEST_ID

log = structlog.get_logger("citas.sse")


class EventStream:
    """Writes `event: NAME` / `data: JSON` events. A client that has gone away makes writes no-ops
    (`gone` turns true) instead of errors: what runs behind the stream must not depend on it."""

    def __init__(self, request: web.Request) -> None:
        self.request = request
        self.response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream; charset=utf-8",
                "Cache-Control": "no-cache",
                # Proxies (nginx) would otherwise buffer the events into one late answer.
                "X-Accel-Buffering": "no",
                "X-Request-ID": request.get(REQUEST_ID, ""),
            }
        )
        self.gone = False

    async def open(self) -> None:
        """Send the 200 and the headers: from here on, failures are events, not HTTP errors."""
        try:
            await self.response.prepare(self.request)
        except ConnectionError as exc:
            self._went_away(exc)

    async def send(self, event: str, data: dict[str, Any]) -> None:
        # json.dumps escapes newlines, so one `data:` line always holds the whole payload.
        payload = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
        await self._write(f"event: {event}\ndata: {payload}\n\n".encode())

    async def comment(self, text: str) -> None:
        """A comment line (`: text`): every SSE client ignores it; it keeps proxies from closing
        a stream that is quiet while tools run."""
        await self._write(f": {text}\n\n".encode())

    async def close(self) -> None:
        if self.gone:
            return
        try:
            await self.response.write_eof()
        except ConnectionError as exc:
            self._went_away(exc)

    async def _write(self, data: bytes) -> None:
        if self.gone:
            return
        try:
            await self.response.write(data)
        except ConnectionError as exc:
            self._went_away(exc)

    def _went_away(self, exc: Exception) -> None:
        self.gone = True
        log.info("stream_client_gone", error=repr(exc))
