"""Steps the loop takes itself when the customer clearly asked for them and the model did not.

A bare «sí» to a proposed booking books it. With `CITAS_CONFIRM_BEFORE_BOOKING` the customer is
shown the exact summary (slot, name, email) and asked to confirm; the second `create_booking` is
then a formality, and it is the step small models miss most: they answer «Sí, confírmala» with
the summary again, or an apology, and the customer leaves without the appointment they
confirmed. So when the customer's whole message is a yes, a booking awaits it
(`BookingLedger.awaiting`) and the model's turn made no booking and no new proposal, the loop
makes that call itself, through the same tool and rules. Anything more than a yes ("sí, pero a
las 5", "déjame pensarlo") is left to the model.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from citas.customer_words import fold
from citas.domain import LOCAL_FORMAT
from citas.messages import ToolCallRequest

# Every word of the message must be one of these, and one of them a yes.
_YES_WORDS = (
    "si sii sip siii yes ok okay oki dale claro listo perfecto correcto exacto adelante hazlo "
    "confirmo confirma confirmala confirmalo confirmar confirmado confirmada acuerdo reservala "
    "reservalo agendala agendalo va"
)
_OTHER_WORDS = (
    "de por favor porfa porfis gracias muchas mil ya bueno bien esta eso es asi genial super "
    "excelente la lo me te nomas parece"
)
_YES = frozenset(_YES_WORDS.split())
_ALSO = frozenset(_OTHER_WORDS.split())
_WORD = re.compile(r"[a-z]+")


def is_bare_yes(messages: Iterable[str]) -> bool:
    """Whether the customer's message(s) of the turn say yes and nothing else."""
    words = [w for message in messages for w in _WORD.findall(fold(message))]
    allowed = all(w in _YES or w in _ALSO for w in words)
    return allowed and any(w in _YES for w in words)


def confirming_arguments(awaiting: dict[str, Any]) -> dict[str, str]:
    """The `create_booking` arguments that confirm the awaiting booking, as the model would
    write them (the turn's note shows them; `booking_call` sends them)."""
    start = datetime.strptime(str(awaiting["slot"]), LOCAL_FORMAT)
    arguments = {
        "date": f"{start:%Y-%m-%d}",
        "time": f"{start:%H:%M}",
        "customer_name": awaiting.get("name"),
        "customer_email": awaiting.get("email"),
        "service": awaiting.get("service"),
    }
    return {name: str(value) for name, value in arguments.items() if value}


def booking_call(awaiting: dict[str, Any]) -> ToolCallRequest:
    arguments = json.dumps(confirming_arguments(awaiting), ensure_ascii=False)
    return ToolCallRequest(f"call_yes_{uuid.uuid4().hex[:12]}", "create_booking", arguments)
