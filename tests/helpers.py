"""Test helpers: reading the shared Prometheus registry, waiting for a condition. (What metrics
moved during a test: `citas.testing.harness.MetricsDelta`.)"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from citas.metrics import REGISTRY


def sample(name: str, **labels: str) -> float:
    """The current value of one sample; 0.0 when it has never been set."""
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def wait_until(condition: Callable[[], object], timeout: float = 10.0) -> None:
    """Poll `condition` until it is true; fail after `timeout` seconds (a hang guard only)."""
    step = 0.005
    for _ in range(int(timeout / step)):
        if condition():
            return
        await asyncio.sleep(step)
    raise AssertionError(f"condition not met within {timeout} s")
