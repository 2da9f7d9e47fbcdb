"""The recorded-conversation file (`citas-conversation/1`): its models, loading and writing.

One JSON file holds one conversation: the gateway's request context, the session id, a frozen
"now", the sandbox fixture, and the turns, each with the customer's message, the model's
recorded responses and what citas is expected to do. The README documents every field.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from citas.api.models import RequestContext
from citas.config import Settings
from citas.errors import CitasError, ConfigError
from citas.sandbox import SandboxSeed

FORMAT: Literal["citas-conversation/1"] = "citas-conversation/1"


class RecordingError(CitasError):
    """A recorded-conversation file cannot be read or is not valid; the message says where."""


class _Model(BaseModel):
    # A typo in a hand-edited file must fail loudly rather than silently mean "not expected".
    model_config = ConfigDict(extra="forbid")


def _is_none(value: object) -> bool:
    return value is None


def _is_empty(value: object) -> bool:
    return not value


def _gateway_context(value: dict[str, Any]) -> dict[str, Any]:
    RequestContext.model_validate(value)
    return value


def _known_settings(value: dict[str, Any]) -> dict[str, Any]:
    try:
        Settings.from_env({}, **value)
    except ConfigError as exc:
        raise ValueError(str(exc)) from None
    return value


GatewayContext = Annotated[dict[str, Any], AfterValidator(_gateway_context)]
"""A gateway request's `context`, kept as written and validated as the API validates it."""
SettingsByVariable = Annotated[dict[str, Any], AfterValidator(_known_settings)]
"""Settings by environment variable name, validated as `Settings` validates them."""


class RecordedCall(_Model):
    """One tool call as the model sent it; `arguments` is the raw string, malformed or not."""

    name: str = Field(min_length=1)
    arguments: str


class ModelResponse(_Model):
    """One answer of the model: text, tool calls, or both; `finish_reason` only when it was not
    the usual one (`length`: cut short), so a replay is cut short the same way."""

    text: str | None = Field(None, exclude_if=_is_none)
    tool_calls: list[RecordedCall] = Field(default_factory=list, exclude_if=_is_empty)
    finish_reason: str | None = Field(None, exclude_if=_is_none)

    @model_validator(mode="after")
    def _not_empty(self) -> ModelResponse:
        if self.text is None and not self.tool_calls:
            raise ValueError("a model response needs text or tool_calls")
        return self


class ExpectedCall(_Model):
    """A tool call the turn must make; `result` lists only the result fields to compare."""

    name: str
    arguments: Any = Field(description="decoded JSON arguments, or the raw string if not JSON")
    result: dict[str, Any] | None = Field(None, exclude_if=_is_none)


class ExpectedBooking(_Model):
    """A calendar event the turn must create; unset fields are not compared."""

    fecha_inicio: str
    fecha_fin: str | None = Field(None, exclude_if=_is_none)
    cliente_nombre: str | None = Field(None, exclude_if=_is_none)
    cliente_correo: str | None = Field(None, exclude_if=_is_none)
    cliente_telefono: str | None = Field(None, exclude_if=_is_none)


class Expectation(_Model):
    tool_calls: list[ExpectedCall] = Field(default_factory=list)
    bookings: list[ExpectedBooking] = Field(default_factory=list)
    reply: str
    url: str | None = None
    error: str | None = Field(None, exclude_if=_is_none)
    handoff: str | None = Field(None, exclude_if=_is_none)
    """request_human's reason, when the turn handed the conversation to a person."""
    paused: bool = Field(False, exclude_if=lambda value: value is False)
    """True when a person had the conversation: the message was stored, not answered."""


class Turn(_Model):
    message: str
    message_id: str | None = Field(None, exclude_if=_is_none)
    model_responses: list[ModelResponse] = Field(default_factory=list)
    expect: Expectation | None = Field(None, exclude_if=_is_none)


class Recording(_Model):
    format: Literal["citas-conversation/1"] = FORMAT
    title: str = ""
    notes: str = Field("", exclude_if=_is_empty)
    now: AwareDatetime
    session_id: str = Field(min_length=1, max_length=128)
    context: GatewayContext
    settings: SettingsByVariable = Field(default_factory=dict, exclude_if=_is_empty)
    fixture: SandboxSeed
    turns: list[Turn] = Field(min_length=1)

    def to_json(self) -> str:
        """The file's text: indented, small objects on one line, UTF-8 kept, final newline."""
        return _dumps(self.model_dump(mode="json"), "") + "\n"


ModelT = TypeVar("ModelT", bound=BaseModel)


def load_model_file(
    path: Path, model: type[ModelT], error: type[CitasError], what: str = ""
) -> ModelT:
    """Read and validate a JSON file as `model`; any problem is `error`, naming the file (and
    `what` the file should have been, when the reason alone would not say)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise error(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        return model.model_validate_json(text)
    except ValidationError as exc:
        raise error(f"{path}: {what}{describe_validation_error(exc)}") from None


def load_recording(path: Path) -> Recording:
    """Read and validate a recording; any problem is a `RecordingError` naming the file."""
    return load_model_file(path, Recording, RecordingError)


def save_recording(recording: Recording, path: Path) -> None:
    path.write_text(recording.to_json(), encoding="utf-8")


_WIDTH = 100


def _dumps(value: Any, indent: str) -> str:
    """JSON for people reviewing diffs: a value that fits in the line stays on one line."""
    flat = json.dumps(value, ensure_ascii=False)
    if len(indent) + len(flat) <= _WIDTH or not isinstance(value, dict | list) or not value:
        return flat
    inner = indent + "  "
    if isinstance(value, dict):
        items = [
            f"{json.dumps(k, ensure_ascii=False)}: {_dumps(v, inner)}" for k, v in value.items()
        ]
        return "{\n" + ",\n".join(inner + item for item in items) + "\n" + indent + "}"
    items = [_dumps(v, inner) for v in value]
    return "[\n" + ",\n".join(inner + item for item in items) + "\n" + indent + "]"


def describe_validation_error(exc: ValidationError) -> str:
    """The first few errors, each as `where: what`, on one line (for a message naming a file)."""
    parts = []
    for error in exc.errors(include_url=False)[:5]:
        where = ".".join(str(p) for p in error["loc"]) or "file"
        parts.append(f"{where}: {error['msg']}")
    more = exc.error_count() - len(parts)
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")
