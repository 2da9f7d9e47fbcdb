"""The one configuration object, read from the environment and validated at start-up."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from citas.domain import is_zone_name
from citas.errors import ConfigError

# Inside the package, so an installed wheel finds its templates wherever it is run from.
DEFAULT_PROMPTS_DIR = Path(__file__).resolve().parent / "prompts"

LogLevel = Literal["debug", "info", "warning", "error"]


class Settings(BaseModel):
    """Every setting of citas. Field aliases are the environment variable names."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    # LLM (the SDK's own variable names, so any OpenAI-compatible endpoint works unchanged).
    openai_api_key: str | None = Field(None, alias="OPENAI_API_KEY", repr=False)
    openai_base_url: str | None = Field(None, alias="OPENAI_BASE_URL")
    model: str = Field("gpt-4o-mini", alias="CITAS_MODEL", min_length=1)
    llm_timeout_seconds: float = Field(30.0, alias="CITAS_LLM_TIMEOUT_SECONDS", gt=0)
    # The longest silence of the endpoint (before the first byte, between chunks); unset, the
    # whole call's limit above, so a model slow to read a long prompt is not cut short.
    llm_read_timeout_seconds: float | None = Field(
        None, alias="CITAS_LLM_READ_TIMEOUT_SECONDS", gt=0
    )
    llm_max_retries: int = Field(2, alias="CITAS_LLM_MAX_RETRIES", ge=0, le=10)
    # Sent only when set: unset, each endpoint keeps its own default (a local server's may be
    # tuned for its model).
    llm_max_tokens: int | None = Field(None, alias="CITAS_LLM_MAX_TOKENS", ge=1)
    llm_temperature: float | None = Field(None, alias="CITAS_LLM_TEMPERATURE", ge=0, le=2)
    turn_deadline_seconds: float = Field(90.0, alias="CITAS_TURN_DEADLINE_SECONDS", gt=0)
    max_tool_rounds: int = Field(6, alias="CITAS_MAX_TOOL_ROUNDS", ge=1, le=50)
    # Where the clock note goes: some local chat templates refuse a second `system` message.
    clock_role: Literal["system", "user"] = Field("system", alias="CITAS_CLOCK_ROLE")
    max_reply_chars: int = Field(1500, alias="CITAS_MAX_REPLY_CHARS", ge=200, le=4096)
    # A burst of messages of one conversation within this many milliseconds (or while its
    # previous turn runs) is answered as one turn; 0: every message is its own turn.
    coalesce_ms: int = Field(0, alias="CITAS_COALESCE_MS", ge=0, le=10000)
    # How replies are written for the customer's app (citas/agent/reply_format.py).
    reply_format: Literal["whatsapp", "plain", "markdown"] = Field(
        "whatsapp", alias="CITAS_REPLY_FORMAT"
    )

    # Server.
    host: str = Field("127.0.0.1", alias="CITAS_HOST")
    port: int = Field(8080, alias="CITAS_PORT", ge=0, le=65535)
    api_token: str | None = Field(None, alias="CITAS_API_TOKEN", repr=False)
    metrics_require_token: bool = Field(False, alias="CITAS_METRICS_REQUIRE_TOKEN")
    max_message_chars: int = Field(4096, alias="CITAS_MAX_MESSAGE_CHARS", ge=1, le=60000)
    max_concurrent_turns: int = Field(200, alias="CITAS_MAX_CONCURRENT_TURNS", ge=1)
    # Slow or idle clients (citas/api/connections.py): a connection that has not sent a whole
    # request head within this is closed; a body must arrive within its own bound.
    http_idle_timeout_seconds: float = Field(15.0, alias="CITAS_HTTP_IDLE_TIMEOUT_SECONDS", gt=0)
    http_body_timeout_seconds: float = Field(15.0, alias="CITAS_HTTP_BODY_TIMEOUT_SECONDS", gt=0)
    max_connections: int = Field(4096, alias="CITAS_MAX_CONNECTIONS", ge=16)
    log_format: Literal["json", "console"] = Field("json", alias="CITAS_LOG_FORMAT")
    log_level: LogLevel = Field("info", alias="CITAS_LOG_LEVEL")
    shutdown_drain_seconds: float = Field(25.0, alias="CITAS_SHUTDOWN_DRAIN_SECONDS", gt=0)
    prompts_dir: Path = Field(DEFAULT_PROMPTS_DIR, alias="CITAS_PROMPTS_DIR")

    # Backend.
    calendar_api_url: str | None = Field(None, alias="CITAS_CALENDAR_API_URL")
    info_api_url: str | None = Field(None, alias="CITAS_INFO_API_URL")
    backend_connect_timeout_seconds: float = Field(3.0, alias="CITAS_BACKEND_CONNECT_TIMEOUT", gt=0)
    backend_read_timeout_seconds: float = Field(10.0, alias="CITAS_BACKEND_READ_TIMEOUT", gt=0)
    backend_total_timeout_seconds: float = Field(15.0, alias="CITAS_BACKEND_TOTAL_TIMEOUT", gt=0)
    backend_max_tries: int = Field(3, alias="CITAS_BACKEND_MAX_TRIES", ge=1, le=10)
    backend_max_retry_seconds: float = Field(20.0, alias="CITAS_BACKEND_MAX_RETRY_SECONDS", gt=0)
    breaker_threshold: int = Field(5, alias="CITAS_BREAKER_THRESHOLD", ge=1, le=1000)
    breaker_reset_seconds: float = Field(30.0, alias="CITAS_BREAKER_RESET_SECONDS", gt=0)
    business_cache_ttl_seconds: float = Field(300.0, alias="CITAS_BUSINESS_CACHE_TTL_SECONDS", gt=0)
    business_cache_stale_seconds: float = Field(
        3600.0, alias="CITAS_BUSINESS_CACHE_STALE_SECONDS", gt=0
    )

    # Rate limits (token buckets; a rate of 0 turns the limit off).
    rate_conversation_per_minute: float = Field(
        30.0, alias="CITAS_RATE_LIMIT_CONVERSATION_PER_MINUTE", ge=0
    )
    rate_conversation_burst: int = Field(30, alias="CITAS_RATE_LIMIT_CONVERSATION_BURST", ge=1)
    rate_business_per_minute: float = Field(0.0, alias="CITAS_RATE_LIMIT_BUSINESS_PER_MINUTE", ge=0)
    rate_business_burst: int = Field(200, alias="CITAS_RATE_LIMIT_BUSINESS_BURST", ge=1)

    # Sessions.
    redis_url: str | None = Field(None, alias="REDIS_URL")
    # No braces or glob characters: the prefix goes before a Cluster hash tag and into SCANs.
    redis_prefix: str = Field("citas", alias="CITAS_REDIS_PREFIX", pattern=r"^[A-Za-z0-9_.:-]+$")
    redis_timeout_seconds: float = Field(2.0, alias="CITAS_REDIS_TIMEOUT_SECONDS", gt=0, le=60)
    # How long a message waits for its conversation's previous turn before a 503: below a
    # gateway's usual 30 s timeout, so the gateway hears a 503 it can retry, not its own timeout.
    lock_wait_seconds: float = Field(20.0, alias="CITAS_LOCK_WAIT_SECONDS", gt=0, le=600)
    # The Redis lock's time to live, renewed every third of it while its holder lives: a dead
    # holder (SIGKILL, a hung Redis that lost the release) blocks its conversation this long.
    redis_lock_ttl_seconds: float = Field(15.0, alias="CITAS_REDIS_LOCK_TTL_SECONDS", ge=3, le=600)
    session_ttl_seconds: int = Field(86400, alias="CITAS_SESSION_TTL_SECONDS", ge=60)
    max_sessions: int = Field(10000, alias="CITAS_MAX_SESSIONS", ge=1)
    history_max_messages: int = Field(60, alias="CITAS_HISTORY_MAX_MESSAGES", ge=4)
    # Estimated tokens (`citas.tokens`) of the history sent to the model: a small local context
    # (llama.cpp's -c 8192) must still hold the system prompt, the tools and the answer.
    history_max_tokens: int = Field(6000, alias="CITAS_HISTORY_MAX_TOKENS", ge=1)

    # Scheduling rules.
    timezone: str = Field("America/Lima", alias="CITAS_TIMEZONE")
    # ISO 4217 code of prices when the request gives none (`context.config.moneda`).
    currency: str = Field("PEN", alias="CITAS_CURRENCY", pattern=r"^[A-Z]{3}$")
    default_duration_minutes: int = Field(60, alias="CITAS_DEFAULT_DURATION_MINUTES", ge=5, le=600)
    booking_min_notice_minutes: int = Field(30, alias="CITAS_BOOKING_MIN_NOTICE_MINUTES", ge=0)
    booking_horizon_days: int = Field(90, alias="CITAS_BOOKING_HORIZON_DAYS", ge=1, le=730)
    confirm_before_booking: bool = Field(True, alias="CITAS_CONFIRM_BEFORE_BOOKING")
    cancel_min_notice_minutes: int = Field(120, alias="CITAS_CANCEL_MIN_NOTICE_MINUTES", ge=0)
    # How long a conversation handed to a person stays paused unless resumed first.
    handoff_ttl_seconds: int = Field(86400, alias="CITAS_HANDOFF_TTL_SECONDS", ge=60)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        if not is_zone_name(value):
            raise ValueError(f"unknown IANA time zone {value!r}")
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _level_any_case(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @field_validator("calendar_api_url", "info_api_url", "openai_base_url", "redis_url")
    @classmethod
    def _url_like(cls, value: str | None) -> str | None:
        if value is not None and "://" not in value:
            raise ValueError(f"{value!r} is not a URL")
        return value

    @model_validator(mode="after")
    def _metrics_token_needs_token(self) -> Settings:
        if self.metrics_require_token and not self.api_token:
            raise ValueError("CITAS_METRICS_REQUIRE_TOKEN needs CITAS_API_TOKEN to be set")
        return self

    @property
    def log_level_number(self) -> int:
        """`log_level` as the stdlib's number (`logging.INFO`…)."""
        return logging.getLevelNamesMapping()[self.log_level.upper()]

    def secret_values(self) -> tuple[str, ...]:
        """The values no log line may ever show."""
        return tuple(s for s in (self.openai_api_key, self.api_token) if s)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Read every known variable from `env` (default: os.environ); empty means unset."""
        source = os.environ if env is None else env
        aliases = {field.alias for field in cls.model_fields.values() if field.alias}
        values: dict[str, Any] = {k: v for k, v in source.items() if k in aliases and v != ""}
        values.update(overrides)
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            raise ConfigError(_one_line(exc)) from None

    def with_updates(self, **changes: Any) -> Settings:
        """A validated copy with some fields changed (field names, not aliases)."""
        data = self.model_dump()
        data.update(changes)
        return type(self).model_validate(data)


MODEL_VARIABLES = "OPENAI_API_KEY/OPENAI_BASE_URL"


def missing_variables(settings: Settings, *, sandbox: bool) -> list[str]:
    """The variables a deployment without the sandbox cannot answer anyone without (the model's
    as `MODEL_VARIABLES`: either one will do)."""
    if sandbox:
        return []
    required = {
        "CITAS_CALENDAR_API_URL": settings.calendar_api_url,
        "CITAS_INFO_API_URL": settings.info_api_url,
        MODEL_VARIABLES: settings.openai_api_key or settings.openai_base_url,
    }
    return [variable for variable, value in required.items() if not value]


def missing_setup(settings: Settings, *, sandbox: bool) -> str | None:
    """What a command needs set before it can answer anyone, or None when nothing is missing.

    Without it the process would start, say it is ready, and answer every message with an
    apology; refusing to start names the fix instead.
    """
    missing = missing_variables(settings, sandbox=sandbox)
    backend = [variable for variable in missing if variable != MODEL_VARIABLES]
    if backend:
        return f"set {' and '.join(backend)}, or use --sandbox"
    if missing:
        return "set OPENAI_API_KEY (and OPENAI_BASE_URL if needed), or use --sandbox"
    return None


def _one_line(exc: ValidationError) -> str:
    first = exc.errors()[0]
    if not first["loc"]:  # a rule across settings names its variables itself
        return "invalid configuration: " + str(first["msg"]).removeprefix("Value error, ")
    name = str(first["loc"][0])
    field = Settings.model_fields.get(name)
    variable = field.alias if field is not None and field.alias else name
    return f"invalid configuration: {variable}: {first['msg']}"
