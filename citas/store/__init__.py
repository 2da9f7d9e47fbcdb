"""Session stores: one protocol, an in-process and a Redis implementation."""

from citas.store.base import SessionStore
from citas.store.memory import MemorySessionStore

__all__ = ["MemorySessionStore", "SessionStore"]
