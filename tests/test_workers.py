"""`citas serve --workers N`: real processes. The supervisor forks N workers serving one port;
more than one needs Redis, refuses --sandbox, stops every worker on SIGTERM and replaces a
worker that dies. (Which worker answers is forced with SIGSTOP: a stopped worker cannot accept,
so the other one must.)"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from citas import workers
from citas.clock import system_clock
from citas.sandbox import RunningSandbox, SandboxBackend, SandboxSeed, start_sandbox
from citas.testing import FakeLLM, ModelScript, reply
from tests.conftest import chat_body
from tests.helpers import wait_until
from tests.served import Server, serve_process, serve_refused

ROOT = Path(__file__).resolve().parent.parent
BACKEND = {
    "CITAS_CALENDAR_API_URL": "http://127.0.0.1:9/cal",
    "CITAS_INFO_API_URL": "http://127.0.0.1:9/info",
    "OPENAI_API_KEY": "test-key",
}


def test_more_than_one_worker_needs_redis() -> None:
    done = serve_refused(BACKEND, "--workers", "2")
    assert (done.returncode, done.stderr) == (
        2,
        "citas: --workers 2 needs REDIS_URL: with the in-process store each worker would keep "
        "its own conversations\n",
    )


def test_more_than_one_worker_refuses_the_in_process_sandbox(redis_url: str) -> None:
    done = serve_refused({"REDIS_URL": redis_url}, "--workers", "2", "--sandbox")
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "citas: --workers 2: the --sandbox calendar lives in one process, so workers would book "
        "the same slot twice; use --workers 1 with --sandbox"
    ]


def test_a_port_in_use_is_one_line_and_exit_status_1_before_any_worker(redis_url: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = serve_refused({**BACKEND, "REDIS_URL": redis_url}, "--workers", "2", port=port)
    assert done.returncode == 1
    assert done.stderr == f"citas: cannot listen on 127.0.0.1:{port}: address already in use\n"


def test_workers_must_be_a_positive_count_or_auto() -> None:
    done = serve_refused(BACKEND, "--workers", "0")
    assert done.returncode == 2
    assert done.stderr.splitlines()[-1].endswith("'0' is not a positive integer or 'auto'")


def test_workers_auto_is_the_cpu_count() -> None:
    cpus = len(os.sched_getaffinity(0))
    assert workers.worker_count("auto") == cpus
    if cpus == 1:
        pytest.skip("one CPU: auto is one worker, which starts (nothing to refuse)")
    done = serve_refused(BACKEND, "--workers", "auto")  # the refusal names the count auto chose
    assert done.returncode == 2
    assert done.stderr.startswith(f"citas: --workers {cpus} needs REDIS_URL"), done.stderr


@pytest.fixture
async def live_sandbox() -> AsyncIterator[RunningSandbox]:
    """The backend, in the test process, shared by every worker (on the real clock, as they)."""
    running = await start_sandbox(SandboxBackend(SandboxSeed.load(), clock=system_clock))
    yield running
    await running.close()


@asynccontextmanager
async def two_workers(
    fake_llm: FakeLLM, sandbox: RunningSandbox, redis_url: str, redis_prefix: str, **env: str
) -> AsyncIterator[Server]:
    settings = {
        "OPENAI_BASE_URL": fake_llm.base_url,
        "OPENAI_API_KEY": "test-key",
        "CITAS_LLM_MAX_RETRIES": "0",
        "CITAS_CALENDAR_API_URL": sandbox.calendar_url,
        "CITAS_INFO_API_URL": sandbox.info_url,
        "REDIS_URL": redis_url,
        "CITAS_REDIS_PREFIX": redis_prefix,
        **env,
    }
    async with serve_process(settings, "--workers", "2") as server:
        [listening] = server.events("citas_listening")
        assert listening["workers"] == 2 and "worker" not in listening
        yield server


def pids(server: Server) -> dict[int, int]:
    """Worker number: pid of its latest process."""
    return {e["worker"]: e["pid"] for e in server.events("worker_started")}


@contextmanager
def stopped(pid: int) -> Iterator[None]:
    """The process stopped (SIGSTOP): it cannot accept a connection until the block ends."""
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def fresh_connections() -> aiohttp.ClientSession:
    # Every request on a new connection: a kept-alive one stays with the worker that accepted it.
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True))


async def answered_by(server: Server, http: aiohttp.ClientSession, message: str) -> int:
    """Send one turn; which worker answered it (its `http_request` log line)."""
    before = len(server.events("http_request"))
    response = await http.post(f"{server.url}/api/chat", json=chat_body(message))
    assert response.status == 200, await response.text()
    await wait_until(lambda: len(server.events("http_request")) > before)
    [line] = server.events("http_request")[before:]
    return int(line["worker"])


def _texts(request: dict[str, Any]) -> str:
    return " ".join(str(m.get("content")) for m in request["messages"])


@pytest.mark.wire
async def test_two_workers_answer_turns_of_one_conversation_through_redis(
    llm: ModelScript,
    fake_llm: FakeLLM,
    live_sandbox: RunningSandbox,
    redis_url: str,
    redis_prefix: str,
) -> None:
    # A different answer each turn: one that repeats the last reply is sent back (reply guard).
    llm.responder = lambda body: reply(f"Recibí: {body['messages'][-1]['content']}")
    async with (
        two_workers(fake_llm, live_sandbox, redis_url, redis_prefix) as server,
        fresh_connections() as http,
    ):
        workers_now = pids(server)
        assert sorted(workers_now) == [1, 2] and len(set(workers_now.values())) == 2
        with stopped(workers_now[1]):
            assert await answered_by(server, http, "primer mensaje") == 2
        with stopped(workers_now[2]):
            assert await answered_by(server, http, "segundo mensaje") == 1
    # Worker 1 answered with the history worker 2 had written: one conversation, in Redis.
    first, second = llm.requests
    assert "primer mensaje" in _texts(first) and "segundo mensaje" not in _texts(first)
    assert "primer mensaje" in _texts(second) and "segundo mensaje" in _texts(second)


@pytest.mark.wire
async def test_sigterm_drains_every_worker_and_the_supervisor_exits_0(
    llm: ModelScript,
    fake_llm: FakeLLM,
    live_sandbox: RunningSandbox,
    redis_url: str,
    redis_prefix: str,
) -> None:
    llm.responder = lambda body: reply("Hola, ¿en qué te ayudo?")
    llm.delay_next(2.0)  # the turn in flight when SIGTERM arrives
    async with (
        two_workers(fake_llm, live_sandbox, redis_url, redis_prefix) as server,
        fresh_connections() as http,
    ):
        in_flight = asyncio.create_task(http.post(f"{server.url}/api/chat", json=chat_body("Hola")))
        await wait_until(lambda: llm.requests)
        server.process.send_signal(signal.SIGTERM)
        finished = await in_flight
        assert finished.status == 200
        assert await asyncio.wait_for(server.process.wait(), timeout=30) == 0
    drained = {e["worker"]: e for e in server.events("drain_finished")}
    assert sorted(drained) == [1, 2] and all(e["drained"] for e in drained.values())
    assert sum(e["in_flight"] for e in server.events("drain_started")) == 1
    stopped_workers = server.events("worker_stopped")
    assert sorted(e["worker"] for e in stopped_workers) == [1, 2]
    assert all(e["exit_status"] == 0 for e in stopped_workers)
    supervisor = [e for e in server.events("citas_stopped") if "worker" not in e]
    assert [e["exit_status"] for e in supervisor] == [0]
    for pid in pids(server).values():
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


@pytest.mark.wire
async def test_a_second_signal_ends_the_workers_drain_wait(
    llm: ModelScript,
    fake_llm: FakeLLM,
    live_sandbox: RunningSandbox,
    redis_url: str,
    redis_prefix: str,
) -> None:
    llm.responder = lambda body: reply("demasiado tarde")
    llm.delay_next(60)
    # As in test_shutdown.py: a short bound for the app's cleanup, which waits for the turn
    # again; the drain ending at once, `drain_interrupted`, is the second signal's doing.
    async with (
        two_workers(
            fake_llm, live_sandbox, redis_url, redis_prefix, CITAS_SHUTDOWN_DRAIN_SECONDS="3"
        ) as server,
        fresh_connections() as http,
    ):
        in_flight = asyncio.create_task(http.post(f"{server.url}/api/chat", json=chat_body("Hola")))
        await wait_until(lambda: llm.requests)
        server.process.send_signal(signal.SIGINT)  # Ctrl-C: a drain, as SIGTERM
        await wait_until(lambda: len(server.events("drain_started")) == 2)
        server.process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(server.process.wait(), timeout=30) == 0
        with pytest.raises(aiohttp.ClientError):
            await in_flight  # cut off: the gateway sees a dropped connection and may redeliver
    assert [e["reason"] for e in server.events("workers_stopping")] == ["SIGINT"]
    assert [e["reason"] for e in server.events("workers_hurried")] == ["SIGTERM"]
    [interrupted] = server.events("drain_interrupted")
    assert interrupted["in_flight"] == 1


@pytest.mark.wire
async def test_a_killed_worker_is_replaced(
    llm: ModelScript,
    fake_llm: FakeLLM,
    live_sandbox: RunningSandbox,
    redis_url: str,
    redis_prefix: str,
) -> None:
    llm.responder = lambda body: reply("Sigo aquí.")
    async with (
        two_workers(fake_llm, live_sandbox, redis_url, redis_prefix) as server,
        fresh_connections() as http,
    ):
        old = pids(server)
        os.kill(old[1], signal.SIGKILL)
        await wait_until(lambda: pids(server)[1] != old[1], timeout=30)
        [died] = server.events("worker_died")
        assert died["worker"] == 1 and died["pid"] == old[1] and died["signal"] == "SIGKILL"
        new = pids(server)
        assert new[2] == old[2]
        await wait_until(lambda: len(server.events("worker_listening")) == 3, timeout=30)
        # The new worker 1 answers (worker 2 stopped, so it must).
        with stopped(new[2]):
            assert await answered_by(server, http, "¿sigues?") == 1
        server.process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(server.process.wait(), timeout=30) == 0


def alive(pid: int) -> bool:
    """Running (a zombie that no one reaps, as an orphan's can be in a container, is not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.wire
async def test_workers_stop_on_their_own_when_the_supervisor_is_killed(
    llm: ModelScript,
    fake_llm: FakeLLM,
    live_sandbox: RunningSandbox,
    redis_url: str,
    redis_prefix: str,
) -> None:
    async with two_workers(fake_llm, live_sandbox, redis_url, redis_prefix) as server:
        orphans = pids(server).values()
        server.process.kill()
        await server.process.wait()
        await wait_until(lambda: not any(alive(pid) for pid in orphans), timeout=30)
    assert len(server.events("supervisor_gone")) == 2
    assert sorted(e["worker"] for e in server.events("drain_finished")) == [1, 2]


def test_a_worker_that_cannot_start_stops_the_supervisor() -> None:
    """In-process: a worker that exits before it serves is not restarted; the supervisor stops
    the others and gives one line."""
    started: list[int] = []

    def main(worker: workers.Worker) -> int:
        if worker.index == 2:
            return 3  # before `ready`
        worker.ready()
        worker.channel.setblocking(True)
        return 0 if worker.channel.recv(1) == b"t" else 4  # serves until told to stop

    supervisor = workers.Supervisor(
        [], 2, main, stop_seconds=10, listening=lambda: started.append(1)
    )
    assert supervisor.run() == 1
    assert supervisor.failure == "worker 2 could not start (exit status 3)"
    assert not started, "not every worker listened"


def test_restart_pauses_double_while_a_worker_keeps_dying_soon() -> None:
    supervisor = workers.Supervisor([], 1, lambda worker: 0, stop_seconds=1)
    soon = [supervisor._schedule_restart(1, lived=0.5) for _ in range(7)]
    assert soon == [1, 2, 4, 8, 16, 30, 30]
    assert supervisor._schedule_restart(1, lived=workers.STABLE_SECONDS) == 1
    assert supervisor._schedule_restart(2, lived=0.5) == 1  # per worker
