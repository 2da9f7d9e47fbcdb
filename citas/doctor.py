"""`citas doctor`: checks a deployment's configuration and what it talks to, before it takes
traffic. One row per check (`ok`, `FAIL`, `skip`, `warn`); exit 0, 1 when a check failed, 2 when
the command line or the configuration cannot be read.

Every check runs on its own under its own timeout, so one failure never hides the others. The
backends are asked through the service's own `BackendClient` and service modules, the model
through the service's own model client: what is checked is what the service sends.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import timedelta
from typing import Literal, TextIO
from urllib.parse import urlsplit, urlunsplit
from zoneinfo import ZoneInfo

import aiohttp
import redis.exceptions

from citas.agent.chat_http import APIStatusError
from citas.agent.model import ModelReply, TextSink, ToolSchema
from citas.agent.openai_model import OpenAIChatModel, create_client
from citas.backend import BackendClient, BackendPolicy
from citas.cache import SingleFlightCache
from citas.clock import system_clock
from citas.config import Settings, missing_variables
from citas.domain import SlotRules, Tenant
from citas.errors import BackendError, BackendRejected, ConfigError, LLMUnavailable
from citas.logs import configure_logging
from citas.messages import Message, SystemMessage, assistant_message, user_message
from citas.sandbox.local import sandbox_setup, wants_demo_model
from citas.services.availability import AvailabilityService
from citas.services.business import BusinessDirectory, fetch_context
from citas.services.schedule import fetch_opening_hours
from citas.store.redis import connect as connect_redis

Status = Literal["ok", "FAIL", "skip", "warn"]

DEFAULT_EMPRESA = 12
DEFAULT_TIMEOUT_SECONDS = 10.0
_DETAIL_CHARS = 160

_TOOL_NAME = "check_availability"
_TOOL: ToolSchema = {
    "type": "function",
    "function": {
        "name": _TOOL_NAME,
        "description": "Consulta si una fecha y hora está libre para una cita.",
        "parameters": {
            "type": "object",
            "properties": {
                "fecha": {"type": "string", "description": "YYYY-MM-DD"},
                "hora": {"type": "string", "description": "HH:MM, 24 horas"},
            },
            "required": ["fecha", "hora"],
        },
    },
}
_SYSTEM: SystemMessage = {
    "role": "system",
    "content": "Eres la recepcionista de una clínica. Usa las herramientas cuando te lo pidan.",
}


@dataclass(frozen=True, slots=True)
class Options:
    """What the command line asks for."""

    empresa: int = DEFAULT_EMPRESA
    sandbox: bool = False
    timeout: float = DEFAULT_TIMEOUT_SECONDS


@dataclass(frozen=True, slots=True)
class Outcome:
    status: Status
    detail: str


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One row of the table."""

    name: str
    status: Status
    detail: str


class ModelRefused(Exception):
    """The model endpoint answered the request with an HTTP error status."""

    def __init__(self, status_code: int, reason: str) -> None:
        super().__init__(f"HTTP {status_code}: {reason}")
        self.status_code = status_code
        self.reason = reason


# --------------------------------------------------------------------------- command line


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `citas doctor` options."""
    parser.add_argument(
        "--empresa",
        type=int,
        default=DEFAULT_EMPRESA,
        help=f"id_empresa the backend checks ask about (default {DEFAULT_EMPRESA})",
    )
    parser.add_argument(
        "--sandbox",
        action="store_true",
        help="check against the bundled sandbox backend (and, without a model, skip the model)",
    )
    parser.add_argument(
        "--timeout",
        type=_positive_seconds,
        default=DEFAULT_TIMEOUT_SECONDS,
        help=f"seconds each check may take (default {DEFAULT_TIMEOUT_SECONDS:g})",
    )


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value > 0:  # also refuses NaN
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds: {text!r}")
    return value


def run(args: argparse.Namespace) -> int:
    """The doctor command; returns the process exit status."""
    # Log lines would break the table; only errors reach stderr.
    configure_logging("console", logging.ERROR)
    options = Options(empresa=args.empresa, sandbox=args.sandbox, timeout=args.timeout)
    return asyncio.run(run_async(options))


async def run_async(options: Options, stdout: TextIO | None = None) -> int:
    """Read the configuration from the environment, run every check, print the table."""
    out = stdout or sys.stdout
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        print(f"citas doctor: {exc}", file=sys.stderr)
        return 2
    results = await diagnose(settings, options)
    print(render(results), file=out, flush=True)
    return exit_status(results)


def exit_status(results: Sequence[CheckResult]) -> int:
    return 1 if any(r.status == "FAIL" for r in results) else 0


def render(results: Sequence[CheckResult]) -> str:
    """A plain aligned table, then one summary line."""
    rows = [("check", "status", "detail"), *((r.name, r.status, r.detail) for r in results)]
    name_width = max(len(row[0]) for row in rows)
    status_width = max(len(row[1]) for row in rows)
    lines = [f"{n:<{name_width}}  {s:<{status_width}}  {d}".rstrip() for n, s, d in rows]
    failed = sum(r.status == "FAIL" for r in results)
    lines.append(f"\n{failed} check(s) failed" if failed else "\nno check failed")
    return "\n".join(lines)


# --------------------------------------------------------------------------- the checks


async def diagnose(settings: Settings, options: Options) -> list[CheckResult]:
    """Every check, in table order; none raises."""
    async with AsyncExitStack() as stack:
        effective = settings
        if options.sandbox:
            # URLs already configured keep precedence, as in `citas serve --sandbox`.
            effective = (await stack.enter_async_context(sandbox_setup(settings))).settings
        http = aiohttp.ClientSession()
        stack.push_async_callback(http.close)
        backend = BackendClient(http, _backend_policy(options.timeout))
        model_problem = _model_problem(settings, options.sandbox)

        async def model_check(check: Callable[[Settings, float], Awaitable[Outcome]]) -> Outcome:
            if model_problem is not None:
                return model_problem
            return await check(effective, options.timeout)

        checks: list[tuple[str, Callable[[], Awaitable[Outcome]]]] = [
            ("configuration", lambda: _configuration(settings, options.sandbox)),
            ("info backend", lambda: _info_backend(backend, effective, options.empresa)),
            ("calendar backend", lambda: _calendar_backend(backend, effective, options.empresa)),
            ("model: tool call", lambda: model_check(_model_tool_call)),
            ("model: streamed reply", lambda: model_check(_model_streamed_reply)),
            ("model: second system message", lambda: model_check(_model_second_system)),
            ("redis", lambda: _redis(effective, options.timeout)),
        ]
        # One after another: a one-slot model server (llama.cpp's default) would make checks
        # asked at once time each other out.
        return [await _run_check(name, check, options.timeout) for name, check in checks]


async def _run_check(
    name: str, check: Callable[[], Awaitable[Outcome]], timeout: float
) -> CheckResult:
    try:
        async with asyncio.timeout(timeout):
            outcome = await check()
    except TimeoutError:
        outcome = Outcome("FAIL", f"no answer within {timeout:g} s")
    except Exception as exc:  # a check's own bug must not hide the other rows: it is its row
        outcome = Outcome("FAIL", _short(f"check crashed: {exc!r}"))
    return CheckResult(name, outcome.status, outcome.detail)


def _backend_policy(timeout: float) -> BackendPolicy:
    # Two tries: one lost packet is not a broken deployment, but the answer must come quickly.
    return BackendPolicy(
        connect_timeout=min(3.0, timeout),
        read_timeout=timeout,
        total_timeout=timeout,
        max_tries=2,
        max_retry_seconds=timeout,
    )


async def _configuration(settings: Settings, sandbox: bool) -> Outcome:
    missing = missing_variables(settings, sandbox=sandbox)
    if missing:
        return Outcome("FAIL", "not set: " + ", ".join(missing) + "; or use --sandbox")
    calendar = "set" if settings.calendar_api_url else "sandbox"
    info = "set" if settings.info_api_url else "sandbox"
    if settings.openai_api_key or settings.openai_base_url:
        model = f"{settings.model} at {_shown_url(settings.openai_base_url)}"
    else:
        model = "demo model"
    store = f"redis {_shown_url(settings.redis_url)}" if settings.redis_url else "in-process"
    return Outcome("ok", f"model: {model}; calendar: {calendar}; info: {info}; store: {store}")


async def _info_backend(backend: BackendClient, settings: Settings, empresa: int) -> Outcome:
    url = settings.info_api_url
    if not url:
        return Outcome("FAIL", "CITAS_INFO_API_URL is not set")
    start = time.perf_counter()
    try:
        context = await fetch_context(backend, url, empresa)
        hours = await fetch_opening_hours(backend, url, empresa)
    except (BackendError, BackendRejected) as exc:
        return _backend_failure(url, exc)
    elapsed = _ms_since(start)
    open_days = sum(1 for ranges in hours.days if ranges)
    if not open_days:
        # The service would refuse every slot as outside opening hours.
        return Outcome("warn", f"empresa {empresa} has no opening hours: nothing can be booked")
    about = f"'{context[:30]}…'" if len(context) > 30 else repr(context)
    return Outcome("ok", f"empresa {empresa} {about}, open {open_days} days a week · {elapsed}")


async def _calendar_backend(backend: BackendClient, settings: Settings, empresa: int) -> Outcome:
    url = settings.calendar_api_url
    if not url:
        return Outcome("FAIL", "CITAS_CALENDAR_API_URL is not set")
    zone = ZoneInfo(settings.timezone)
    tomorrow = system_clock().astimezone(zone).date() + timedelta(days=1)
    tenant = Tenant(empresa, zone, settings.default_duration_minutes)
    # suggest() reads neither the directory nor the rules; the service is built only because it
    # owns the SUGERIR_HORARIOS wire format.
    directory = BusinessDirectory(backend, settings.info_api_url, SingleFlightCache(1.0, 1))
    service = AvailabilityService(backend, url, directory, SlotRules(), system_clock)
    start = time.perf_counter()
    try:
        slots = await service.suggest(tenant, tomorrow, 3)
    except (BackendError, BackendRejected) as exc:
        return _backend_failure(url, exc)
    elapsed = _ms_since(start)
    first = f", first {slots[0].local_start}" if slots else ""
    return Outcome(
        "ok",
        f"SUGERIR_HORARIOS {tomorrow} ({settings.timezone}): {len(slots)} slot(s){first} · "
        f"{elapsed}",
    )


def _backend_failure(url: str, exc: BackendError | BackendRejected) -> Outcome:
    if isinstance(exc, BackendRejected):
        what = f"{exc.operation} answered success: false ({exc.message})"
    else:
        what = str(exc)
    return Outcome("FAIL", _short(f"{_shown_url(url)}: {what}"))


def _model_problem(settings: Settings, sandbox: bool) -> Outcome | None:
    """None when a model endpoint is configured; else what every model row says."""
    if not wants_demo_model(settings):
        return None
    if sandbox:
        return Outcome("skip", "demo model (no OPENAI_API_KEY/OPENAI_BASE_URL)")
    return Outcome("FAIL", "no model: set OPENAI_API_KEY (and OPENAI_BASE_URL if needed)")


async def _model_tool_call(settings: Settings, timeout: float) -> Outcome:
    ask = "¿Está libre el 2026-12-01 a las 10:00? Consúltalo con la herramienta check_availability."
    start = time.perf_counter()
    try:
        reply = await ask_model(settings, [_SYSTEM, user_message(ask)], [_TOOL], timeout)
    except (LLMUnavailable, ModelRefused) as exc:
        return Outcome("FAIL", _short(str(exc)))
    elapsed = _ms_since(start)
    if not reply.tool_calls:
        return Outcome("warn", _short(f"answered text, no tool call: {reply.text!r}"))
    call = reply.tool_calls[0]
    if call.name != _TOOL_NAME:
        return Outcome("warn", _short(f"called a tool it was not given: {call.name!r}"))
    if not _is_json_object(call.arguments):
        return Outcome("warn", _short(f"arguments are not a JSON object: {call.arguments!r}"))
    return Outcome("ok", _short(f"{call.name}({call.arguments}) · {elapsed}"))


async def _model_streamed_reply(settings: Settings, timeout: float) -> Outcome:
    streamed: list[str] = []
    start = time.perf_counter()
    try:
        await ask_model(
            settings, [_SYSTEM, user_message("Responde solo: hola")], [], timeout, streamed.append
        )
    except (LLMUnavailable, ModelRefused) as exc:
        return Outcome("FAIL", _short(str(exc)))
    text = "".join(streamed).strip()
    if not text:
        return Outcome("FAIL", "the streamed call ended without text")
    return Outcome("ok", _short(f"streamed {text!r} · {_ms_since(start)}"))


async def _model_second_system(settings: Settings, timeout: float) -> Outcome:
    # The shape of a citas turn with history: the date goes as a system message just before the
    # customer's message, so it ends on a user message as citas does.
    late_system: SystemMessage = {"role": "system", "content": "Ahora es lunes 2026-11-30 10:00."}
    history: list[Message] = [
        _SYSTEM,
        user_message("Hola"),
        assistant_message("¡Hola! ¿En qué te ayudo?"),
    ]
    ask = user_message("¿Qué día es hoy?")
    start = time.perf_counter()
    try:
        await ask_model(settings, [*history, late_system, ask], [_TOOL], timeout)
    except ModelRefused as refused:
        return await _blame_late_system(settings, [*history, ask], timeout, refused)
    except LLMUnavailable as exc:
        return Outcome("FAIL", _short(f"could not ask: {exc}"))
    return Outcome("ok", f"accepted [system, user, assistant, system, user] · {_ms_since(start)}")


async def _blame_late_system(
    settings: Settings, without: list[Message], timeout: float, refused: ModelRefused
) -> Outcome:
    """The late system message is to blame only if the same request without it is accepted
    (a wrong key or model name refuses both)."""
    try:
        await ask_model(settings, without, [_TOOL], timeout)
    except (ModelRefused, LLMUnavailable) as exc:
        return Outcome("FAIL", _short(f"refuses even without a second system message: {exc}"))
    return Outcome(
        "FAIL",
        _short(
            "refuses a system message that is not first, which citas sends every turn "
            f"(HTTP {refused.status_code}: {refused.reason})"
        ),
    )


async def ask_model(
    settings: Settings,
    messages: Sequence[Message],
    tools: Sequence[ToolSchema],
    timeout: float,
    on_text: TextSink | None = None,
) -> ModelReply:
    """One call through the service's own model client, without retries (a diagnosis must not
    hide a flaky endpoint). An HTTP error answer raises `ModelRefused`; any other failure
    `LLMUnavailable`. The only place that knows how the model client is built."""
    client = create_client(settings.openai_api_key, settings.openai_base_url, timeout, 0)
    try:
        model = OpenAIChatModel(
            client,
            settings.model,
            call_timeout=timeout,
            max_tokens=settings.llm_max_tokens,
            temperature=settings.llm_temperature,
        )
        return await model.complete(messages, tools, timeout=timeout, on_text=on_text)
    except LLMUnavailable as exc:
        cause = exc.__cause__
        if isinstance(cause, APIStatusError):
            raise ModelRefused(cause.status, _api_reason(cause)) from exc
        raise
    finally:
        await client.close()


def _api_reason(error: APIStatusError) -> str:
    """The error body's message, last line only: llama.cpp puts the template's reason there."""
    text = error.message if error.message.strip() else f"HTTP {error.status}"
    return text.strip().splitlines()[-1].strip()


async def _redis(settings: Settings, timeout: float) -> Outcome:
    if not settings.redis_url:
        return Outcome("skip", "in-process store (REDIS_URL not set)")
    client = connect_redis(settings.redis_url, min(settings.redis_timeout_seconds, timeout))
    start = time.perf_counter()
    try:
        await client.ping()
    except (redis.exceptions.RedisError, OSError) as exc:
        return Outcome("FAIL", _short(f"{_shown_url(settings.redis_url)}: {exc}"))
    finally:
        await client.aclose()
    return Outcome("ok", f"PING {_shown_url(settings.redis_url)} · {_ms_since(start)}")


# --------------------------------------------------------------------------- helpers


def _is_json_object(text: str) -> bool:
    try:
        return isinstance(json.loads(text), dict)
    except ValueError:
        return False


def _shown_url(url: str | None) -> str:
    """A URL fit for a terminal: no password, no query string (either may carry a secret)."""
    if not url:
        return "the SDK's default endpoint"
    parts = urlsplit(url)
    netloc = parts.netloc
    if parts.password is not None:
        netloc = f"{parts.username or ''}:***@{netloc.rpartition('@')[2]}"
    query = "…" if parts.query else ""
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def _ms_since(start: float) -> str:
    return f"{(time.perf_counter() - start) * 1000:.0f} ms"


def _short(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= _DETAIL_CHARS else flat[: _DETAIL_CHARS - 1] + "…"
