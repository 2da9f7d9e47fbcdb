"""Test doubles shared by the test suite, replay, the evaluation and the benchmarks: fake models
(in-process and over the wire), the rules they enforce, and the harness that runs citas."""

from citas.testing.fake_llm import FakeLLM
from citas.testing.openai_rules import InvalidRequestError, validate_request
from citas.testing.script import (
    ModelScript,
    Refusal,
    Responder,
    Step,
    ToolCall,
    call,
    reply,
    tool_calls,
)
from citas.testing.scripted_model import ScriptedModel

__all__ = [
    "FakeLLM",
    "InvalidRequestError",
    "ModelScript",
    "Refusal",
    "Responder",
    "ScriptedModel",
    "Step",
    "ToolCall",
    "call",
    "reply",
    "tool_calls",
    "validate_request",
]
