"""The contract between the gateway API and the agent: one customer message in, one reply out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from citas.domain import ConversationKey, Tenant

TurnError = Literal["llm_unavailable", "backend_unavailable"]


@dataclass(frozen=True, slots=True)
class TurnRequest:
    tenant: Tenant
    session_id: str
    message: str
    message_id: str | None = None

    @property
    def key(self) -> ConversationKey:
        return ConversationKey(self.tenant.id_empresa, self.session_id)


@dataclass(frozen=True, slots=True)
class TurnResult:
    reply: str
    url: str | None = None
    error: TurnError | None = None  # the reply is then an apology
    replayed: bool = False  # the first reply to a redelivered message_id
    handoff: str | None = None  # request_human's reason: a person takes over from here
    paused: bool = False  # a person has the conversation: nothing is sent (`reply` is "")

    def to_dict(self) -> dict[str, Any]:
        """As remembered for redelivery (see `SessionStore.remember_reply`)."""
        return {
            "reply": self.reply,
            "url": self.url,
            "error": self.error,
            "handoff": self.handoff,
            "paused": self.paused,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], replayed: bool = False) -> TurnResult:
        return cls(
            data["reply"],
            data.get("url"),
            data.get("error"),
            replayed,
            data.get("handoff"),
            bool(data.get("paused", False)),
        )
