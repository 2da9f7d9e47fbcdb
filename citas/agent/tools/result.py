"""What a tool answers: facts, a text the customer may see, and an instruction for the model only.

Small models repeat whatever text a tool result carries, so the two kinds of text are kept apart:
`mensaje` is written to be read by the customer as it is; `instruccion` tells the model what to
do next and must never reach a reply (the reply guard removes it if the model echoes it).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import Any

CUSTOMER_TEXT_KEY = "mensaje"
INSTRUCTION_KEY = "instruccion"


@dataclass(frozen=True, slots=True)
class ToolResult:
    ok: bool
    facts: dict[str, Any] = field(default_factory=dict)
    customer_text: str | None = None
    instruction: str | None = None
    error: str | None = None  # a stable code the model (and the evaluation) can branch on
    answers: bool = False
    """The customer asked for what this result found (prices, their appointments, free times,
    a taken hour's alternatives): a reply must carry one of its figures, or the reply guard
    gives its `mensaje` instead."""

    def encode(self) -> str:
        """The JSON text the model is given (one line, UTF-8 kept)."""
        body: dict[str, Any] = {"ok": self.ok}
        if self.error is not None:
            body["error"] = self.error
        body.update(self.facts)
        if self.customer_text:
            body[CUSTOMER_TEXT_KEY] = self.customer_text
        if self.instruction:
            body[INSTRUCTION_KEY] = self.instruction
        return json.dumps(body, ensure_ascii=False, separators=(",", ":"))

    def with_instruction(self, instruction: str) -> ToolResult:
        """This result with `instruction` added after its own."""
        joined = f"{self.instruction} {instruction}" if self.instruction else instruction
        return replace(self, instruction=joined)


def failure(error: str, instruction: str, customer_text: str | None = None) -> ToolResult:
    """A call that did nothing: why (a code), and what the model should do about it."""
    return ToolResult(False, error=error, customer_text=customer_text, instruction=instruction)
