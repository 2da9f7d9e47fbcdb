"""The tools the model may call: one module per tool family (arguments, handler, result texts),
the argument types they share, and the registry that dispatches a model's calls."""

from citas.agent.tools.context import ToolServices, TurnContext
from citas.agent.tools.registry import (
    MAX_ARGUMENT_CHARS,
    MAX_CALLS_PER_ROUND,
    TOOLS,
    Tool,
    ToolRegistry,
)

__all__ = [
    "MAX_ARGUMENT_CHARS",
    "MAX_CALLS_PER_ROUND",
    "TOOLS",
    "Tool",
    "ToolRegistry",
    "ToolServices",
    "TurnContext",
]
