"""citas in this process, observed: the one harness behind the tests, replay and recording,
`citas chat`, the fault table and the evaluation.

`LocalCitas` serves the real app on 127.0.0.1 (a plain `AppRunner`, as `citas serve` does) with a
given model, optionally in front of a sandbox backend of its own, and observes each turn through
its run events: the model's answers with their timings, the tool calls with their results, and
(with its own sandbox) the bookings and backend calls. `MetricsDelta` reads what the metrics
moved; `LoopThread` runs all of it on an event loop in a background thread for blocking callers
(a terminal, schemathesis).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator, Coroutine, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import aiohttp
from aiohttp import web
from prometheus_client import CollectorRegistry

from citas.agent.events import ModelCallFinished, RunEvent, ToolCallFinished
from citas.agent.model import ChatModel, ModelReply
from citas.agent.turn import TurnRequest
from citas.api.connections import make_runner
from citas.app import create_app
from citas.clock import Clock, system_clock
from citas.config import Settings
from citas.domain import ConversationKey
from citas.metrics import REGISTRY
from citas.runtime import RUNTIME, Runtime
from citas.sandbox import Event, RunningSandbox, SandboxBackend, SandboxSeed, start_sandbox

T = TypeVar("T")
JsonDict = dict[str, Any]

LOCAL_CLIENT_MARGIN_SECONDS = 30.0
"""How much longer than the turn's deadline a local tool waits for an answer: what may run past
the deadline (a tool round begun just before it, whose backend calls have their own budget;
saving the conversation), with room to spare."""


def client_timeout(settings: Settings) -> aiohttp.ClientTimeout:
    """How long the harness (so `citas chat`, `replay.py --record`, the tests) waits for one
    answer of citas: the turn's deadline plus `LOCAL_CLIENT_MARGIN_SECONDS`. aiohttp's default
    (5 minutes) would cut off a turn under a longer deadline (a slow local model), and keep a
    person waiting minutes for a hung one under a shorter deadline. Each tool sends one
    message at a time, so no request of its own waits for a busy conversation first."""
    return aiohttp.ClientTimeout(total=settings.turn_deadline_seconds + LOCAL_CLIENT_MARGIN_SECONDS)


# --------------------------------------------------------------------------- what a turn did


@dataclass(frozen=True, slots=True)
class ModelCall:
    """One answer the model gave during a turn, with when it was asked and how long it took."""

    reply: ModelReply
    started: float  # time.perf_counter()
    seconds: float


@dataclass(frozen=True, slots=True)
class ObservedCall:
    """A tool call the agent ran, and the result the model was given (decoded JSON)."""

    name: str
    arguments: str
    result: JsonDict | None

    def decoded_arguments(self) -> Any:
        """The arguments as JSON, or the raw string when the model sent no valid JSON."""
        try:
            return json.loads(self.arguments)
        except ValueError:
            return self.arguments


@dataclass(frozen=True, slots=True)
class TurnOutcome:
    """Everything one customer message led to."""

    status: int
    reply: str  # "" when paused (the API's null)
    url: str | None
    error: str | None
    tool_calls: list[ObservedCall]
    model_calls: list[ModelCall]
    bookings: list[Event] = field(default_factory=list)
    backend_calls: list[tuple[str, JsonDict]] = field(default_factory=list)
    started: float = 0.0
    seconds: float = 0.0
    handoff: str | None = None  # request_human's reason, when this turn handed off
    paused: bool = False  # a person has the conversation: stored, not answered


class TurnRecorder:
    """A run listener keeping the events of the conversations it is told to watch, until they
    are taken (turns nobody watches, e.g. plain requests of a test, are not kept)."""

    def __init__(self) -> None:
        self._events: dict[ConversationKey, list[RunEvent]] = {}

    def __call__(self, turn: TurnRequest, event: RunEvent) -> None:
        events = self._events.get(turn.key)
        if events is not None:
            events.append(event)

    def watch(self, key: ConversationKey) -> None:
        self._events[key] = []

    def take(self, key: ConversationKey) -> list[RunEvent]:
        return self._events.pop(key, [])


def observed_turn(events: Sequence[RunEvent]) -> tuple[list[ModelCall], list[ObservedCall]]:
    """The model's answers, and the tool calls in the order they were asked for: the model's,
    and those the loop made for the customer (`follow_through`) where it made them."""
    models = [
        ModelCall(e.reply, e.started, e.seconds)
        for e in events
        if isinstance(e, ModelCallFinished) and e.reply is not None
    ]
    results = {e.call.id: e.result for e in events if isinstance(e, ToolCallFinished)}
    asked = {call.id for model in models for call in model.reply.tool_calls}
    calls: list[ObservedCall] = []
    for e in events:
        if isinstance(e, ModelCallFinished) and e.reply is not None:
            calls += [
                ObservedCall(call.name, call.arguments, _decode(results.get(call.id)))
                for call in e.reply.tool_calls
            ]
        elif isinstance(e, ToolCallFinished) and e.call.id not in asked:
            calls.append(ObservedCall(e.call.name, e.call.arguments, _decode(e.result)))
    return models, calls


def _decode(content: str | None) -> JsonDict | None:
    if content is None:
        return None
    try:
        value = json.loads(content)
    except ValueError:
        return {"raw": content}
    return value if isinstance(value, dict) else {"raw": value}


# --------------------------------------------------------------------------- the harness


class LocalCitas:
    """A running citas app that requests and conversations are sent to."""

    def __init__(
        self,
        app: web.Application,
        base_url: str,
        recorder: TurnRecorder,
        sandbox: RunningSandbox | None,
    ) -> None:
        self.app = app
        self.base_url = base_url
        self.http = aiohttp.ClientSession(
            base_url=base_url, timeout=client_timeout(app[RUNTIME].settings)
        )
        self.sandbox = sandbox
        self._recorder = recorder
        self._responses: list[aiohttp.ClientResponse] = []

    def _release(self) -> None:
        for response in self._responses:
            response.release()
        self._responses.clear()

    @property
    def runtime(self) -> Runtime:
        return self.app[RUNTIME]

    @property
    def settings(self) -> Settings:
        """The effective settings (with the harness's sandbox URLs)."""
        return self.runtime.settings

    @classmethod
    @asynccontextmanager
    async def start(
        cls,
        settings: Settings,
        *,
        model: ChatModel | None = None,
        clock: Clock = system_clock,
        seed: SandboxSeed | None = None,
    ) -> AsyncIterator[LocalCitas]:
        """Serve citas with `settings` and `model` (default: the endpoint the settings name).
        With `seed`, a sandbox seeded from it serves the backend and is observed."""
        async with AsyncExitStack() as stack:
            sandbox: RunningSandbox | None = None
            if seed is not None:
                sandbox = await start_sandbox(SandboxBackend(seed, clock=clock))
                stack.push_async_callback(sandbox.close)
                settings = settings.with_updates(
                    calendar_api_url=sandbox.calendar_url, info_api_url=sandbox.info_url
                )
            app = create_app(settings, model=model, clock=clock)
            runner = make_runner(app, settings, handle_signals=False, access_log=None)
            await runner.setup()
            stack.push_async_callback(runner.cleanup)
            await web.TCPSite(runner, "127.0.0.1", 0).start()
            host, port = runner.addresses[0][:2]
            recorder = TurnRecorder()
            app[RUNTIME].agent.listeners.append(recorder)
            citas = cls(app, f"http://{host}:{port}", recorder, sandbox)
            stack.push_async_callback(citas.http.close)
            stack.callback(citas._release)
            yield citas

    async def request(self, method: str, path: str, **kwargs: Any) -> aiohttp.ClientResponse:
        """An HTTP request to the app; the caller may read the body as it comes (a stream).
        Responses left unread are released when the harness stops."""
        response = await self.http.request(method, path, **kwargs)
        self._responses.append(response)
        return response

    async def post(self, path: str, **kwargs: Any) -> aiohttp.ClientResponse:
        return await self.request("POST", path, **kwargs)

    async def get(self, path: str, **kwargs: Any) -> aiohttp.ClientResponse:
        return await self.request("GET", path, **kwargs)

    async def send(
        self,
        message: str,
        *,
        session_id: str,
        context: JsonDict,
        message_id: str | None = None,
    ) -> TurnOutcome:
        """POST one message to /api/chat and collect what the turn did."""
        body: JsonDict = {"message": message, "session_id": session_id, "context": context}
        if message_id is not None:
            body["message_id"] = message_id
        key = _conversation_key(context, session_id)
        if key is not None:
            self._recorder.watch(key)
        backend = self.sandbox.backend if self.sandbox else None
        events_before = len(backend.events) if backend else 0
        calls_before = len(backend.calls) if backend else 0
        started = time.perf_counter()
        async with self.http.post("/api/chat", json=body) as response:
            answer = await response.json()
        seconds = time.perf_counter() - started
        models, calls = observed_turn(self._recorder.take(key) if key is not None else [])
        error = answer.get("error")
        handoff = answer.get("handoff")
        return TurnOutcome(
            status=response.status,
            reply=str(answer.get("reply") or ""),
            handoff=handoff.get("reason") if isinstance(handoff, dict) else None,
            paused=answer.get("paused") is True,
            url=answer.get("url"),
            error=error.get("code") if isinstance(error, dict) else None,
            tool_calls=calls,
            model_calls=models,
            bookings=backend.events[events_before:] if backend else [],
            backend_calls=backend.calls[calls_before:] if backend else [],
            started=started,
            seconds=seconds,
        )


def _conversation_key(context: JsonDict, session_id: str) -> ConversationKey | None:
    config = context.get("config")
    id_empresa = config.get("id_empresa") if isinstance(config, dict) else None
    if not isinstance(id_empresa, int):
        return None  # the API answers 400; there is no conversation to look at
    return ConversationKey(id_empresa, session_id)


# --------------------------------------------------------------------------- metrics


_Sample = tuple[str, tuple[tuple[str, str], ...]]


class MetricsDelta:
    """Samples read once at creation; how much each has moved since."""

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self._registry = registry
        self._before = self._read()

    def _read(self) -> dict[_Sample, float]:
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for metric in self._registry.collect()
            for s in metric.samples
        }

    def of(self, name: str, **labels: str) -> float:
        """How much one sample moved (a sample never set counts as 0)."""
        key = (name, tuple(sorted(labels.items())))
        now = self._registry.get_sample_value(name, labels) or 0.0
        return now - self._before.get(key, 0.0)

    def changes(self, name: str) -> list[tuple[dict[str, str], float]]:
        """Every label set of `name` that moved, with how much."""
        before = self._before
        return [
            (dict(labels), value - before.get((sample, labels), 0.0))
            for (sample, labels), value in sorted(self._read().items())
            if sample == name and value != before.get((sample, labels), 0.0)
        ]


# --------------------------------------------------------------------------- blocking callers


class LoopThread:
    """An event loop running in a daemon thread; `run` waits for one coroutine on it."""

    def __init__(self, name: str = "citas-loop") -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self._thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """The coroutine's result; a KeyboardInterrupt while waiting cancels it."""
        future = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        try:
            return future.result(timeout)
        except KeyboardInterrupt:
            future.cancel()
            raise

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        self.loop.close()
