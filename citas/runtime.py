"""The objects one running app shares, built once by the app factory."""

from __future__ import annotations

from dataclasses import dataclass, field

import aiohttp
from aiohttp import web

from citas.admission import Admission
from citas.agent.loop import Agent
from citas.backend import BackendClient
from citas.config import Settings
from citas.ratelimit import RateLimits
from citas.store.base import SessionStore


@dataclass
class Runtime:
    settings: Settings  # effective: with the sandbox's URLs when it runs in-process
    http: aiohttp.ClientSession
    backend: BackendClient
    store: SessionStore
    agent: Agent
    admission: Admission
    rate_limits: RateLimits = field(default_factory=RateLimits.off)


RUNTIME = web.AppKey("runtime", Runtime)
SETTINGS = web.AppKey("settings", Settings)
"""The settings the app was created with, readable before start-up (the runner's limits)."""
