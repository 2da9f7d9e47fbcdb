"""Prometheus metrics of citas: one registry, every metric defined here and documented in README."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol, runtime_checkable

import structlog
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)

log = structlog.get_logger("citas.metrics")

REGISTRY = CollectorRegistry()
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)

_FAST = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
_SLOW = (0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60, 120)

CHAT_REQUESTS = Counter(
    "citas_chat_requests_total",
    "Gateway requests by endpoint and HTTP status.",
    ["endpoint", "status"],
    registry=REGISTRY,
)
TURN_SECONDS = Histogram(
    "citas_turn_duration_seconds",
    "Agent turn latency, failed turns included.",
    ["outcome"],
    buckets=_SLOW,
    registry=REGISTRY,
)
LLM_CALLS = Counter(
    "citas_llm_calls_total", "Chat Completions calls by outcome.", ["outcome"], registry=REGISTRY
)
LLM_SECONDS = Histogram(
    "citas_llm_call_duration_seconds",
    "Chat Completions call latency, failures included.",
    ["outcome"],
    buckets=_SLOW,
    registry=REGISTRY,
)
LLM_TOKENS = Counter(
    "citas_llm_tokens_total", "Tokens reported by the model endpoint.", ["kind"], registry=REGISTRY
)
TOOL_CALLS = Counter(
    "citas_tool_calls_total",
    "Tool calls by tool and outcome.",
    ["tool", "outcome"],
    registry=REGISTRY,
)
BACKEND_CALLS = Counter(
    "citas_backend_calls_total",
    "Backend HTTP attempts by operation and outcome.",
    ["operation", "outcome"],
    registry=REGISTRY,
)
BACKEND_SECONDS = Histogram(
    "citas_backend_call_duration_seconds",
    "Backend attempt latency, failures included.",
    ["operation"],
    buckets=_FAST,
    registry=REGISTRY,
)
CIRCUIT_STATE = Gauge(
    "citas_circuit_state",
    "Backend circuit per operation: 0 closed, 1 half-open, 2 open.",
    ["operation"],
    registry=REGISTRY,
)
CACHE_LOOKUPS = Counter(
    "citas_cache_lookups_total",
    "Business-info cache lookups by result (hit, miss, stale).",
    ["result"],
    registry=REGISTRY,
)
SESSIONS_STORED = Gauge(
    "citas_conversations_stored",
    "Conversations held by the session store, counted when /metrics is scraped.",
    registry=REGISTRY,
)
BOOKINGS = Counter(
    "citas_bookings_total",
    "Booking attempts by outcome (created, proposed, refused, deduplicated, unverified, failed).",
    ["outcome"],
    registry=REGISTRY,
)
APPOINTMENT_CHANGES = Counter(
    "citas_appointment_changes_total",
    "Changes to a customer's own bookings by change (cancel, reschedule; any: a reference not "
    "found) and outcome (proposed, done, refused, not_found).",
    ["change", "outcome"],
    registry=REGISTRY,
)
HANDOFFS = Counter(
    "citas_handoffs_total",
    "Conversations handed to a person, by reason (request_human's reason, bounded).",
    ["reason"],
    registry=REGISTRY,
)
PAUSED_MESSAGES = Counter(
    "citas_paused_messages_total",
    "Customer messages stored unanswered because a person has the conversation.",
    registry=REGISTRY,
)
REPLY_GUARD = Counter(
    "citas_reply_guard_total",
    "Replies the reply guard changed, by action (see citas/agent/reply_guard.py).",
    ["action"],
    registry=REGISTRY,
)
STORE_ERRORS = Counter(
    "citas_store_errors_total",
    "Session store (Redis) failures by operation; each one answers 503 or is logged and counted.",
    ["operation"],
    registry=REGISTRY,
)
REJECTED_REQUESTS = Counter(
    "citas_rejected_requests_total",
    "Requests turned away before the agent ran, by reason (invalid_request, unauthorized, "
    "rate_limited_conversation, rate_limited_business; shed: overloaded, draining, "
    "conversation_busy).",
    ["reason"],
    registry=REGISTRY,
)
SWALLOWED_ERRORS = Counter(
    "citas_handled_errors_total",
    "Errors turned into a degraded answer instead of a failure.",
    ["where"],
    registry=REGISTRY,
)


STREAMS = Counter(
    "citas_streams_total",
    "Streamed replies by how they ended (done, error, client_gone).",
    ["outcome"],
    registry=REGISTRY,
)
STREAM_FIRST_TEXT_SECONDS = Histogram(
    "citas_stream_first_text_seconds",
    "Time from a stream request's arrival to its first `delta` event.",
    buckets=_SLOW,
    registry=REGISTRY,
)


@contextmanager
def timed(histogram: Histogram, **labels: str) -> Iterator[dict[str, str]]:
    """Observe the block's duration whether it succeeds or raises (the audit's O3).

    The yielded dict may be updated with late labels (e.g. the outcome) before the block ends.
    """
    late: dict[str, str] = dict(labels)
    start = time.perf_counter()
    try:
        yield late
    finally:
        histogram.labels(**late).observe(time.perf_counter() - start)


@runtime_checkable
class CountsConversations(Protocol):
    async def count(self) -> int:
        """How many conversations the store holds now."""
        ...


async def refresh_conversations_stored(store: object, timeout: float = 1.0) -> None:
    """Set `citas_conversations_stored` from a store that can count (called at scrape time, so
    expiries show up and a shared store reports its own total)."""
    if not isinstance(store, CountsConversations):
        return
    try:
        async with asyncio.timeout(timeout):
            SESSIONS_STORED.set(await store.count())
    except Exception as exc:
        # The scrape still answers; the gauge keeps its last value.
        SWALLOWED_ERRORS.labels(where="store_count").inc()
        log.warning("store_count_failed", error=f"{type(exc).__name__}: {exc}")
