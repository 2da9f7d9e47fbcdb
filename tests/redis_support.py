"""Fixtures for the tests that need a real Redis: the shared server at 127.0.0.1:6379 (keys under
a prefix unique to each test, deleted after it) and a private server a test may kill and restart.

Where no Redis answers, these tests are skipped with the reason, except in CI (`CI=true`),
where a missing Redis fails the run: `.ci/run` starts one, so its absence is a real fault.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import NoReturn

import pytest
import redis
from redis.asyncio import Redis

from citas.config import Settings
from citas.domain import ConversationKey
from citas.store.redis import RedisSessionStore, connect

# The shared development/CI server; the variable exists to point the tests elsewhere.
SHARED_URL = os.environ.get("CITAS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def _missing(reason: str) -> NoReturn:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: the Redis tests must run; .ci/run starts Redis)")
    pytest.skip(f"{reason}; start it (see NOTES.md) to run the Redis store tests")


@pytest.fixture(scope="session")
def redis_url() -> str:
    try:
        redis.Redis.from_url(SHARED_URL, socket_timeout=2, socket_connect_timeout=2).ping()
    except (redis.RedisError, OSError) as exc:
        _missing(f"no Redis answers at {SHARED_URL} ({exc})")
    return SHARED_URL


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url, decode_responses=True)
    yield client
    await client.aclose()


@pytest.fixture
async def redis_prefix(redis_client: Redis) -> AsyncIterator[str]:
    """A key prefix no other test (nor engineer) uses; its keys are deleted afterwards."""
    prefix = f"citas-test-{uuid.uuid4().hex[:12]}"
    yield prefix
    keys = [key async for key in redis_client.scan_iter(match=f"{prefix}:*", count=1000)]
    if keys:
        await redis_client.delete(*keys)


@pytest.fixture
def redis_settings(settings: Settings, redis_url: str, redis_prefix: str) -> Settings:
    return settings.with_updates(redis_url=redis_url, redis_prefix=redis_prefix)


def make_store(
    url: str, prefix: str, *, lock_wait: float = 5.0, lock_ttl: float = 30.0, max_messages: int = 60
) -> RedisSessionStore:
    return RedisSessionStore(
        connect(url, timeout_seconds=1.0),
        prefix=prefix,
        ttl_seconds=3600,
        lock_wait_seconds=lock_wait,
        lock_ttl_seconds=lock_ttl,
        max_messages=max_messages,
    )


async def wait_queued(
    client: Redis, store: RedisSessionStore, key: ConversationKey, n: int
) -> None:
    """Until `n` requests wait in line for `key` (fails the test after 5 s)."""
    queue = store.keys(key).queue
    async with asyncio.timeout(5):
        while await client.zcard(queue) < n:  # noqa: ASYNC110 (state lives in Redis)
            await asyncio.sleep(0.005)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """A private redis-server in a temp dir, persisting every write (appendfsync always), so a
    kill and restart is a crash of the server, not a loss of its data."""

    def __init__(self, directory: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            _missing("redis-server is not installed")
        self._binary = binary
        self._directory = directory
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        args = [
            self._binary,
            *("--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self._directory)),
            *("--save", "", "--appendonly", "yes", "--appendfsync", "always"),
            *("--logfile", str(self._directory / "redis.log")),
        ]
        self._process = await asyncio.create_subprocess_exec(*args, stdout=subprocess.DEVNULL)
        client = Redis.from_url(self.url, socket_connect_timeout=0.5)
        try:
            async with asyncio.timeout(10):
                while True:
                    try:
                        await client.ping()
                        return
                    except (redis.RedisError, OSError):
                        await asyncio.sleep(0.02)
        finally:
            await client.aclose()

    def pause(self) -> None:
        """SIGSTOP: the server hangs; connections stay open and commands queue unanswered."""
        assert self._process is not None
        self._process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT: the server runs again, and runs whatever was queued meanwhile."""
        assert self._process is not None
        self._process.send_signal(signal.SIGCONT)

    async def kill(self) -> None:
        """SIGKILL: the server vanishes mid-conversation, as in a crash."""
        if self._process is not None:
            self._process.send_signal(signal.SIGCONT)  # a paused server dies as well
            self._process.kill()
            await self._process.wait()
            self._process = None


@pytest.fixture
async def own_redis(tmp_path: Path) -> AsyncIterator[RedisServer]:
    server = RedisServer(tmp_path)
    await server.start()
    yield server
    await server.kill()


@pytest.fixture
def closed_port_url() -> str:
    """A Redis URL where nothing listens: every command fails at once."""
    return f"redis://127.0.0.1:{free_port()}/0"
