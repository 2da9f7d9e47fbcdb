"""The agent's turn: an explicit tool-calling loop, short enough to read in one sitting.

handle():   hold the conversation, reading its history and any reply already given to the message
            (a redelivery is answered with that) → run_turn → one write that saves the history,
            remembers the reply and lets the conversation go (`SessionStore.turn`)
run_turn(): take the history → build messages → call the model → run its tool calls concurrently →
            feed the results back → repeat until it answers with text (or the round limit) →
            check the answer against what the turn did (`reply_guard`), which may ask the model
            once more or replace the answer.

History holds what the customer was sent: the guarded reply, never an empty or corrected one, and
none of the guard's corrective messages. The clock note is not kept (it is sent each turn).

What happens along the way is told as run events (`citas/agent/events.py`) to the agent's
listeners (metrics, logs) and to the turn's own (a stream, a harness).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractContextManager, asynccontextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Literal

import structlog

from citas.agent.events import (
    AnswerText,
    EventSink,
    ModelCallFinished,
    ModelCallStarted,
    RunListener,
    TurnEvents,
    TurnFinished,
)
from citas.agent.follow_through import (
    availability_call,
    booking_call,
    day_named_alone,
    denies,
    is_bare_yes,
    is_bare_yes_to,
    mentions_day_or_time,
    named_when,
    proposed_change,
    wanted_data,
)
from citas.agent.model import ChatModel, ModelReply
from citas.agent.prompt import PromptBuilder
from citas.agent.reply_format import ReplyFormat, format_reply
from citas.agent.reply_guard import EMPTY_REPLY, NOT_DONE, ReplyGuard, fallback_reply, record
from citas.agent.tools import ToolRegistry, TurnContext
from citas.agent.tools.handoff import handoff_label, handoff_reply
from citas.agent.turn import TurnError, TurnRequest, TurnResult
from citas.agent.turn_note import conversation_note
from citas.clock import Clock
from citas.conversation import Conversation
from citas.domain import ConversationKey
from citas.errors import BackendError, ContextTooLong, LLMUnavailable, StoreUnavailable
from citas.messages import (
    Message,
    SystemMessage,
    ToolCallRequest,
    UserMessage,
    assistant_message,
    system_message,
    tool_message,
    user_message,
)
from citas.metrics import HANDOFFS, PAUSED_MESSAGES, SWALLOWED_ERRORS
from citas.services.business import BusinessDirectory
from citas.store.base import HeldTurn, SessionStore

log = structlog.get_logger("citas.agent")

LLM_APOLOGY = (
    "Disculpa, en este momento no puedo responder. Por favor, escríbeme de nuevo en unos minutos."
)
BACKEND_APOLOGY = (
    "Disculpa, nuestro sistema de reservas no responde en este momento. "
    "Por favor, inténtalo de nuevo en unos minutos."
)
ROUND_LIMIT_REPLY = NOT_DONE
MAX_REPEATED_CALLS = 2  # identical tool calls in one turn before it ends with what it knows

ClockRole = Literal["system", "user"]

__all__ = ["EMPTY_REPLY", "Agent"]


@dataclass
class _Turn:
    """The turn in progress: its messages, what its tools did, and where its events go."""

    messages: list[Message]
    context: TurnContext
    emit: EventSink
    bookings_before: frozenset[str]
    clock_note: Message
    """The clock note as sent: a system message, or the customer's first message with the note at
    its start (`CITAS_CLOCK_ROLE`). Made once per turn, so every call of the turn sends the same
    object and the request encoder serializes it once."""
    awaiting: dict[str, Any] | None = None
    """The booking awaiting the customer's yes when the turn began (`follow_through`)."""
    previous: Sequence[Message] = ()
    """The messages of the previous turn: what it put to the customer (`proposed_change`)."""
    wanted: dict[str, Any] | None = None
    """The slot the customer wanted when the turn began (`BookingLedger.wanted`)."""
    tool_rounds: int = 0
    final: str | None = None
    corrected: bool = False
    checked_for_customer: bool = False
    scratch: set[int] = field(default_factory=set)
    """ids of messages sent to the model but not kept: the guard's corrections."""

    def kept_messages(self) -> list[Message]:
        return [m for m in self.messages if id(m) not in self.scratch]


@dataclass
class _Ending:
    """What a turn leaves for the one write that ends it (`HeldTurn.finish`)."""

    save: bool = False
    booked: bool = False
    """A booking was made: the customer must hear of it even if that write fails."""


@asynccontextmanager
async def _entered(factory: Callable[[], AbstractContextManager[object]]) -> AsyncIterator[None]:
    with factory():
        yield


class Agent:
    def __init__(
        self,
        *,
        model: ChatModel,
        tools: ToolRegistry,
        prompts: PromptBuilder,
        store: SessionStore,
        directory: BusinessDirectory,
        clock: Clock,
        max_tool_rounds: int,
        history_max_messages: int,
        turn_deadline_seconds: float,
        guard: ReplyGuard,
        history_max_tokens: int = 6000,
        handoff_ttl_seconds: float = 86400.0,
        clock_role: ClockRole = "system",
        reply_format: ReplyFormat = "whatsapp",
        coalesce_seconds: float = 0.0,
        listeners: Sequence[RunListener] = (),
    ) -> None:
        self.model = model
        self.tools = tools
        self.prompts = prompts
        self.store = store
        self.directory = directory
        self.clock = clock
        self.max_tool_rounds = max_tool_rounds
        self.history_max_messages = history_max_messages
        self.history_max_tokens = history_max_tokens
        self.turn_deadline_seconds = turn_deadline_seconds
        self.handoff_ttl_seconds = handoff_ttl_seconds
        self.guard = guard
        self.clock_role = clock_role
        self.reply_format: ReplyFormat = reply_format
        self.coalesce_seconds = coalesce_seconds
        """`CITAS_COALESCE_MS`: messages of a conversation within this of each other, or while
        an earlier turn of it runs, are answered as one turn (0: each its own turn)."""
        self.listeners: list[RunListener] = list(listeners)
        """Told every turn's events; add to it to observe every turn (the harness does)."""

    async def handle(
        self,
        request: TurnRequest,
        listener: RunListener | None = None,
        *,
        admit: Callable[[], AbstractContextManager[object]] = nullcontext,
    ) -> TurnResult:
        """Run one customer message, one at a time per conversation, at most once per id.
        `listener` gets this turn's events besides the agent's listeners; a redelivered
        message's first reply is only returned. `admit` is entered once the conversation is
        held (a message waiting for it is not a turn in flight) and may refuse it."""
        key = request.key
        if self.coalesce_seconds > 0:
            return await self._coalesced(request, listener, admit)
        async with self.store.turn(key, request.message_id) as held, _entered(admit):
            if held.earlier_reply is not None:
                return _replayed(request.message_id, held.earlier_reply)
            return await self._answer_turn(request, listener, held)

    async def _answer_turn(
        self,
        request: TurnRequest,
        listener: RunListener | None,
        held: HeldTurn,
        answered: int = 0,
    ) -> TurnResult:
        """Run the turn (the conversation is held), then save it, remember its reply for its
        message id and drop the `answered` burst messages, in the write that ends the turn."""
        listeners = self.listeners if listener is None else [*self.listeners, listener]
        ending = _Ending()
        result = await self._timed_turn(request, TurnEvents(request, listeners), held, ending)
        # Failed turns are not remembered: a redelivery should get a real try.
        remember = request.message_id and result.error is None
        await self._end_turn(
            request.key, held, ending, result.to_dict() if remember else None, answered
        )
        return result

    async def _coalesced(
        self,
        request: TurnRequest,
        listener: RunListener | None,
        admit: Callable[[], AbstractContextManager[object]],
    ) -> TurnResult:
        """One turn for a burst: each message joins the conversation's burst in the store, waits
        the window, then takes the conversation. The burst's last message answers them all, in
        arrival order; the others are answered `coalesced` (no reply). Through the store, so
        several instances share a burst; a redelivered message id joins it once."""
        key, message_id = request.key, request.message_id
        # A redelivery of a message still in the burst (its first request waits, or its turn
        # failed before answering) takes that place instead of joining twice.
        entry = {"id": uuid.uuid4().hex, "message": request.message, "message_id": message_id}
        place = await self.store.join_burst(key, message_id, entry)
        if place.earlier_reply is not None:
            return _replayed(message_id, place.earlier_reply)
        entry, joined = place.entry, place.joined
        await asyncio.sleep(self.coalesce_seconds)
        async with self.store.turn(key, message_id, burst=True) as held, _entered(admit):
            if held.earlier_reply is not None:
                return _replayed(message_id, held.earlier_reply)
            burst = held.burst
            ids = [e.get("id") for e in burst]
            if not ids or ids[-1] != entry["id"]:
                # A later message answers this one (or already has): nothing to send for it.
                result = TurnResult("", coalesced=True)
                remember = message_id and joined
                await self._end_turn(key, held, _Ending(), result.to_dict() if remember else None)
                log.info("message_coalesced", message_id=message_id)
                return result
            earlier_messages = tuple(str(e.get("message") or "") for e in burst[:-1])
            if earlier_messages:
                log.info("burst_answered", messages=len(burst))
            whole = TurnRequest(
                request.tenant, request.session_id, request.message, message_id, earlier_messages
            )
            # Dropped with the turn's write: a turn that raised (a 503) leaves them for the retry.
            return await self._answer_turn(whole, listener, held, answered=len(burst))

    async def _end_turn(
        self,
        key: ConversationKey,
        held: HeldTurn,
        ending: _Ending,
        reply: dict[str, Any] | None,
        answered: int = 0,
    ) -> None:
        """The one write that ends a held turn; when the store fails it, the turn fails only
        if nothing is lost by a retry."""
        try:
            await held.finish(
                conversation=held.conversation if ending.save else None,
                reply=reply,
                answered=answered,
            )
        except StoreUnavailable:
            if ending.save and not ending.booked:
                raise  # nothing happened outside citas: a 503, and the gateway's retry redoes it
            if ending.save:
                # A booking was made: the customer must hear of it even though history is lost
                # (a retry would find the slot taken, by this very booking).
                SWALLOWED_ERRORS.labels(where="store_save_after_booking").inc()
                log.error("turn_not_saved_after_booking", conversation=str(key))
            else:
                # Only the reply was to be remembered: answering beats a 503 whose retry would
                # run the turn again.
                SWALLOWED_ERRORS.labels(where="remember_reply").inc()
                log.error("reply_not_remembered")

    async def _timed_turn(
        self, request: TurnRequest, emit: EventSink, held: HeldTurn, ending: _Ending
    ) -> TurnResult:
        start = time.perf_counter()
        result: TurnResult | None = None
        try:
            result = await self.run_turn(request, emit, held, ending)
            return result
        finally:
            outcome = "exception" if result is None else (result.error or "ok")
            emit(TurnFinished(outcome, time.perf_counter() - start, result))

    async def run_turn(
        self, request: TurnRequest, emit: EventSink, held: HeldTurn, ending: _Ending
    ) -> TurnResult:
        """The turn on the held conversation, which it changes in place; `ending` says what
        the turn's closing write must save."""
        tenant, key = request.tenant, request.key
        deadline = time.monotonic() + self.turn_deadline_seconds
        conversation = held.conversation
        if conversation.paused_until is not None:
            if conversation.is_paused(self.clock().timestamp()):
                return self._while_paused(conversation, request.message, ending)
            conversation.resume()  # the handoff expired: the assistant answers again
        try:
            info = await self.directory.get(tenant.id_empresa)
        except BackendError as exc:
            SWALLOWED_ERRORS.labels(where="business_info").inc()
            log.warning("turn_failed", error_code="backend_unavailable", error=str(exc))
            return TurnResult(BACKEND_APOLOGY, error="backend_unavailable")
        last_reply = conversation.last_reply()
        conversation.trim(self.history_max_messages)
        conversation.trim_to_tokens(self.history_max_tokens)
        for message in request.messages:
            conversation.customer.add(message)
        system = self.prompts.system_message(tenant, info)
        now = self.clock().astimezone(tenant.zone)
        said_now = tuple(request.messages)
        context = TurnContext(
            tenant,
            key,
            conversation.ledger,
            conversation.customer,
            today=now.date(),
            turn_id=uuid.uuid4().hex,
            offerings=info.services,
            faqs=info.faqs,
            business_context=info.context,
            hours=info.hours,
            said=said_now,
            last_reply=last_reply,
        )
        said = [user_message(message) for message in request.messages]
        turn = _Turn(
            messages=list[Message](said),
            context=context,
            emit=emit,
            bookings_before=conversation.ledger.booking_keys(),
            awaiting=conversation.ledger.awaiting,
            previous=conversation.turns[-1] if conversation.turns else (),
            wanted=conversation.ledger.wanted,
            clock_note=self._clock_note(
                self.prompts.clock_message(now), conversation_note(conversation, tenant), said[0]
            ),
        )
        # After `turn.wanted`: a slot chosen in this very message may be proposed on its data.
        self._choose_wanted(conversation, said_now, context.today)
        try:
            await self._rounds(system, conversation, turn, deadline)
        except Exception as exc:
            if not isinstance(exc, LLMUnavailable):
                if not context.booked:
                    raise
                # Anything failing once a booking is made (a malformed model answer, a bug):
                # the customer hears of the booking with a 200, never a 500 whose retry
                # would find the slot taken.
                SWALLOWED_ERRORS.labels(where="after_booking").inc()
                log.exception("turn_failed_after_booking")
            SWALLOWED_ERRORS.labels(where="llm").inc()
            log.warning("turn_failed", error_code="llm_unavailable", error=str(exc))
            # A booking made before the model failed is told all the same.
            reply = context.booked[-1].confirmation if context.booked else LLM_APOLOGY
            reply = format_reply(reply, self.reply_format)
            if turn.tool_rounds:
                # Tools may have booked: keep what happened, closed by what the customer got.
                turn.messages.append(assistant_message(reply))
                self._keep(conversation, turn, ending)
            emit(AnswerText(reply))
            return TurnResult(reply, context.booking_url, "llm_unavailable")
        if context.handoff is not None:
            conversation.pause(context.handoff, self.clock().timestamp() + self.handoff_ttl_seconds)
            HANDOFFS.labels(reason=handoff_label(context.handoff)).inc()
            log.info("conversation_handed_off", reason=context.handoff)
        self._keep(conversation, turn, ending)
        error: TurnError | None = "backend_unavailable" if context.backend_failed else None
        return TurnResult(
            turn.final or EMPTY_REPLY, context.booking_url, error, handoff=context.handoff
        )

    def _while_paused(
        self, conversation: Conversation, message: str, ending: _Ending
    ) -> TurnResult:
        """A person has the conversation: the message joins the history, unanswered."""
        conversation.customer.add(message)
        conversation.turns.append([user_message(message)])
        ending.save = True
        PAUSED_MESSAGES.inc()
        log.info("message_while_paused")
        return TurnResult("", paused=True)

    async def _rounds(
        self, system: SystemMessage, conversation: Conversation, turn: _Turn, deadline: float
    ) -> None:
        history = conversation.messages()
        shrunk = False
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise LLMUnavailable("turn deadline exceeded", "deadline")
            try:
                reply = await self._call_model(
                    self._request(system, history, turn), turn, remaining
                )
            except ContextTooLong:
                # The estimate missed this endpoint's context: every later request would fail
                # the same way, so shorter history once, then give up as unavailable.
                if shrunk or not conversation.shrink_after_context_error():
                    raise
                shrunk = True
                SWALLOWED_ERRORS.labels(where="llm_context_length").inc()
                log.warning("history_shrunk_after_context_error", turns=len(conversation.turns))
                history = conversation.messages()
                continue
            if not reply.tool_calls:
                if (
                    await self._booked_on_yes(turn)
                    or await self._changed_on_yes(turn)
                    or await self._proposed_on_data(turn)
                ):
                    return
                if await self._checked_when_asked(turn) or not self._answer(reply, turn):
                    continue
                return
            turn.messages.append(assistant_message(reply.text, reply.tool_calls))
            results = await self.tools.run_all(turn.context, reply.tool_calls, turn.emit)
            turn.messages.extend(
                tool_message(call.id, content)
                for call, content in zip(reply.tool_calls, results, strict=True)
            )
            turn.tool_rounds += 1
            if turn.context.handoff is not None:
                # A person takes over: the turn ends with the handoff's own short message.
                self._finish(turn, handoff_reply(turn.context))
                return
            if turn.context.repeats >= MAX_REPEATED_CALLS:
                log.warning("tool_calls_repeated", repeats=turn.context.repeats)
                await self._checked_when_asked(turn)
                self._finish(turn, fallback_reply(turn.context))
                return
            if turn.tool_rounds >= self.max_tool_rounds:
                log.warning("tool_round_limit", rounds=turn.tool_rounds)
                checked = await self._checked_when_asked(turn)
                facts = turn.context.booked or turn.context.pending or checked
                self._finish(turn, fallback_reply(turn.context) if facts else ROUND_LIMIT_REPLY)
                return

    def _choose_wanted(self, conversation: Conversation, said: Sequence[str], today: date) -> None:
        """The slot the customer's message names becomes the wanted one (`BookingService.choose`).
        Only a message that may name a day or a time, or a conversation that was shown slots,
        has one to choose or drop: most turns skip reading the message for them."""
        ledger = conversation.ledger
        if not (ledger.verified_slots or ledger.wanted is not None or mentions_day_or_time(said)):
            return
        day, at = named_when(said, today, lambda: _customer_lines(conversation))
        if day is None and at is not None and not ledger.shown_at(at):
            # «para mañana», then «a las 10»: one thing per message, as on WhatsApp. A time that
            # picks a slot already shown needs no day.
            earlier = _customer_lines(conversation)
            day = day_named_alone(earlier[-1] if earlier else None, today)
        self.tools.services.booking.choose(ledger, day, at, asking=not denies(said))

    async def _booked_on_yes(self, turn: _Turn) -> bool:
        """When the customer's whole message is a yes to the booking awaiting it and the model
        answered without making it, make it (`follow_through`); True once the turn has its reply:
        the booking's confirmation, or why it could not be made."""
        ctx, awaiting = turn.context, turn.awaiting
        if (
            awaiting is None
            or ctx.booked
            or ctx.pending is not None
            or ctx.ledger.awaiting != awaiting
            or not is_bare_yes(ctx.said)
        ):
            return False
        await self._call_for_customer(turn, booking_call(awaiting))
        self._follow_through(turn, "booked_on_yes" if ctx.booked else "not_booked_on_yes")
        return True

    async def _changed_on_yes(self, turn: _Turn) -> bool:
        """When the customer's whole message is a yes to the cancellation or new slot the last
        turn put to them and the model answered without making it, make it; True once the turn
        has its reply. Seen with a 1.5B model (case 39): «Sí, cancélala» answered with an FAQ,
        and the appointment stayed."""
        ctx = turn.context
        if ctx.results:
            return False
        # Read only here, on an answer without tools: most turns never need it.
        call = proposed_change(turn.previous)
        if call is None or not is_bare_yes_to(call, ctx.said):
            return False
        await self._call_for_customer(turn, call)
        self._follow_through(turn, "changed_on_yes")
        return True

    async def _proposed_on_data(self, turn: _Turn) -> bool:
        """When the customer sent their data for the slot they asked for and the model answered
        without proposing it, propose it (`follow_through`); True once the turn has its reply:
        the summary to confirm, or why it could not be proposed."""
        ctx = turn.context
        wanted = ctx.ledger.wanted
        if (
            wanted is None
            or ctx.booked
            or ctx.pending is not None
            or ctx.ledger.awaiting is not None
            or (wanted == turn.wanted and mentions_day_or_time(ctx.said))
        ):
            return False
        data = wanted_data(ctx.said, ctx.customer, email_required=ctx.tenant.email_required)
        if data is None:
            return False
        await self._call_for_customer(turn, booking_call({**wanted, **data}))
        self._follow_through(turn, "proposed_on_data" if ctx.pending else "not_proposed_on_data")
        return True

    async def _checked_when_asked(self, turn: _Turn) -> bool:
        """When the customer's message named a day and a time (`BookingLedger.wanted`, chosen
        this turn and never shown) and the model answered without any tool, check that slot as
        the model should have, and let the model answer again knowing the result; True when it
        did. Seen with a 1.5B model: «¿tienen algo hoy a las 4 de la tarde?» answered «no
        tengo información suficiente», and «quiero uno el jueves a las 6 de la tarde» with «no
        recibí ninguna respuesta del cliente». Also after tool calls that all failed (their
        arguments refused): they established nothing; and when the turn stops on repeated
        calls or the round limit, whose reply then tells what the check found (seen with a
        1.5B model, case 04: «pasado mañana al mediodía» checked three times for the wrong
        day, then «no logré completar tu solicitud»). Once a turn."""
        ctx = turn.context
        wanted = ctx.ledger.wanted
        if (
            turn.checked_for_customer
            # A failed call (a time it could not write, another day) found nothing either.
            or any(r.ok for r in ctx.results)
            or wanted is None
            or wanted == turn.wanted
            or ctx.ledger.is_verified(wanted["slot"])
        ):
            return False
        turn.checked_for_customer = True
        await self._call_for_customer(turn, availability_call(wanted))
        record(["checked_on_ask"])
        log.info("reply_guarded", actions=["checked_on_ask"])
        return True

    async def _call_for_customer(self, turn: _Turn, call: ToolCallRequest) -> None:
        """Make a call the model should have made; it joins the turn's history as the model's."""
        content = await self.tools.dispatch(turn.context, call, turn.emit)
        turn.messages += [assistant_message(None, [call]), tool_message(call.id, content)]

    def _follow_through(self, turn: _Turn, action: str) -> None:
        record([action])
        log.info("reply_guarded", actions=[action])
        self._finish(turn, fallback_reply(turn.context))

    def _request(self, system: SystemMessage, history: list[Message], turn: _Turn) -> list[Message]:
        """What the model is sent: the stable prefix (prompt, history), then this turn with the
        clock note as a system message or at the start of the customer's message."""
        if self.clock_role == "system":
            return [system, *history, turn.clock_note, *turn.messages]
        return [system, *history, turn.clock_note, *turn.messages[1:]]

    def _clock_note(self, clock: str, state: str, first: UserMessage) -> Message:
        """The turn's note: the clock, then where the conversation stands (`turn_note`)."""
        note = f"{clock}\n\n{state}" if state else clock
        if self.clock_role == "system":
            return system_message(note)
        return user_message(f"{note}\n\n{first['content']}")

    def _answer(self, reply: ModelReply, turn: _Turn) -> bool:
        """Check the model's answer; True once the turn has its final reply, False when the
        guard asked the model once more (its correction is then in the request, not history)."""
        checked = self.guard.check(
            reply.text,
            reply.finish_reason,
            turn.context,
            may_retry=not turn.corrected,
        )
        record(checked.actions)
        if checked.actions:
            log.info("reply_guarded", actions=checked.actions)
        if checked.correction is None:
            self._finish(turn, checked.text)
            return True
        turn.corrected = True
        scratch: list[Message] = []
        if checked.text and reply.finish_reason != "length":
            scratch.append(assistant_message(checked.text))
        scratch.append(user_message(checked.correction))
        turn.messages.extend(scratch)
        turn.scratch.update(id(m) for m in scratch)
        return False

    def _finish(self, turn: _Turn, reply: str) -> None:
        # After the guard, before saving and sending: history holds what the customer got.
        reply = format_reply(reply, self.reply_format)
        turn.messages.append(assistant_message(reply))
        turn.final = reply
        turn.emit(AnswerText(reply))

    async def _call_model(self, messages: list[Message], turn: _Turn, timeout: float) -> ModelReply:
        """One model call, told as a started and a finished event whatever its end."""
        emit, number = turn.emit, turn.tool_rounds
        emit(ModelCallStarted(number, len(messages)))
        start = time.perf_counter()
        outcome, reply = "error", None
        try:
            schemas = self.tools.schemas_for(turn.context.tenant)
            reply = await self.model.complete(messages, schemas, timeout=timeout)
            outcome = "ok"
            return reply
        except LLMUnavailable as exc:
            outcome = exc.outcome
            raise
        except asyncio.CancelledError:
            outcome = "cancelled"
            raise
        finally:
            seconds = time.perf_counter() - start
            emit(
                ModelCallFinished(
                    number, self.model.name, len(messages), outcome, start, seconds, reply
                )
            )

    def _keep(self, conversation: Conversation, turn: _Turn, ending: _Ending) -> None:
        """The turn joins the history, to be saved by the write that ends it."""
        conversation.turns.append(turn.kept_messages())
        ending.save = True
        ending.booked = not conversation.ledger.booking_keys() <= turn.bookings_before


def _customer_lines(conversation: Conversation) -> list[str]:
    """What the customer wrote in the turns kept, oldest first."""
    return [m["content"] for m in conversation.messages() if m["role"] == "user"]


def _replayed(message_id: str | None, earlier: dict[str, Any]) -> TurnResult:
    log.info("message_redelivered", message_id=message_id)
    return TurnResult.from_dict(earlier, replayed=True)
