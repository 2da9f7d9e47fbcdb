"""The sandbox backend: an in-memory implementation of the platform's PHP backend API."""

from citas.sandbox.server import (
    CALENDAR_PATH,
    INFO_PATH,
    SANDBOX_BACKEND,
    RunningSandbox,
    create_sandbox_app,
    start_sandbox,
)
from citas.sandbox.state import (
    ANY_OPERATION,
    Business,
    CatalogItem,
    Event,
    Fault,
    FaultInjector,
    FaultKind,
    SandboxBackend,
    SandboxSeed,
)

__all__ = [
    "ANY_OPERATION",
    "CALENDAR_PATH",
    "INFO_PATH",
    "SANDBOX_BACKEND",
    "Business",
    "CatalogItem",
    "Event",
    "Fault",
    "FaultInjector",
    "FaultKind",
    "RunningSandbox",
    "SandboxBackend",
    "SandboxSeed",
    "create_sandbox_app",
    "start_sandbox",
]
