"""The Redis store: conversations, replies and turn order shared by several citas instances.

Key layout (`P` is `CITAS_REDIS_PREFIX`, `N` the conversation schema version, `E` the
business id, `S` and `M` the session and message ids percent-encoded, so `:`, `{` and `}` in
them cannot make two conversations share a key). `{E:S}` is a Redis Cluster hash tag: every
key of one conversation lives on one slot, so the lock scripts may touch them together.

    P:vN:{E:S}:conv       string  the conversation (`Conversation.to_dict()` JSON, with "v")
    P:vN:{E:S}:reply:M    string  the first reply given to channel message M (dedupe)
    P:vN:{E:S}:intent:K   string  a booking about to be sent with idempotency key K
    P:vN:{E:S}:lock       string  the random token of the turn holding the conversation
    P:vN:{E:S}:queue      zset    waiting tokens, scored by ticket number (arrival order)
    P:vN:{E:S}:ticket     string  the conversation's ticket counter (INCR)
    P:vN:{E:S}:alive      zset    waiting tokens, scored by heartbeat expiry (server ms)
    P:vN:{E:S}:burst      list    messages waiting to be answered as one turn (coalescing)

`conv`, `reply:*` and `intent:*` expire after `CITAS_SESSION_TTL_SECONDS` without use; the
lock after its TTL unless renewed by its live holder; the queue keys a minute after the last
waiter.
Changing the conversation schema changes `vN`, so old and new instances never read each
other's JSON.

A turn (`turn`) costs two round trips: `_ACQUIRE` holds the conversation and reads what the
turn needs (the reply already given to its message, the conversation, the burst), `_FINISH`
writes what it did and releases the lock.
"""

from __future__ import annotations

import asyncio
import collections
import json
import secrets
from collections.abc import AsyncIterator, Awaitable, Coroutine, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import quote

import structlog
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.typing import EncodableT

from citas.conversation import SCHEMA_VERSION, Conversation
from citas.domain import ConversationKey
from citas.errors import Overloaded, StoreUnavailable
from citas.metrics import STORE_ERRORS, SWALLOWED_ERRORS
from citas.store.base import BurstPlace

log = structlog.get_logger("citas.store")

T = TypeVar("T")

_UNAVAILABLE = "el almacén de conversaciones no responde; reintente en unos segundos"
_BUSY = "la conversación está ocupada; reintente en unos segundos"
_HEARTBEAT_MS = 5_000  # a waiter that stops polling this long loses its place in line
_QUEUE_IDLE_MS = 60_000
_POLL_FIRST, _POLL_MAX = 0.005, 0.05
_RELEASE_AGAIN_SECONDS = 1.0
# What `_ACQUIRE` reads once the lock is won, and what it answers.
_READ_NOTHING, _READ_CONVERSATION, _READ_CONVERSATION_AND_BURST = "0", "1", "2"
_WAITING, _HELD, _ANSWERED = 0, 1, 2
_IN_BURST = 0  # `_JOIN_BURST`: a redelivery found its message waiting in the burst already

# Take the conversation when it is free and this token is first in line (SET NX PX); else
# join the line (once: a retried call keeps its ticket) and refresh this waiter's heartbeat.
# Waiters at the head whose heartbeat lapsed (crashed, gave up without cleaning) are dropped,
# so a dead waiter cannot block the line; a dead holder's lock simply expires.
# In the same round trip, what a turn reads first: a message answered already (its reply is
# written with the release, so its turn has ended) leaves the line with that reply and takes
# no lock; a turn that wins the lock gets the conversation (its TTL refreshed, as GETEX) and,
# for a coalescing turn, the burst.
# KEYS: lock, queue, ticket, alive, conv, reply, burst.
# ARGV: token, lock_ttl_ms, heartbeat_ms, idle_ms, message_id ('' none), session_ttl_s,
#       reads ('0' nothing: a plain lock, '1' the conversation, '2' it and the burst).
# Returns {0} still waiting, {1, conv or nil, burst} held, {2, reply} answered already.
_ACQUIRE = """
local token = ARGV[1]
if ARGV[5] ~= '' then
  local earlier = redis.call('GET', KEYS[6])
  if earlier then
    redis.call('ZREM', KEYS[2], token)
    redis.call('ZREM', KEYS[4], token)
    if redis.call('GET', KEYS[1]) == token then redis.call('DEL', KEYS[1]) end
    return {2, earlier}
  end
end
if redis.call('GET', KEYS[1]) ~= token then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  if not redis.call('ZSCORE', KEYS[2], token) then
    redis.call('ZADD', KEYS[2], redis.call('INCR', KEYS[3]), token)
  end
  redis.call('ZADD', KEYS[4], now + tonumber(ARGV[3]), token)
  local head = redis.call('ZRANGE', KEYS[2], 0, 0)[1]
  while head ~= token do
    if tonumber(redis.call('ZSCORE', KEYS[4], head) or '0') > now then break end
    redis.call('ZREM', KEYS[2], head)
    redis.call('ZREM', KEYS[4], head)
    head = redis.call('ZRANGE', KEYS[2], 0, 0)[1]
  end
  for i = 2, 4 do redis.call('PEXPIRE', KEYS[i], ARGV[4]) end
  if head ~= token or not redis.call('SET', KEYS[1], token, 'NX', 'PX', ARGV[2]) then
    return {0}
  end
  redis.call('ZREM', KEYS[2], token)
  redis.call('ZREM', KEYS[4], token)
end
local conv, burst = false, {}
if ARGV[7] ~= '0' then
  conv = redis.call('GET', KEYS[5])
  if conv then redis.call('EXPIRE', KEYS[5], ARGV[6]) end
end
if ARGV[7] == '2' then burst = redis.call('LRANGE', KEYS[7], 0, -1) end
return {1, conv, burst}
"""

# Leave the line and, only if this token holds the lock, free it (compare-and-delete).
# KEYS: lock, queue, alive. ARGV: token. Returns 1 when the lock was this token's.
_RELEASE = """
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
"""

# End a turn in one round trip: its writes, then the release above. Saving and remembering do
# not depend on still holding the lock (as when they were separate commands); the result says
# whether the lock was still this token's.
# KEYS: lock, queue, alive, conv, reply, burst.
# ARGV: token, session_ttl_s, conversation ('' none), reply ('' none), burst entries answered.
_FINISH = (
    """
if ARGV[3] ~= '' then redis.call('SET', KEYS[4], ARGV[3], 'EX', ARGV[2]) end
if ARGV[4] ~= '' then redis.call('SET', KEYS[5], ARGV[4], 'EX', ARGV[2]) end
if ARGV[5] ~= '0' then redis.call('LTRIM', KEYS[6], ARGV[5], -1) end
"""
    + _RELEASE
)

# A message joins its conversation's burst, in one round trip with the checks that keep it
# there once: answered already ({2, reply}), or a redelivery of a message still waiting (that
# entry, {0, entry}); else it is appended ({1}). KEYS: reply, burst. ARGV: message_id ('' none),
# entry JSON, session_ttl_s.
_JOIN_BURST = """
if ARGV[1] ~= '' then
  local earlier = redis.call('GET', KEYS[1])
  if earlier then return {2, earlier} end
  for _, item in ipairs(redis.call('LRANGE', KEYS[2], 0, -1)) do
    local ok, entry = pcall(cjson.decode, item)
    if ok and type(entry) == 'table' and entry.message_id == ARGV[1] then return {0, item} end
  end
end
redis.call('RPUSH', KEYS[2], ARGV[2])
redis.call('EXPIRE', KEYS[2], ARGV[3])
return {1}
"""

# Extend the lock only while this token still holds it. KEYS: lock. ARGV: token, ttl_ms.
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""


@dataclass(frozen=True, slots=True)
class _Keys:
    conv: str
    lock: str
    queue: str
    ticket: str
    alive: str
    reply_prefix: str
    intent_prefix: str

    @classmethod
    def of(cls, prefix: str, key: ConversationKey) -> _Keys:
        base = f"{prefix}:v{SCHEMA_VERSION}:{{{key.id_empresa}:{quote(key.session_id, safe='')}}}"
        return cls(
            f"{base}:conv",
            f"{base}:lock",
            f"{base}:queue",
            f"{base}:ticket",
            f"{base}:alive",
            f"{base}:reply:",
            f"{base}:intent:",
        )

    def reply(self, message_id: str) -> str:
        return self.reply_prefix + quote(message_id, safe="")

    def intent(self, intent_key: str) -> str:
        return self.intent_prefix + quote(intent_key, safe="")

    @property
    def burst(self) -> str:
        return self.conv.removesuffix(":conv") + ":burst"


@dataclass(slots=True)
class _Holding:
    """One `_hold` of a conversation: its lock token and what the acquiring script read."""

    token: str
    found: list[Any]
    stop_renewing: asyncio.Event = field(default_factory=asyncio.Event)
    released: bool | None = False
    """True once `_FINISH` let the lock go (or nothing was held); None when a release was sent
    but Redis failed, so it may or may not have run."""


@dataclass(slots=True)
class _RedisTurn:
    """`HeldTurn` on Redis: read by the acquiring script, ended by `_FINISH` (one round trip
    each way)."""

    store: RedisSessionStore
    keys: _Keys
    message_id: str | None
    holding: _Holding
    conversation: Conversation
    earlier_reply: dict[str, Any] | None
    burst: list[dict[str, Any]]
    texts: _TurnTexts = field(default_factory=dict)

    async def finish(
        self,
        *,
        conversation: Conversation | None = None,
        reply: dict[str, Any] | None = None,
        answered: int = 0,
    ) -> None:
        store = self.store
        await store._finish_turn(
            self.keys,
            self.holding,
            message_id=self.message_id or "",
            conversation=""
            if conversation is None
            else store._conversation_payload(conversation, self.texts),
            reply="" if reply is None or not self.message_id else _json(reply),
            answered=answered,
        )


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


_TurnTexts = dict[int, tuple[list[Any], str]]
"""The JSON text each turn of a loaded conversation was read from, by the turn's `id()` (the
turn itself kept with it, so the id stays its own)."""
_TURNS_START = f'{{"v":{SCHEMA_VERSION},"turns":['
_DECODER = json.JSONDecoder()


def _encode_conversation(conversation: Conversation, texts: _TurnTexts) -> str:
    """`_json(conversation.to_dict())`, the same text, without encoding again the turns it was
    read with (`_decode_conversation`): saved turns never change (`Conversation.copy`), and
    re-encoding the whole history was a fifth of the Redis store's CPU per turn (issue 17)."""
    data = conversation.to_dict()
    del data["v"]  # SCHEMA_VERSION, in _TURNS_START
    parts = []
    for turn in data.pop("turns"):
        known = texts.get(id(turn))
        parts.append(known[1] if known is not None and known[0] is turn else _json(turn))
    rest = _json(data)  # the other fields, in to_dict's order after "v" and "turns"
    return _TURNS_START + ",".join(parts) + "]" + ("}" if rest == "{}" else "," + rest[1:])


def _decode_conversation(raw: str) -> tuple[Any, _TurnTexts]:
    """`json.loads(raw)`, and the text of each turn when `raw` is as `_encode_conversation`
    writes it (anything else, a hand-edited value say, is decoded whole, with no texts)."""
    if not raw.startswith(_TURNS_START):
        return json.loads(raw), {}
    try:
        turns, texts, at = [], {}, len(_TURNS_START)
        while raw[at] != "]":
            turn, end = _DECODER.raw_decode(raw, at)
            turns.append(turn)
            texts[id(turn)] = (turn, raw[at:end])
            at = end + 1 if raw[end] == "," else end
        rest = raw[at + 1 :]  # ',"verified_slots":…}'
        data = json.loads("{" + rest[1:]) if rest.startswith(",") else None
    except (ValueError, IndexError):
        data = None
    if not isinstance(data, dict) or "turns" in data or "v" in data:
        return json.loads(raw), {}  # not as written here: read whole, errors and all
    return {"v": SCHEMA_VERSION, "turns": turns, **data}, texts


def connect(url: str, timeout_seconds: float, max_connections: int = 10) -> Redis:
    """The Redis client of a process. The store and the rate limits do not send their commands
    through it: each builds a `Lane` (one pipelined connection) from its settings (address,
    credentials, database, decoding, timeouts). It sends only one-off commands itself
    (`citas doctor`), and for those it fails fast: socket timeouts, one quick retry, then an
    error. Its pool is small, bounded and blocking: past `max_connections` a command waits up to
    `timeout_seconds` for a free connection instead of failing at once."""
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=timeout_seconds,
        decode_responses=True,
        socket_timeout=timeout_seconds,
        socket_connect_timeout=timeout_seconds,
        health_check_interval=30,
        retry=Retry(ExponentialBackoff(cap=0.2, base=0.02), retries=1),
    )
    return Redis.from_pool(pool)


_RETRY_PAUSE = 0.02


def _pack(args: tuple[EncodableT, ...]) -> list[bytes]:
    """A command in RESP, as redis-py's `pack_command` writes it for our arguments (text, bytes,
    numbers) at a fifth of its CPU: it is a tenth of a turn's Redis cost (issue 17)."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        if isinstance(arg, str):
            data = arg.encode()
        elif isinstance(arg, bytes):
            data = arg
        elif isinstance(arg, int | float) and not isinstance(arg, bool):
            data = repr(arg).encode()
        else:
            raise TypeError(f"not a Redis argument: {type(arg).__name__}")
        parts += (b"$%d\r\n" % len(data), data, b"\r\n")
    return [b"".join(parts)]


class _Pipe:
    """One connection carrying many commands at once: each caller writes its command and waits
    for its reply; one reader task hands the replies out in the order the commands were written
    (Redis answers a connection's commands in order)."""

    def __init__(self, connection: AbstractConnection) -> None:
        self.connection = connection
        self.waiting: collections.deque[asyncio.Future[Any]] = collections.deque()
        self.writing = asyncio.Lock()  # a command's place in `waiting` is its place on the wire
        self.reader = asyncio.create_task(self._read())

    @property
    def broken(self) -> bool:
        return self.reader.done()

    async def send(self, packed: list[bytes]) -> Any:
        reply: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        async with self.writing:
            if self.broken:
                raise RedisConnectionError("Connection closed by server.")
            self.waiting.append(reply)
            try:
                await self.connection.send_packed_command(packed, check_health=False)
            except BaseException:
                # redis-py closed the connection (a failed write, or a caller cancelled while
                # the socket's buffer was full): the commands on it fail, and may be retried.
                self.close()
                raise
        # A caller that gives up (cancelled) cancels only its reply: the reader drops it when it
        # comes, and the connection stays in step for the others.
        return await reply

    def close(self) -> None:
        self.reader.cancel()

    async def _read(self) -> None:
        error: BaseException = RedisConnectionError("Connection closed.")
        try:
            while True:
                try:
                    value = await self.connection.read_response(disconnect_on_error=False)
                except ResponseError as exc:  # an error reply, read whole
                    self._answer(exc, failed=True)
                else:
                    self._answer(value, failed=False)
        except (RedisError, OSError) as exc:
            error = exc
        finally:
            # Broken, timed out or closed: every command still waiting fails (the caller may
            # retry on a new connection), and this one is never used again.
            for reply in self.waiting:
                if not reply.done():
                    reply.set_exception(RedisConnectionError(f"Connection lost: {error}"))
            self.waiting.clear()
            await self.connection.disconnect(nowait=True)

    def _answer(self, value: Any, *, failed: bool) -> None:
        if not self.waiting:  # a reply nobody asked for: out of step, drop the connection
            raise RedisConnectionError("Unexpected reply.")
        reply = self.waiting.popleft()
        if reply.done():  # its caller gave up
            return
        if failed:
            reply.set_exception(value)
        else:
            reply.set_result(value)


class Lane:
    """Sends the store's (or the rate limits') commands on one connection of its own, pipelined:
    many commands in flight at once, each answered in order. Much cheaper per command than
    redis-py's client (issue 17), which takes a pooled connection for each command (a lock, a
    timeout, a check of the socket), wraps each write in `asyncio.wait_for` (a task per command
    on Python 3.11), and opens a connection per concurrent command (about 200 at concurrency
    100, each a HELLO handshake); replies to concurrent commands also arrive in one read.

    The client's guarantees stay: its settings (address, credentials, database, decoding,
    connect timeout); each attempt bounded by `timeout` (the socket timeout by default); one
    quick retry on a broken or timed-out connection; a connection that broke, or whose reply is
    late past `timeout` (Redis hung, or the network dropped it silently), is closed, failing
    the commands still on it, and the next command opens a new one. A caller that is cancelled
    only stops waiting: the connection stays in step for the others."""

    def __init__(self, client: Redis, timeout: float | None = None) -> None:
        pool = client.connection_pool
        kwargs = pool.connection_kwargs
        self._timeout: float | None = timeout or kwargs.get("socket_timeout")
        # Timeouts are this lane's business (see `_attempt`), not the socket's; no health-check
        # PING: a broken connection is seen by its reader at once.
        self._settings = {**kwargs, "socket_timeout": None, "health_check_interval": 0}
        self._make = pool.connection_class
        self._pipe: _Pipe | None = None
        self._connecting = asyncio.Lock()

    async def execute(self, *args: EncodableT) -> Any:
        """One command's reply; a Redis error reply raises its `ResponseError`."""
        try:
            return await self._attempt(args)
        except (RedisConnectionError, RedisTimeoutError, OSError):
            # A connection broken since its last use (Redis restarted) fails at once: one more
            # try, on a new connection, as redis-py's `Retry` did.
            await asyncio.sleep(_RETRY_PAUSE)
            return await self._attempt(args)

    async def script(
        self, script: AsyncScript, keys: Sequence[str], args: Sequence[EncodableT]
    ) -> Any:
        """EVALSHA; a Redis that lost its scripts (restarted, flushed) gets the source once."""
        try:
            return await self.execute("EVALSHA", script.sha, len(keys), *keys, *args)
        except NoScriptError:
            return await self.execute("EVAL", script.script, len(keys), *keys, *args)

    async def _attempt(self, args: tuple[EncodableT, ...]) -> Any:
        pipe = None
        try:
            async with asyncio.timeout(self._timeout):
                pipe = await self._open()
                return await pipe.send(_pack(args))
        except TimeoutError:
            if pipe is not None:
                pipe.close()  # late: Redis hung or the connection is dead; the next opens anew
            raise RedisTimeoutError("Timeout reading from Redis") from None

    async def _open(self) -> _Pipe:
        pipe = self._pipe
        if pipe is not None and not pipe.broken:
            return pipe
        async with self._connecting:  # one connection opened for all who wait for it
            if self._pipe is None or self._pipe.broken:
                connection: AbstractConnection = self._make(**self._settings)
                await connection.connect_check_health(check_health=False)
                self._pipe = _Pipe(connection)
            return self._pipe

    async def close(self) -> None:
        if self._pipe is not None:
            self._pipe.close()
            await asyncio.wait([self._pipe.reader])
            self._pipe = None


class RedisSessionStore:
    """`SessionStore` on Redis. Every Redis failure surfaces as `StoreUnavailable` (HTTP 503)."""

    def __init__(
        self,
        client: Redis,
        *,
        prefix: str,
        ttl_seconds: int,
        lock_wait_seconds: float,
        lock_ttl_seconds: float,
        max_messages: int,
        operation_timeout_seconds: float | None = None,
    ) -> None:
        self._redis = client
        # Every command of the store goes through the lane, each attempt bounded by half the
        # operation's time (two attempts, as `connect`'s client made), else by the socket timeout.
        attempt = None if operation_timeout_seconds is None else operation_timeout_seconds / 2
        self._lane = Lane(client, timeout=attempt)
        self._prefix = prefix
        self._ttl = ttl_seconds
        self._lock_wait = lock_wait_seconds
        self._lock_ttl_ms = int(lock_ttl_seconds * 1000)
        self._max_messages = max_messages
        self._acquire = client.register_script(_ACQUIRE)
        self._release = client.register_script(_RELEASE)
        self._renew = client.register_script(_RENEW)
        self._finish = client.register_script(_FINISH)
        self._join_burst = client.register_script(_JOIN_BURST)
        # Renewers finishing and releases retried after Redis failed: none outlives a lock TTL.
        self._background: set[asyncio.Task[Any]] = set()
        self._closed = False

    def keys(self, key: ConversationKey) -> _Keys:
        return _Keys.of(self._prefix, key)

    async def load(self, key: ConversationKey) -> Conversation:
        # GETEX refreshes the time to live in the same command that reads.
        raw = await self._run(
            "load", self._lane.execute("GETEX", self.keys(key).conv, "EX", self._ttl)
        )
        return self._conversation(key, raw)[0]

    def _conversation(
        self, key: ConversationKey, raw: str | bytes | None
    ) -> tuple[Conversation, _TurnTexts]:
        """The conversation, and the text each of its turns was read from."""
        if raw is None:
            return Conversation(), {}
        try:
            data, texts = _decode_conversation(raw if isinstance(raw, str) else raw.decode())
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
            return Conversation.from_dict(data), texts
        except ValueError as exc:  # UnicodeDecodeError included
            # Only a hand-edited or corrupted value gets here (the key carries the version):
            # starting afresh beats refusing the customer forever.
            SWALLOWED_ERRORS.labels(where="store_decode").inc()
            log.error("conversation_unreadable", conversation=str(key), error=str(exc))
            return Conversation(), {}

    async def save(self, key: ConversationKey, conversation: Conversation) -> None:
        payload = self._conversation_payload(conversation)
        # One SET with EX: the whole turn and its time to live land together or not at all.
        await self._run(
            "save", self._lane.execute("SET", self.keys(key).conv, payload, "EX", self._ttl)
        )

    def _conversation_payload(
        self, conversation: Conversation, texts: _TurnTexts | None = None
    ) -> str:
        if conversation.message_count() > self._max_messages:
            # A backstop: the agent trims before every turn, so only an oversized single turn
            # gets here, and trimming keeps that turn whole.
            conversation = conversation.copy()
            conversation.trim(self._max_messages)
        return _encode_conversation(conversation, texts or {})

    def lock(self, key: ConversationKey) -> Any:
        return self._lock(self.keys(key))

    @asynccontextmanager
    async def _lock(self, keys: _Keys) -> AsyncIterator[None]:
        async with self._hold(keys, "", _READ_NOTHING):
            yield

    @asynccontextmanager
    async def turn(
        self, key: ConversationKey, message_id: str | None, *, burst: bool = False
    ) -> AsyncIterator[_RedisTurn]:
        keys = self.keys(key)
        reads = _READ_CONVERSATION_AND_BURST if burst else _READ_CONVERSATION
        async with AsyncExitStack() as stack:
            holding = await stack.enter_async_context(self._hold(keys, message_id or "", reads))
            earlier = None
            if holding.found[0] == _ANSWERED:
                earlier = self._reply(key, holding.found[1])
                if earlier is None:
                    # An unreadable reply counts as none (as in `recall_reply`): the message is
                    # answered again, holding the conversation like any other turn.
                    holding = await stack.enter_async_context(self._hold(keys, "", reads))
            texts: _TurnTexts = {}
            if earlier is not None:
                conversation, waiting = Conversation(), []
            else:
                conversation, texts = self._conversation(key, holding.found[1])
                waiting = self._burst(holding.found[2])
            yield _RedisTurn(self, keys, message_id, holding, conversation, earlier, waiting, texts)

    async def recall_reply(self, key: ConversationKey, message_id: str) -> dict[str, Any] | None:
        raw = await self._run(
            "recall_reply", self._lane.execute("GET", self.keys(key).reply(message_id))
        )
        return self._reply(key, raw)

    def _reply(self, key: ConversationKey, raw: str | bytes | None) -> dict[str, Any] | None:
        if raw is None:
            return None
        try:
            reply = json.loads(raw)
            if not isinstance(reply, dict):
                raise ValueError("not a JSON object")
        except ValueError as exc:
            SWALLOWED_ERRORS.labels(where="store_decode").inc()
            log.error("reply_unreadable", conversation=str(key), error=str(exc))
            return None
        return reply

    async def remember_reply(
        self, key: ConversationKey, message_id: str, reply: dict[str, Any]
    ) -> None:
        payload = json.dumps(reply, ensure_ascii=False, separators=(",", ":"))
        name = self.keys(key).reply(message_id)
        await self._run("remember_reply", self._lane.execute("SET", name, payload, "EX", self._ttl))

    async def remember_intent(
        self, key: ConversationKey, intent_key: str, intent: dict[str, Any]
    ) -> None:
        payload = json.dumps(intent, ensure_ascii=False, separators=(",", ":"))
        name = self.keys(key).intent(intent_key)
        await self._run(
            "remember_intent", self._lane.execute("SET", name, payload, "EX", self._ttl)
        )

    async def recall_intent(self, key: ConversationKey, intent_key: str) -> dict[str, Any] | None:
        raw = await self._run(
            "recall_intent", self._lane.execute("GET", self.keys(key).intent(intent_key))
        )
        if raw is None:
            return None
        try:
            intent = json.loads(raw)
        except ValueError:
            intent = None
        # Unreadable still means a booking may have gone out: the key alone is what counts.
        return intent if isinstance(intent, dict) else {}

    async def join_burst(
        self, key: ConversationKey, message_id: str | None, entry: dict[str, Any]
    ) -> BurstPlace:
        keys = self.keys(key)
        call = self._lane.script(
            self._join_burst,
            keys=[keys.reply(message_id or ""), keys.burst],
            args=[message_id or "", _json(entry), self._ttl],
        )
        found = await self._run("join_burst", call)
        if found[0] == _ANSWERED:
            earlier = self._reply(key, found[1])
            if earlier is None:
                # An unreadable reply counts as none (as in `recall_reply`): the message joins.
                return await self.join_burst(key, None, entry)
            return BurstPlace({}, earlier_reply=earlier)
        if found[0] == _IN_BURST:
            [waiting] = self._burst([found[1]])
            return BurstPlace(waiting)
        return BurstPlace(entry, joined=True)

    @staticmethod
    def _burst(raw: list[str] | list[bytes | str]) -> list[dict[str, Any]]:
        entries = []
        for item in raw:
            try:
                entry = json.loads(item)
            except ValueError:
                entry = None
            # An unreadable entry still holds its place, so counts stay right.
            entries.append(entry if isinstance(entry, dict) else {})
        return entries

    async def ping(self) -> bool:
        try:
            await self._run("ping", self._lane.execute("PING"))
        except StoreUnavailable:
            return False
        return True

    async def close(self) -> None:
        self._closed = True
        for task in self._background:
            task.cancel()
        if self._background:
            await asyncio.wait(self._background, timeout=1)
        await self._lane.close()
        await self._redis.aclose()

    # --- the cross-instance lock ------------------------------------------------------------

    @asynccontextmanager
    async def _hold(self, keys: _Keys, message_id: str, reads: str) -> AsyncIterator[_Holding]:
        """Hold the conversation (see `_ACQUIRE` for `message_id` and `reads`), renewing the
        lock while the block runs and releasing it after, unless `_finish_turn` did."""
        token = secrets.token_hex(16)
        try:
            found = await self._wait_turn(keys, token, message_id, reads)
        except StoreUnavailable:
            # Leave the line, and free the lock in case the last attempt won it unheard, in
            # the background: the 503 need not wait on a Redis that just failed. Retried until
            # Redis answers: a hung Redis (SIGSTOP) runs the queued attempt when it resumes,
            # and that lock must not wait out its TTL with nobody holding it.
            self._spawn(self._retry_free(keys, token, first_pause=0.0))
            raise
        except BaseException:  # timed out or cancelled: Redis answers, clean up now
            await self._free(keys, token)
            raise
        holding = _Holding(token, found)
        if found[0] == _ANSWERED:  # the script took no lock: nothing to renew or release
            holding.released = True
            yield holding
            return
        # An event, not cancel(), stops it: redis-py may swallow a cancellation (_wait_turn).
        self._spawn(self._keep_renewing(keys, token, holding.stop_renewing))
        redis_failed = False
        try:
            yield holding
        except StoreUnavailable:
            redis_failed = True
            raise
        finally:
            holding.stop_renewing.set()
            if holding.released is None or (redis_failed and not holding.released):
                self._spawn(self._retry_free(keys, token, first_pause=0.0))
            elif not holding.released:
                freed = await self._free(keys, token)
                if freed is None:
                    self._spawn(self._retry_free(keys, token))
                elif not freed:
                    self._lock_lost(keys)

    async def _finish_turn(
        self,
        keys: _Keys,
        holding: _Holding,
        *,
        message_id: str,
        conversation: str,
        reply: str,
        answered: int,
    ) -> None:
        """`HeldTurn.finish`: the turn's writes and the release, one script, one round trip."""
        holding.stop_renewing.set()  # a renewal racing the release would report a lost lock
        call = self._lane.script(
            self._finish,
            keys=[keys.lock, keys.queue, keys.alive, keys.conv, keys.reply(message_id), keys.burst],
            args=[holding.token, self._ttl, conversation, reply, answered],
        )
        holding.released = None  # from here until Redis answers, the release may have run
        owned = await self._run("finish_turn", call)
        holding.released = True
        if not owned:
            self._lock_lost(keys)

    def _lock_lost(self, keys: _Keys) -> None:
        SWALLOWED_ERRORS.labels(where="store_lock_lost").inc()
        log.warning("conversation_lock_lost", lock=keys.lock)

    async def _wait_turn(self, keys: _Keys, token: str, message_id: str, reads: str) -> list[Any]:
        """Poll `_ACQUIRE` until it holds the conversation or finds the message answered."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._lock_wait
        pause = _POLL_FIRST
        names = [keys.lock, keys.queue, keys.ticket, keys.alive]
        names += [keys.conv, keys.reply(message_id), keys.burst]
        args = (token, self._lock_ttl_ms, _HEARTBEAT_MS, _QUEUE_IDLE_MS, message_id, self._ttl)
        while True:
            found: list[Any] = await self._run(
                "lock", self._lane.script(self._acquire, keys=names, args=(*args, reads))
            )
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                # On Python < 3.12, asyncio.wait_for inside redis-py drops a cancellation that
                # lands as the reply arrives (cpython gh-86296); honour it, or this request
                # would keep waiting and then run a turn nobody is waiting for.
                raise asyncio.CancelledError
            if found[0] != _WAITING:
                return found
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise Overloaded(_BUSY, reason="conversation_busy")
            # Polling, not pub/sub: nothing to resubscribe after a Redis restart, and the line
            # (not the poll) decides who goes next.
            await asyncio.sleep(min(pause, remaining))
            pause = min(pause * 2, _POLL_MAX)

    async def _free(self, keys: _Keys, token: str) -> bool | None:
        """Leave the line and release the lock if this token holds it: True if it did, False
        if it did not, None if Redis could not be reached (logged and counted, not raised)."""
        try:
            freed = await self._run(
                "unlock",
                self._lane.script(
                    self._release, keys=[keys.lock, keys.queue, keys.alive], args=[token]
                ),
            )
        except StoreUnavailable:
            SWALLOWED_ERRORS.labels(where="store_unlock").inc()
            return None
        return bool(freed)

    def _spawn(self, work: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _retry_free(self, keys: _Keys, token: str, first_pause: float = 0.1) -> None:
        """Keep trying to release until Redis answers or the lock has expired anyway: a Redis
        that restarts with its data (AOF, replica failover) must not keep the conversation
        locked for a whole lock TTL after its holder finished. One task per turn that held a
        lock when Redis went away, so bounded by the turns in flight."""
        loop = asyncio.get_running_loop()
        give_up = loop.time() + self._lock_ttl_ms / 1000
        pause = first_pause
        while not self._closed and loop.time() < give_up:
            await asyncio.sleep(pause)
            pause = min(max(pause * 2, 0.1), 2.0)
            if await self._free(keys, token) is not None:
                # Once more a moment later: an attempt sent before Redis hung may run after
                # this release (another connection), and take the lock for nobody.
                await asyncio.sleep(_RELEASE_AGAIN_SECONDS)
                await self._free(keys, token)
                return

    async def _keep_renewing(self, keys: _Keys, token: str, done: asyncio.Event) -> None:
        """While the turn runs, push the lock's expiry forward: a live holder keeps it however
        long its tools take; a dead one stops renewing and the lock lapses within its TTL."""
        while True:
            try:
                async with asyncio.timeout(self._lock_ttl_ms / 3000):
                    await done.wait()
                return
            except TimeoutError:
                pass
            try:
                held = await self._run(
                    "renew_lock",
                    self._lane.script(
                        self._renew, keys=[keys.lock], args=[token, self._lock_ttl_ms]
                    ),
                )
            except StoreUnavailable:
                SWALLOWED_ERRORS.labels(where="store_renew").inc()
                continue
            if not held:
                self._lock_lost(keys)
                return

    async def _run(self, operation: str, call: Awaitable[T]) -> T:
        try:
            return await call  # bounded by the lane (its attempts' timeouts)
        except (RedisError, OSError, TimeoutError) as exc:
            STORE_ERRORS.labels(operation=operation).inc()
            log.warning(
                "store_unavailable", operation=operation, error=f"{type(exc).__name__}: {exc}"
            )
            raise StoreUnavailable(_UNAVAILABLE) from exc
