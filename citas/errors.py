"""The exception hierarchy of citas: typed inside, mapped to one JSON error shape at the edge."""

from __future__ import annotations


class CitasError(Exception):
    """Base class of every error citas raises on purpose."""


class ConfigError(CitasError):
    """A setting is missing or invalid; the message names the variable."""


class ListenError(CitasError):
    """The server could not listen on its address (taken, not allowed, unknown host)."""

    def __init__(self, host: str, port: int, reason: str) -> None:
        where = f"[{host}]" if ":" in host else host  # an IPv6 address needs its brackets
        super().__init__(f"cannot listen on {where}:{port}: {reason}")
        self.host = host
        self.port = port
        self.reason = reason


class InvalidRequest(CitasError):
    """The gateway's request is malformed; the message names every bad field."""


class BackendError(CitasError):
    """The platform backend could not answer (timeout, connection, 5xx, bad body, open circuit)."""

    def __init__(self, operation: str, reason: str) -> None:
        super().__init__(f"{operation}: {reason}")
        self.operation = operation
        self.reason = reason


class BackendRejected(CitasError):
    """The backend answered `success: false`: a business answer, never retried."""

    def __init__(self, operation: str, message: str) -> None:
        super().__init__(f"{operation}: {message}")
        self.operation = operation
        self.message = message


class LLMUnavailable(CitasError):
    """The model failed after its retries, or the turn ran out of time.

    `outcome` labels the failure in metrics: timeout, connection_error, rate_limited,
    http_<status>, malformed, incomplete, deadline, context_length, error.
    """

    def __init__(self, message: str, outcome: str = "error") -> None:
        super().__init__(message)
        self.outcome = outcome


class ContextTooLong(LLMUnavailable):
    """The endpoint refused the request (HTTP 400) as longer than the model's context.

    Asking again the same way fails the same way, but a shorter history may fit: the caller can
    drop old turns (`Conversation.shrink_after_context_error`) and ask once more. Whoever does
    not catch it gets the `LLMUnavailable` it is. `outcome` is `context_length`.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message, "context_length")


class UnsupportedMediaType(CitasError):
    """The body is not declared JSON (`Content-Type`): HTTP 415."""


class BodyTimeout(CitasError):
    """The request body did not arrive within `CITAS_HTTP_BODY_TIMEOUT_SECONDS`: HTTP 408."""


class UnknownBusiness(CitasError):
    """The backend knows no business with this id (every business operation refused it)."""

    def __init__(self, id_empresa: int) -> None:
        super().__init__(f"La empresa {id_empresa} no existe en el sistema de reservas.")
        self.id_empresa = id_empresa


class StoreUnavailable(CitasError):
    """The session store (Redis) cannot be reached."""


class Overloaded(CitasError):
    """Too many turns in flight, or a conversation lock could not be had in time.

    `reason` labels the shed request in metrics: overloaded, draining, conversation_busy.
    """

    def __init__(
        self, message: str, retry_after_seconds: int = 1, reason: str = "overloaded"
    ) -> None:
        super().__init__(message)
        self.retry_after_seconds = retry_after_seconds
        self.reason = reason


class RateLimited(CitasError):
    """A conversation or a business sent more messages than its token bucket allows."""

    def __init__(self, scope: str, retry_after_seconds: float) -> None:
        super().__init__(f"too many messages for this {scope}")
        self.scope = scope
        self.retry_after_seconds = retry_after_seconds
