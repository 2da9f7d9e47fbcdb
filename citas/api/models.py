"""The one set of API models: requests, answers and the error shape of the gateway API."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
)

from citas.agent.turn import TurnError, TurnResult
from citas.domain import ZONE_NAMES


class _Model(BaseModel):
    # The gateway may send fields citas does not use; they are ignored, never an error.
    model_config = ConfigDict(extra="ignore", frozen=True)


_ZONES = ZONE_NAMES


def _known_zone(value: str) -> str:
    # The same set the document lists, so what it calls valid is exactly what is accepted.
    if value not in _ZONES:
        raise ValueError(f"unknown IANA time zone {value!r}")
    return value


ZoneName = Annotated[
    str,
    AfterValidator(_known_zone),
    WithJsonSchema({"type": "string", "enum": sorted(_ZONES)}),
]


def _json_integer(value: object) -> object:
    # A JSON Schema integer: no booleans and no numeric strings (which lax pydantic would
    # coerce), but 12.0 is one.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("must be an integer")
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError("must be an integer")
        return int(value)
    return value


# Constraints before the validator: that order keeps them JSON Schema keywords in the document.
# At most a signed 64-bit integer: what a backend's database can hold (10**400 was accepted).
PositiveInt = Annotated[int, Field(gt=0, le=2**63 - 1), BeforeValidator(_json_integer)]
Minutes = Annotated[int, Field(ge=5, le=600), BeforeValidator(_json_integer)]


class BusinessConfig(_Model):
    id_empresa: Annotated[PositiveInt, Field(description="The business (tenant) id.")]
    personalidad: Annotated[str | None, Field(max_length=4000)] = None
    usuario_id: Annotated[PositiveInt | None, Field(description="Owner of the calendar.")] = None
    duracion_cita_minutos: Minutes | None = None
    zona_horaria: Annotated[ZoneName | None, Field(description="IANA zone, e.g. America/Lima.")] = (
        None
    )
    moneda: Annotated[
        str | None,
        Field(
            pattern=r"^[A-Z]{3}$",
            description="ISO 4217 code of the business's prices (PEN, CLP, USD...); "
            "default CITAS_CURRENCY.",
        ),
    ] = None
    correo_obligatorio: Annotated[
        StrictBool | None,
        Field(
            description="Whether a booking needs the customer's email (default true); false: "
            "the assistant books with the name alone and does not ask for it."
        ),
    ] = None


class RequestContext(_Model):
    config: BusinessConfig


class ChatRequest(_Model):
    """`message` is trimmed; its upper bound is `CITAS_MAX_MESSAGE_CHARS`, passed as the
    validation context `max_message_chars`."""

    message: Annotated[str, Field(min_length=1, json_schema_extra={"pattern": r"\S"})]
    session_id: Annotated[str, Field(min_length=1, max_length=128)]
    message_id: Annotated[str | None, Field(min_length=1, max_length=256)] = None
    context: RequestContext

    @field_validator("message")
    @classmethod
    def _trimmed_and_bounded(cls, value: str, info: ValidationInfo) -> str:
        # Bounded as sent (what the document's maxLength says), then trimmed.
        limit = (info.context or {}).get("max_message_chars")
        if limit is not None and len(value) > limit:
            raise ValueError(f"must be at most {limit} characters")
        value = value.strip()
        if not value:
            raise ValueError("must not be empty")
        return value


class ErrorDetail(_Model):
    code: Literal[
        "invalid_request",
        "unauthorized",
        "not_found",
        "method_not_allowed",
        "payload_too_large",
        "unsupported_media_type",
        "request_timeout",
        "unknown_business",
        "not_paused",
        "rate_limited",
        "unavailable",
        "internal",
        "llm_unavailable",
        "backend_unavailable",
    ]
    message: str


class ErrorResponse(_Model):
    error: ErrorDetail


_TURN_ERRORS: dict[TurnError, str] = {
    "llm_unavailable": "The language model did not answer; the reply is an apology.",
    "backend_unavailable": "The booking backend did not answer; the reply is an apology.",
}


class Handoff(_Model):
    reason: str = Field(description="Why the assistant handed the conversation to a person.")


class ChatResponse(_Model):
    reply: str | None = Field(
        description="Text for the customer; null for a message answered by a later one of its "
        "burst (`coalesced`), and while a person has the conversation (`paused`)."
    )
    url: str | None = Field(None, description="Meeting link of the booking made in this turn.")
    error: ErrorDetail | None = Field(
        None, description="Present when the LLM or the backend failed; `reply` then apologises."
    )
    coalesced: bool | None = Field(
        None,
        description="true when a later message of the same burst (`CITAS_COALESCE_MS`) is "
        "answered for this one too: send the customer nothing for this request.",
    )
    handoff: Handoff | None = Field(
        None,
        description="Present when this turn handed the conversation to a person: later "
        "messages are answered `paused` until it is resumed.",
    )
    paused: bool | None = Field(
        None,
        description="True (and `reply` null) when a person has the conversation: the message "
        "was stored, and the gateway sends nothing.",
    )

    @classmethod
    def body(cls, result: TurnResult) -> dict[str, Any]:
        """The JSON body of a turn's answer (`/api/chat`'s 200, the stream's `done`)."""
        if result.coalesced:
            return {"reply": None, "coalesced": True}
        if result.paused:
            return {"reply": None, "url": None, "paused": True}
        body: dict[str, Any] = {"reply": result.reply, "url": result.url}
        if result.error is not None:
            error = ErrorDetail(code=result.error, message=_TURN_ERRORS[result.error])
            body["error"] = error.model_dump()
        if result.handoff is not None:
            body["handoff"] = Handoff(reason=result.handoff).model_dump()
        return body


class ConversationMessage(_Model):
    """A message a person of the business sent the customer while the conversation is paused."""

    text: Annotated[str, Field(min_length=1, max_length=4096, json_schema_extra={"pattern": r"\S"})]
    author: Annotated[str, Field(min_length=1, max_length=80, json_schema_extra={"pattern": r"\S"})]

    @field_validator("text", "author")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        value = " ".join(value.split()) if "\n" not in value else value.strip()
        if not value:
            raise ValueError("must not be blank")
        return value


class ConversationState(_Model):
    id_empresa: int
    session_id: str
    paused: bool = Field(description="Whether a person has the conversation.")
    handoff: Handoff | None = Field(description="Why it was handed off, while paused.")


class StreamDelta(_Model):
    """Data of a stream's `delta` event; the deltas of a stream concatenate to `done`'s reply."""

    text: str = Field(description="The next piece of the reply.")


StreamStage = Literal["checking_availability", "booking", "searching", "working"]


class StreamStatus(_Model):
    """Data of a stream's `status` event: what the turn is doing while its tools run (a gateway
    shows "escribiendo…"); sent as each tool round starts, before any delta."""

    stage: StreamStage = Field(
        description="`checking_availability` (check_availability), `booking` (create_booking), "
        "`searching` (search_products), `working` (any other tool)."
    )


class StatusResponse(_Model):
    status: str
