"""Session stores: one protocol, an in-process and a Redis implementation."""

from citas.store.base import SessionStore
from citas.store.memory import MemorySessionStore
from citas.store.redis import RedisSessionStore

__all__ = ["MemorySessionStore", "RedisSessionStore", "SessionStore"]
