"""`citas serve --workers N`: one supervisor process and N worker processes serving one port.

One aiohttp process uses one core. The supervisor binds the listening sockets once
(`server.bind`), then forks N workers; each runs the whole app (`server.serve`) on those
inherited sockets, and the kernel gives each new connection to whichever worker accepts it.

Why one socket bound by the supervisor rather than SO_REUSEPORT sockets bound by each worker:

- a port in use or a host that does not resolve fails once, before any worker starts, with the
  same one line as a single process, and `--port 0` means one port for all the workers;
- no other process can join the port (with SO_REUSEPORT any process of the same user may bind
  it too and take a share of the connections);
- one queue: SO_REUSEPORT hashes each connection to one worker's queue, where it waits even
  while that worker is busy or restarting and another is idle.

Why fork: the supervisor has validated the settings and imported the code once; it has no event
loop and no threads when it forks (each worker runs its own `asyncio.run`), so a worker starts
at once, sharing only the listening sockets and the log stream.

Each worker is told what to do over its own socket pair, not by signals: `t` stop (drain as a
single process does on SIGTERM, `CITAS_SHUTDOWN_DRAIN_SECONDS`), `h` hurry (stop waiting for
turns in flight, as a second signal does). Workers ignore SIGTERM and SIGINT, so a Ctrl-C (which
reaches the whole process group) or a service manager signalling every process of the service
still means one drain, run by the supervisor. When the supervisor is gone (SIGKILL), the pair's
end of file makes each worker stop on its own. A worker writes `r` once it serves.

The supervisor:

- SIGTERM or SIGINT: `t` to every worker, then waits for them; another signal: `h`. A worker
  still alive `stop_seconds` after the first signal is killed (SIGKILL). Exit status 0 when every
  worker stopped cleanly, else 1.
- A worker that dies after it served (a crash, the OOM killer, `kill -9`) is logged
  (`worker_died`) and started again after a pause: 1 s, doubling up to 30 s while the
  restarted ones keep dying within 10 s of their start.
- A worker that dies before it served cannot start: the others are stopped, and the supervisor
  exits 1 with one line (`failure`).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import selectors
import signal
import socket
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass
from typing import NoReturn

import structlog

log = structlog.get_logger("citas.workers")

RESTART_PAUSE_SECONDS = 1.0
MAX_RESTART_PAUSE_SECONDS = 30.0
STABLE_SECONDS = 10.0
"""A worker that lived this long before it died is restarted after the first pause again."""

_STOP, _HURRY, _READY = b"t", b"h", b"r"
_HANDLED = (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD)


def worker_count(value: str) -> int:
    """`--workers`: a positive integer, or `auto`: one per CPU this process may run on."""
    if value == "auto":
        return cpu_count()
    count = int(value) if value.isdigit() else 0
    if count < 1:
        raise argparse.ArgumentTypeError(f"{value!r} is not a positive integer or 'auto'")
    return count


def cpu_count() -> int:
    """The CPUs this process may run on (a container's cpuset, `taskset`), else the machine's."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def refusal(count: int, *, redis_url: str | None, sandbox: bool) -> str | None:
    """Why `count` workers cannot serve this configuration, or None."""
    if count == 1:
        return None
    if sandbox:
        return (
            f"--workers {count}: the --sandbox calendar lives in one process, "
            "so workers would book the same slot twice; use --workers 1 with --sandbox"
        )
    if redis_url is None:
        return (
            f"--workers {count} needs REDIS_URL: with the in-process store each worker "
            "would keep its own conversations"
        )
    return None


@dataclass(frozen=True)
class Worker:
    """What a worker process is given: its number (1 to N), the sockets, its supervisor."""

    index: int
    sockets: tuple[socket.socket, ...]
    channel: socket.socket

    def ready(self) -> None:
        """Tell the supervisor that this worker serves."""
        with suppress(OSError):
            self.channel.send(_READY)

    def follow(self, stop: asyncio.Event, hurry: asyncio.Event) -> None:
        """From now on, set `stop` and `hurry` when the supervisor says so, and `stop` when it
        is gone."""
        loop = asyncio.get_running_loop()
        self.channel.setblocking(False)

        def readable() -> None:
            try:
                said = self.channel.recv(64)
            except BlockingIOError:
                return
            except OSError:
                said = b""
            if not said:
                loop.remove_reader(self.channel)
                if not stop.is_set():
                    log.warning("supervisor_gone")
                stop.set()
            if _STOP in said or _HURRY in said:
                stop.set()
            if _HURRY in said:
                hurry.set()

        loop.add_reader(self.channel, readable)


WorkerMain = Callable[[Worker], int]
"""Runs in a worker process: serves until told to stop; its exit status."""


@dataclass
class _Child:
    index: int
    pid: int
    started: float
    channel: socket.socket
    ready: bool = False


def _noted(signum: int, frame: object) -> None:
    """Signals are read from the wake-up socket; a handler must exist for it to be written."""


class Supervisor:
    """Starts `count` workers running `main` on `sockets`, and keeps them running until a signal."""

    def __init__(
        self,
        sockets: Sequence[socket.socket],
        count: int,
        main: WorkerMain,
        *,
        stop_seconds: float,
        listening: Callable[[], None] = lambda: None,
    ) -> None:
        self.sockets = tuple(sockets)
        self.count = count
        self.main = main
        self.stop_seconds = stop_seconds
        self.listening = listening
        """Called once, when all the first workers serve."""
        self.failure: str | None = None
        """Why the workers could not start (one line), once `run` has returned."""
        self._children: dict[int, _Child] = {}
        self._restarts: dict[int, float] = {}  # worker index: when to start it again
        self._pauses: dict[int, float] = {}  # worker index: its last restart pause
        self._stopping_since: float | None = None
        self._killed = False
        self._unclean = False
        self._announced = False
        # Made by `run`: the children's channels and the signals' wake-up socket pair.
        self._selector: selectors.BaseSelector
        self._wake: socket.socket
        self._wake_writer: socket.socket

    def run(self) -> int:
        """Start the workers, restart those that die, stop them on a signal; the exit status."""
        self._selector = selectors.DefaultSelector()
        self._wake, self._wake_writer = socket.socketpair()
        self._wake.setblocking(False)
        self._wake_writer.setblocking(False)
        self._selector.register(self._wake, selectors.EVENT_READ)
        previous = {sig: signal.signal(sig, _noted) for sig in _HANDLED}
        previous_fd = signal.set_wakeup_fd(self._wake_writer.fileno(), warn_on_full_buffer=False)
        try:
            for index in range(1, self.count + 1):
                self._start(index)
            while self._children or self._restarts:
                self._step()
        finally:
            signal.set_wakeup_fd(previous_fd)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self._selector.close()
            self._wake.close()
            self._wake_writer.close()
        status = 1 if self.failure or self._unclean else 0
        log.info("citas_stopped", exit_status=status)
        return status

    def _step(self) -> None:
        for key, _mask in self._selector.select(self._timeout()):
            if key.fileobj is self._wake:
                self._read_signals()
            else:
                self._read_child(key.data)
        self._reap()
        now = time.monotonic()
        for index, when in list(self._restarts.items()):
            if when <= now:
                del self._restarts[index]
                self._start(index)
        stopping = self._stopping_since
        if stopping is not None and not self._killed and now - stopping >= self.stop_seconds:
            self._kill_all()

    def _timeout(self) -> float | None:
        deadlines = list(self._restarts.values())
        if self._stopping_since is not None and not self._killed:
            deadlines.append(self._stopping_since + self.stop_seconds)
        return max(0.0, min(deadlines) - time.monotonic()) if deadlines else None

    def _read_signals(self) -> None:
        with suppress(BlockingIOError):
            for signum in self._wake.recv(256):
                if signum in (signal.SIGTERM, signal.SIGINT):
                    self._stop(signal.Signals(signum).name)

    def _stop(self, why: str) -> None:
        """The first time, `t` to every worker; then `h`."""
        first = self._stopping_since is None
        if first:
            self._stopping_since = time.monotonic()
            self._restarts.clear()
        log.info("workers_stopping" if first else "workers_hurried", reason=why)
        for child in self._children.values():
            with suppress(OSError):
                child.channel.send(_STOP if first else _HURRY)

    def _kill_all(self) -> None:
        self._killed = True
        for child in self._children.values():
            log.warning(
                "worker_killed", worker=child.index, pid=child.pid, after_s=self.stop_seconds
            )
            with suppress(ProcessLookupError):
                os.kill(child.pid, signal.SIGKILL)

    def _start(self, index: int) -> None:
        ours, theirs = socket.socketpair()
        # Blocked across the fork, so the child resets its handlers before any can run.
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, _HANDLED)
        try:
            pid = os.fork()
        except OSError as exc:  # out of memory or processes: try again later
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            ours.close()
            theirs.close()
            pause = self._schedule_restart(index, lived=0.0)
            log.error("worker_fork_failed", worker=index, error=str(exc), restart_in_s=pause)
            return
        if pid == 0:
            ours.close()
            self._become_worker(index, theirs, mask)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        theirs.close()
        ours.setblocking(False)
        child = _Child(index, pid, time.monotonic(), ours)
        self._children[pid] = child
        self._selector.register(ours, selectors.EVENT_READ, child)
        log.info("worker_started", worker=index, pid=pid)

    def _schedule_restart(self, index: int, *, lived: float) -> float:
        """Start worker `index` again after a pause (doubling while it keeps dying soon)."""
        last = self._pauses.get(index)
        pause = (
            RESTART_PAUSE_SECONDS
            if last is None or lived >= STABLE_SECONDS
            else min(2 * last, MAX_RESTART_PAUSE_SECONDS)
        )
        self._pauses[index] = pause
        self._restarts[index] = time.monotonic() + pause
        return pause

    def _become_worker(
        self, index: int, channel: socket.socket, mask: set[int | signal.Signals]
    ) -> NoReturn:
        status = 1
        try:
            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            # Nothing of the supervisor's stays open here: a sibling holding another worker's
            # channel would hide the supervisor's end from that worker.
            self._selector.close()
            self._wake.close()
            self._wake_writer.close()
            for sibling in self._children.values():
                sibling.channel.close()
            status = self.main(Worker(index, self.sockets, channel))
        except SystemExit as exc:
            status = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
        except BaseException:
            log.exception("worker_crashed", worker=index)
        finally:
            with suppress(Exception):
                sys.stdout.flush()
                sys.stderr.flush()
            os._exit(status)

    def _read_child(self, child: _Child) -> None:
        try:
            said = child.channel.recv(64)
        except BlockingIOError:
            return
        except OSError:
            said = b""
        if _READY in said and not child.ready:
            child.ready = True
            self._announce()
        if not said:  # it exited: reaped next
            with suppress(KeyError):
                self._selector.unregister(child.channel)

    def _announce(self) -> None:
        if self._announced or sum(c.ready for c in self._children.values()) < self.count:
            return
        self._announced = True
        self.listening()

    def _reap(self) -> None:
        while True:
            try:
                pid, wait_status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            child = self._children.pop(pid, None)
            if child is None:
                continue
            if not child.ready:
                self._read_child(child)  # an `r` sent just before it died
            with suppress(KeyError):
                self._selector.unregister(child.channel)
            child.channel.close()
            self._exited(child, os.waitstatus_to_exitcode(wait_status))

    def _exited(self, child: _Child, code: int) -> None:
        fields = {"worker": child.index, "pid": child.pid, **_how(code)}
        if self._stopping_since is not None:
            clean = code == 0
            self._unclean = self._unclean or not clean
            (log.info if clean else log.warning)("worker_stopped", **fields)
        elif not child.ready:
            self.failure = f"worker {child.index} could not start ({_how_text(code)})"
            log.error("worker_failed_to_start", **fields)
            self._stop("worker_failed_to_start")
        else:
            pause = self._schedule_restart(child.index, lived=time.monotonic() - child.started)
            log.error("worker_died", **fields, restart_in_s=pause)


def _how(code: int) -> dict[str, object]:
    """A `waitstatus_to_exitcode` result as log fields."""
    if code < 0:
        return {"signal": signal.Signals(-code).name}
    return {"exit_status": code}


def _how_text(code: int) -> str:
    if code < 0:
        return f"killed by {signal.Signals(-code).name}"
    return f"exit status {code}"
