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

`conv`, `reply:*` and `intent:*` expire after `CITAS_SESSION_TTL_SECONDS` without use; the
lock after its TTL unless renewed by its live holder; the queue keys a minute after the last
waiter.
Changing the conversation schema changes `vN`, so old and new instances never read each
other's JSON.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator, Awaitable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote

import structlog
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import RedisError

from citas.conversation import SCHEMA_VERSION, Conversation
from citas.domain import ConversationKey
from citas.errors import Overloaded, StoreUnavailable
from citas.metrics import STORE_ERRORS, SWALLOWED_ERRORS

log = structlog.get_logger("citas.store")

T = TypeVar("T")

_UNAVAILABLE = "el almacén de conversaciones no responde; reintente en unos segundos"
_BUSY = "la conversación está ocupada; reintente en unos segundos"
_HEARTBEAT_MS = 5_000  # a waiter that stops polling this long loses its place in line
_QUEUE_IDLE_MS = 60_000
_POLL_FIRST, _POLL_MAX = 0.005, 0.05
_RELEASE_AGAIN_SECONDS = 1.0

# Take the conversation when it is free and this token is first in line (SET NX PX); else
# join the line (once: a retried call keeps its ticket) and refresh this waiter's heartbeat.
# Waiters at the head whose heartbeat lapsed (crashed, gave up without cleaning) are dropped,
# so a dead waiter cannot block the line; a dead holder's lock simply expires.
# KEYS: lock, queue, ticket, alive. ARGV: token, lock_ttl_ms, heartbeat_ms, idle_ms.
_ACQUIRE = """
local token = ARGV[1]
if redis.call('GET', KEYS[1]) == token then return 1 end
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
if head == token and redis.call('SET', KEYS[1], token, 'NX', 'PX', ARGV[2]) then
  redis.call('ZREM', KEYS[2], token)
  redis.call('ZREM', KEYS[4], token)
  return 1
end
return 0
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


POOL_HEADROOM = 50
"""Connections beyond one per admitted turn: lock renewers, background releases, rate-limit
checks of requests not yet admitted, readiness probes."""


def connect(url: str, timeout_seconds: float, max_connections: int = 100 + POOL_HEADROOM) -> Redis:
    """A pooled client that fails fast: socket timeouts, one quick retry, then an error; broken
    connections are dropped and reopened on the next command, so it recovers on its own.

    The pool is bounded (`max_connections`, sized by the app from the admission bound) and
    blocking: past the bound a command waits up to `timeout_seconds` for a free connection
    instead of failing at once with `MaxConnectionsError`, which made a healthy Redis answer
    503 above redis-py's default of 100 concurrent turns."""
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
        self._op_timeout = operation_timeout_seconds
        self._prefix = prefix
        self._ttl = ttl_seconds
        self._lock_wait = lock_wait_seconds
        self._lock_ttl_ms = int(lock_ttl_seconds * 1000)
        self._max_messages = max_messages
        self._acquire = client.register_script(_ACQUIRE)
        self._release = client.register_script(_RELEASE)
        self._renew = client.register_script(_RENEW)
        # Renewers finishing and releases retried after Redis failed: none outlives a lock TTL.
        self._background: set[asyncio.Task[Any]] = set()
        self._closed = False

    def keys(self, key: ConversationKey) -> _Keys:
        return _Keys.of(self._prefix, key)

    async def load(self, key: ConversationKey) -> Conversation:
        # GETEX refreshes the time to live in the same command that reads.
        raw = await self._run("load", self._redis.getex(self.keys(key).conv, ex=self._ttl))
        if raw is None:
            return Conversation()
        try:
            data = json.loads(raw)
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
            return Conversation.from_dict(data)
        except ValueError as exc:
            # Only a hand-edited or corrupted value gets here (the key carries the version):
            # starting afresh beats refusing the customer forever.
            SWALLOWED_ERRORS.labels(where="store_decode").inc()
            log.error("conversation_unreadable", conversation=str(key), error=str(exc))
            return Conversation()

    async def save(self, key: ConversationKey, conversation: Conversation) -> None:
        if conversation.message_count() > self._max_messages:
            # A backstop: the agent trims before every turn, so only an oversized single turn
            # gets here, and trimming keeps that turn whole.
            conversation = conversation.copy()
            conversation.trim(self._max_messages)
        payload = json.dumps(conversation.to_dict(), ensure_ascii=False, separators=(",", ":"))
        # One SET with EX: the whole turn and its time to live land together or not at all.
        await self._run("save", self._redis.set(self.keys(key).conv, payload, ex=self._ttl))

    def lock(self, key: ConversationKey) -> Any:
        return self._hold(self.keys(key))

    async def recall_reply(self, key: ConversationKey, message_id: str) -> dict[str, Any] | None:
        raw = await self._run("recall_reply", self._redis.get(self.keys(key).reply(message_id)))
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
        await self._run("remember_reply", self._redis.set(name, payload, ex=self._ttl))

    async def remember_intent(
        self, key: ConversationKey, intent_key: str, intent: dict[str, Any]
    ) -> None:
        payload = json.dumps(intent, ensure_ascii=False, separators=(",", ":"))
        name = self.keys(key).intent(intent_key)
        await self._run("remember_intent", self._redis.set(name, payload, ex=self._ttl))

    async def recall_intent(self, key: ConversationKey, intent_key: str) -> dict[str, Any] | None:
        raw = await self._run("recall_intent", self._redis.get(self.keys(key).intent(intent_key)))
        if raw is None:
            return None
        try:
            intent = json.loads(raw)
        except ValueError:
            intent = None
        # Unreadable still means a booking may have gone out: the key alone is what counts.
        return intent if isinstance(intent, dict) else {}

    async def add_to_burst(self, key: ConversationKey, entry: dict[str, Any]) -> None:
        name = self.keys(key).burst
        payload = json.dumps(entry, ensure_ascii=False, separators=(",", ":"))
        pipe = self._redis.pipeline(transaction=True)
        pipe.rpush(name, payload)
        pipe.expire(name, self._ttl)
        await self._run("add_to_burst", pipe.execute())

    async def burst(self, key: ConversationKey) -> list[dict[str, Any]]:
        raw = await self._run("burst", self._redis.lrange(self.keys(key).burst, 0, -1))
        entries = []
        for item in raw:
            try:
                entry = json.loads(item)
            except ValueError:
                entry = None
            # An unreadable entry still holds its place, so counts stay right.
            entries.append(entry if isinstance(entry, dict) else {})
        return entries

    async def take_burst(self, key: ConversationKey, count: int) -> None:
        await self._run("take_burst", self._redis.ltrim(self.keys(key).burst, count, -1))

    async def ping(self) -> bool:
        try:
            await self._run("ping", self._redis.ping())
        except StoreUnavailable:
            return False
        return True

    async def close(self) -> None:
        self._closed = True
        for task in self._background:
            task.cancel()
        if self._background:
            await asyncio.wait(self._background, timeout=1)
        await self._redis.aclose()

    # --- the cross-instance lock ------------------------------------------------------------

    @asynccontextmanager
    async def _hold(self, keys: _Keys) -> AsyncIterator[None]:
        token = secrets.token_hex(16)
        try:
            await self._wait_turn(keys, token)
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
        done = asyncio.Event()
        # An event, not cancel(), stops it: redis-py may swallow a cancellation (_wait_turn).
        self._spawn(self._keep_renewing(keys, token, done))
        redis_failed = False
        try:
            yield
        except StoreUnavailable:
            redis_failed = True
            raise
        finally:
            done.set()
            if redis_failed:
                self._spawn(self._retry_free(keys, token, first_pause=0.0))
            else:
                freed = await self._free(keys, token)
                if freed is None:
                    self._spawn(self._retry_free(keys, token))
                elif not freed:
                    SWALLOWED_ERRORS.labels(where="store_lock_lost").inc()
                    log.warning("conversation_lock_lost", lock=keys.lock)

    async def _wait_turn(self, keys: _Keys, token: str) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._lock_wait
        pause = _POLL_FIRST
        args = (token, self._lock_ttl_ms, _HEARTBEAT_MS, _QUEUE_IDLE_MS)
        while True:
            call = self._acquire(keys=[keys.lock, keys.queue, keys.ticket, keys.alive], args=args)
            won = await self._run("lock", call)
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                # On Python < 3.12, asyncio.wait_for inside redis-py drops a cancellation that
                # lands as the reply arrives (cpython gh-86296); honour it, or this request
                # would keep waiting and then run a turn nobody is waiting for.
                raise asyncio.CancelledError
            if won:
                return
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
                "unlock", self._release(keys=[keys.lock, keys.queue, keys.alive], args=[token])
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
                    "renew_lock", self._renew(keys=[keys.lock], args=[token, self._lock_ttl_ms])
                )
            except StoreUnavailable:
                SWALLOWED_ERRORS.labels(where="store_renew").inc()
                continue
            if not held:
                SWALLOWED_ERRORS.labels(where="store_lock_lost").inc()
                log.warning("conversation_lock_lost", lock=keys.lock)
                return

    async def _run(self, operation: str, call: Awaitable[T]) -> T:
        try:
            if self._op_timeout is None:
                return await call
            async with asyncio.timeout(self._op_timeout):
                return await call
        except (RedisError, OSError, TimeoutError) as exc:
            STORE_ERRORS.labels(operation=operation).inc()
            log.warning(
                "store_unavailable", operation=operation, error=f"{type(exc).__name__}: {exc}"
            )
            raise StoreUnavailable(_UNAVAILABLE) from exc
