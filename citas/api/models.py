"""The one set of API models: requests, answers and the error shape of the gateway API."""

from __future__ import annotations

import zoneinfo
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator


class _Model(BaseModel):
    # The gateway may send fields citas does not use; they are ignored, never an error.
    model_config = ConfigDict(extra="ignore", frozen=True)


class BusinessConfig(_Model):
    id_empresa: Annotated[int, Field(gt=0, description="The business (tenant) id.")]
    personalidad: Annotated[str | None, Field(max_length=4000)] = None
    usuario_id: Annotated[int | None, Field(gt=0, description="Owner of the calendar.")] = None
    duracion_cita_minutos: Annotated[int | None, Field(ge=5, le=600)] = None
    zona_horaria: Annotated[str | None, Field(description="IANA zone, e.g. America/Lima.")] = None

    @field_validator("zona_horaria")
    @classmethod
    def _known_zone(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown IANA time zone {value!r}") from None
        return value


class RequestContext(_Model):
    config: BusinessConfig


class ChatRequest(_Model):
    """`message` is trimmed; its upper bound is `CITAS_MAX_MESSAGE_CHARS`, passed as the
    validation context `max_message_chars`."""

    message: Annotated[str, Field(min_length=1)]
    session_id: Annotated[str, Field(min_length=1, max_length=128)]
    message_id: Annotated[str | None, Field(min_length=1, max_length=256)] = None
    context: RequestContext

    @field_validator("message")
    @classmethod
    def _trimmed_and_bounded(cls, value: str, info: ValidationInfo) -> str:
        value = value.strip()
        if not value:
            raise ValueError("must not be empty")
        limit = (info.context or {}).get("max_message_chars")
        if limit is not None and len(value) > limit:
            raise ValueError(f"must be at most {limit} characters")
        return value


class ErrorDetail(_Model):
    code: Literal[
        "invalid_request",
        "unauthorized",
        "not_found",
        "method_not_allowed",
        "payload_too_large",
        "rate_limited",
        "unavailable",
        "internal",
        "llm_unavailable",
        "backend_unavailable",
    ]
    message: str


class ErrorResponse(_Model):
    error: ErrorDetail


class ChatResponse(_Model):
    reply: str = Field(description="Text for the customer.")
    url: str | None = Field(description="Meeting link of the booking made in this turn.")
    error: ErrorDetail | None = Field(
        None, description="Present when the LLM or the backend failed; `reply` then apologises."
    )


class StreamDelta(_Model):
    """Data of a stream's `delta` event; the deltas of a stream concatenate to `done`'s reply."""

    text: str = Field(description="The next piece of the reply.")


class StatusResponse(_Model):
    status: str
