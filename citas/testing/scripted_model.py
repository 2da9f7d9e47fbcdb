"""`ScriptedModel`: a `ModelScript` served in-process, through the model seam.

It is a `FunctionModel` that sends its script the same request body the HTTP model would send
(as JSON, so nothing shared by reference), refused as the real API would refuse it, and turns a
refusal into `LLMUnavailable` as the HTTP model does once the SDK gives up. Tests of the loop and
the tools use it; the wire is tested through `FakeLLM`.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterable, Sequence

from citas.agent.function_model import FunctionModel
from citas.agent.model import ModelReply, ToolSchema
from citas.agent.openai_model import is_context_length_error, read_usage
from citas.errors import ContextTooLong, LLMUnavailable
from citas.messages import Message, ToolCallRequest
from citas.testing.script import JSON, ModelScript, Refusal, Responder, Step, ToolCall


class ScriptedModel(FunctionModel):
    def __init__(
        self,
        steps: Iterable[Step | ToolCall] = (),
        *,
        responder: Responder | None = None,
        record: bool = True,
        script: ModelScript | None = None,
        name: str = "gpt-4o-mini",
    ) -> None:
        super().__init__(self._answer, name=name)
        self.script = script or ModelScript(steps, responder=responder, record=record)

    async def _answer(self, messages: Sequence[Message], tools: Sequence[ToolSchema]) -> ModelReply:
        body = self._body(messages, tools)
        try:
            step = await self.script.serve(body)
        except Refusal as refusal:
            # What the HTTP model raises for the same answer (see `openai_model`).
            if refusal.status == 400 and is_context_length_error(refusal.error):
                raise ContextTooLong(str(refusal)) from None
            outcome = "rate_limited" if refusal.status == 429 else f"http_{refusal.status}"
            raise LLMUnavailable(str(refusal), outcome) from None
        calls = [
            ToolCallRequest(c.id or f"call_{secrets.token_hex(12)}", c.name, c.arguments)
            for c in step.tool_calls
        ]
        # Read as the HTTP model reads the same counts from the wire.
        usage = read_usage(*self.script.report(body, step))
        return ModelReply.of(step.text, calls, usage, step.finish_reason)

    def _body(self, messages: Sequence[Message], tools: Sequence[ToolSchema]) -> JSON:
        body: JSON = {"model": self.name, "messages": list(messages)}
        if tools:
            body["tools"] = list(tools)
        # Through JSON, as over the wire: the script gets its own copy, and what JSON cannot
        # carry fails here as it would there.
        decoded: JSON = json.loads(json.dumps(body, ensure_ascii=False))
        return decoded
