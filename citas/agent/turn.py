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
    earlier: tuple[str, ...] = ()
    """Messages of the same burst that came before this one (`CITAS_COALESCE_MS`): answered
    in this turn, each its own user message."""

    @property
    def messages(self) -> tuple[str, ...]:
        return (*self.earlier, self.message)

    @property
    def key(self) -> ConversationKey:
        return ConversationKey(self.tenant.id_empresa, self.session_id)


@dataclass(frozen=True, slots=True)
class TurnResult:
    reply: str
    url: str | None = None
    error: TurnError | None = None  # the reply is then an apology
    replayed: bool = False  # the first reply to a redelivered message_id
    coalesced: bool = False  # a later message of the same burst gets the reply; this one none
    handoff: str | None = None  # request_human's reason: a person takes over from here
    paused: bool = False  # a person has the conversation: nothing is sent (`reply` is "")

    def to_dict(self) -> dict[str, Any]:
        """As remembered for redelivery (see `SessionStore.remember_reply`)."""
        data: dict[str, Any] = {
            "reply": self.reply,
            "url": self.url,
            "error": self.error,
            "handoff": self.handoff,
            "paused": self.paused,
        }
        if self.coalesced:
            data["coalesced"] = True
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any], replayed: bool = False) -> TurnResult:
        return cls(
            data["reply"],
            data.get("url"),
            data.get("error"),
            replayed,
            bool(data.get("coalesced")),
            data.get("handoff"),
            bool(data.get("paused", False)),
        )
