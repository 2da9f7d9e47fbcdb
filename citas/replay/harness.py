"""citas in-process, observed: the real app behind a loopback test server, and per turn what it
did (tool calls with their results, model answers with timings, bookings, backend calls).

Replay, `--record` and `citas chat` all drive conversations through this one harness.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from citas.agent.llm import ChatModel, ModelReply
from citas.app import create_app
from citas.clock import Clock
from citas.config import Settings
from citas.conversation import Message
from citas.domain import ConversationKey
from citas.runtime import RUNTIME, Runtime
from citas.sandbox import Event, SandboxBackend, SandboxSeed, start_sandbox

JsonDict = dict[str, Any]


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
    reply: str
    url: str | None
    error: str | None
    tool_calls: list[ObservedCall]
    model_calls: list[ModelCall]
    bookings: list[Event] = field(default_factory=list)
    backend_calls: list[tuple[str, JsonDict]] = field(default_factory=list)
    started: float = 0.0
    seconds: float = 0.0


class RecordingModel(ChatModel):
    """The app's own model client, remembering each answer and its duration."""

    def __init__(self, inner: ChatModel) -> None:
        super().__init__(inner.client, inner.model)
        self.calls: list[ModelCall] = []

    async def complete(self, *args: Any, **kwargs: Any) -> ModelReply:
        started = time.perf_counter()
        reply = await super().complete(*args, **kwargs)
        self.calls.append(ModelCall(reply, started, time.perf_counter() - started))
        return reply


class LiveCitas:
    """A running citas app (and optionally a sandbox backend) that conversations are sent to."""

    def __init__(
        self,
        client: TestClient[web.Request, web.Application],
        runtime: Runtime,
        model: RecordingModel,
        sandbox: SandboxBackend | None,
    ) -> None:
        self._client = client
        self.runtime = runtime
        self.model = model
        self.sandbox = sandbox

    @classmethod
    @asynccontextmanager
    async def start(
        cls,
        settings: Settings,
        *,
        clock: Clock,
        seed: SandboxSeed | None = None,
        bundled_sandbox: bool = False,
    ) -> AsyncIterator[LiveCitas]:
        """With `seed`, a sandbox seeded from it serves the backend (and is observed);
        `bundled_sandbox` is `citas serve --sandbox` (bundled seed, demo model without a key)."""
        async with AsyncExitStack() as stack:
            backend: SandboxBackend | None = None
            if seed is not None:
                backend = SandboxBackend(seed, clock=clock)
                running = await start_sandbox(backend)
                stack.push_async_callback(running.close)
                settings = settings.with_updates(
                    calendar_api_url=running.calendar_url, info_api_url=running.info_url
                )
            app = create_app(settings, sandbox=bundled_sandbox, clock=clock)
            client: TestClient[web.Request, web.Application] = TestClient(
                TestServer(app, host="127.0.0.1")
            )
            await client.start_server()
            stack.push_async_callback(client.close)
            runtime = app[RUNTIME]
            model = RecordingModel(runtime.agent.model)
            runtime.agent.model = model
            yield cls(client, runtime, model, backend)

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
        previous = await self._last_turn(key)
        events_before = len(self.sandbox.events) if self.sandbox else 0
        calls_before = len(self.sandbox.calls) if self.sandbox else 0
        models_before = len(self.model.calls)
        started = time.perf_counter()
        response = await self._client.post("/api/chat", json=body)
        answer = await response.json()
        seconds = time.perf_counter() - started
        latest = await self._last_turn(key)
        saved = latest is not None and latest != previous
        error = answer.get("error")
        return TurnOutcome(
            status=response.status,
            reply=str(answer.get("reply", "")),
            url=answer.get("url"),
            error=error.get("code") if isinstance(error, dict) else None,
            tool_calls=_tool_calls(latest) if saved and latest is not None else [],
            model_calls=self.model.calls[models_before:],
            bookings=self.sandbox.events[events_before:] if self.sandbox else [],
            backend_calls=self.sandbox.calls[calls_before:] if self.sandbox else [],
            started=started,
            seconds=seconds,
        )

    async def _last_turn(self, key: ConversationKey | None) -> list[Message] | None:
        if key is None:
            return None
        conversation = await self.runtime.store.load(key)
        # A copy: a later turn must not change what this one observed.
        return json.loads(json.dumps(conversation.turns[-1])) if conversation.turns else None


def _conversation_key(context: JsonDict, session_id: str) -> ConversationKey | None:
    config = context.get("config")
    id_empresa = config.get("id_empresa") if isinstance(config, dict) else None
    if not isinstance(id_empresa, int):
        return None  # the API answers 400; there is no conversation to look at
    return ConversationKey(id_empresa, session_id)


def _tool_calls(turn: Sequence[Message]) -> list[ObservedCall]:
    """The tool calls of a saved turn, each with the result the model was given."""
    results = {m.get("tool_call_id"): m.get("content") for m in turn if m.get("role") == "tool"}
    observed = []
    for message in turn:
        if message.get("role") != "assistant":
            continue
        for call in message.get("tool_calls") or ():
            function = call.get("function", {})
            observed.append(
                ObservedCall(
                    name=str(function.get("name", "")),
                    arguments=str(function.get("arguments", "")),
                    result=_decode(results.get(call.get("id"))),
                )
            )
    return observed


def _decode(content: object) -> JsonDict | None:
    if not isinstance(content, str):
        return None
    try:
        value = json.loads(content)
    except ValueError:
        return {"raw": content}
    return value if isinstance(value, dict) else {"raw": value}
