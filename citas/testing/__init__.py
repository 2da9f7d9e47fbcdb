"""Test doubles shared by the test suite, `scripts/replay.py` and `scripts/bench.py`."""

from citas.testing.fake_llm import (
    FakeLLM,
    InvalidRequestError,
    Responder,
    Step,
    ToolCall,
    call,
    reply,
    tool_calls,
    validate_request,
)

__all__ = [
    "FakeLLM",
    "InvalidRequestError",
    "Responder",
    "Step",
    "ToolCall",
    "call",
    "reply",
    "tool_calls",
    "validate_request",
]
