"""Who writes the customer's messages: the case's lines, one per turn, or a simulated customer
(a model given a persona and a goal, which ends the conversation by writing `[FIN]`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from citas.agent.model import ChatModel
from citas.errors import CitasError, LLMUnavailable
from citas.evaluation.case import Case, SimulatedCustomerSpec
from citas.evaluation.text import fold
from citas.messages import Message

STOP_MARKER = "[FIN]"
KICKOFF = (
    "(Se abre el chat de WhatsApp del negocio. Escribe el primer mensaje que le mandas como "
    "cliente, según lo que quieres.)"
)
REPLY_FRAME = "La recepcionista te responde: «{reply}»\n\n(Escribe tu respuesta como cliente.)"
"""How the business's replies reach the customer model: framed, because a small model shown
the bare reply of an assistant tends to answer as one ("¿En qué puedo ayudarte?")."""


class CustomerModelFailed(CitasError):
    """The model playing the customer did not answer: the run cannot go on, and it is not the
    receptionist's fault, so the report says whose model failed."""


@dataclass(frozen=True, slots=True)
class Exchange:
    """One turn as the customer saw it: what they wrote and what the business answered."""

    customer: str
    reply: str


class Customer(Protocol):
    async def next_message(self, exchanges: Sequence[Exchange]) -> str | None:
        """The next message, or None when the customer is done."""
        ...


CONFIRM_AGAIN = "Sí, confirmo."


class ScriptedCustomer:
    """The case's lines, one per turn. A customer who came to book (`confirm_again`) and whose
    lines are used up answers one more question to confirm, as a person would: a model that
    asks "¿confirmo?" in words before calling create_booking gets the service's summary to
    confirm after the customer's "sí", and the customer says yes to that too."""

    def __init__(self, lines: Sequence[str], confirm_again: str | None = None) -> None:
        self.lines = list(lines)
        self.confirm_again = confirm_again

    async def next_message(self, exchanges: Sequence[Exchange]) -> str | None:
        turn = len(exchanges)
        if turn < len(self.lines):
            return self.lines[turn]
        asked = bool(exchanges) and asks_to_confirm(exchanges[-1].reply)
        if turn == len(self.lines) and self.confirm_again and asked:
            return self.confirm_again
        return None


def asks_to_confirm(reply: str) -> bool:
    """Whether the reply ends by asking the customer to confirm something."""
    question = reply.rsplit("¿", 1)[-1] if "¿" in reply else ""
    return "?" in question and "confirm" in fold(question)


class SimulatedCustomer:
    """A chat model in the customer's seat. It sees the conversation from that side: its own
    messages as `assistant`, the business's replies as `user`."""

    def __init__(
        self, spec: SimulatedCustomerSpec, model: ChatModel, *, business: str, timeout: float
    ) -> None:
        self.spec = spec
        self.model = model
        self.timeout = timeout
        self.system = customer_prompt(spec, business)

    async def next_message(self, exchanges: Sequence[Exchange]) -> str | None:
        if len(exchanges) >= self.spec.max_turns:
            return None
        if not exchanges and self.spec.first_message:
            return self.spec.first_message
        try:
            answer = await self.model.complete(self.messages(exchanges), [], timeout=self.timeout)
        except LLMUnavailable as exc:
            raise CustomerModelFailed(f"the simulated customer's model failed: {exc}") from exc
        text = (answer.text or "").strip()
        if not text or STOP_MARKER in text:
            return None  # a farewell with the marker is not sent: the conversation is over
        return text

    def messages(self, exchanges: Sequence[Exchange]) -> list[Message]:
        messages: list[Message] = [
            {"role": "system", "content": self.system},
            {"role": "user", "content": KICKOFF},
        ]
        for exchange in exchanges:
            messages.append({"role": "assistant", "content": exchange.customer})
            messages.append({"role": "user", "content": REPLY_FRAME.format(reply=exchange.reply)})
        return messages


def customer_prompt(spec: SimulatedCustomerSpec, business: str) -> str:
    return (
        f"Eres un cliente que escribe por WhatsApp a «{business}». No eres un asistente: eres "
        "la persona que quiere ser atendida, y el otro lado del chat es la recepcionista.\n\n"
        f"Quién eres: {spec.persona}\n"
        f"Lo que quieres: {spec.goal}\n\n"
        "Reglas:\n"
        "- Escribe solo tu siguiente mensaje: corto, en español de Perú, como en un chat. Nunca "
        "hables como la recepcionista ni ofrezcas ayuda: tú eres quien la pide.\n"
        "- Cuando te pidan tus datos (nombre completo, correo), dalos tal como figuran arriba.\n"
        "- No inventes otros datos ni cambies de objetivo.\n"
        f"- Cuando tu objetivo esté cumplido, o ya no se pueda cumplir, escribe solo {STOP_MARKER}."
    )


def customer_for(case: Case, model: ChatModel | None, *, timeout: float) -> Customer:
    """The case's lines, or its simulated customer played by `model`."""
    if case.lines is not None:
        wants_booking = bool(case.expect.bookings)
        return ScriptedCustomer(case.lines, CONFIRM_AGAIN if wants_booking else None)
    assert case.simulated_customer is not None  # the case's validator requires one of them
    if model is None:
        raise ValueError("this case has a simulated customer: it needs a model to play it")
    return SimulatedCustomer(
        case.simulated_customer, model, business=case.business_data().nombre, timeout=timeout
    )
