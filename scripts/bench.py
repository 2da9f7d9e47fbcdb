#!/usr/bin/env python3
"""What citas adds to a turn, next to the least any agent must do (the floor), on this machine.

citas and the floor each run as their own process behind the same instant fake LLM and sandbox
backend (both in this process). Every turn is one tool round: the model asks
`check_availability`, the agent asks the backend, the model answers with text. The floor
(`scripts/bench_floor.py`) does that turn with plain aiohttp and the json module. Figures are
printed per concurrency level, with citas/floor ratios; then the CPU of a turn at a short and a
long history; then the prompt-prefix stability of a 10-turn conversation.

    python scripts/bench.py                                  # the default run (a few minutes)
    python scripts/bench.py --quick                          # a smoke run, not a measurement
    python scripts/bench.py --redis redis://127.0.0.1:6379/9 # adds citas on the Redis store
    python scripts/bench.py --redis URL --workers 2          # ...and on 2 worker processes

Linux only: CPU and memory are read from /proc.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a checkout without installing it

ID_EMPRESA, USUARIO_ID, DURATION = 12, 7, 30  # the sandbox's clinic, open 09-13 and 15-19
LIMA = ZoneInfo("America/Lima")
ASK = re.compile(r"(\d{4}-\d{2}-\d{2}) a las (\d{2}:\d{2})")
SMALL_TALK = "Gracias, lo pienso"  # the model answers it with text alone: a 2-message turn
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
TARGET = 1.5  # citas CPU per turn ≤ 1.5× the raw floor's, at every level
HISTORY_TARGET = 1.2  # CPU per turn at a 60-message history ≤ 1.2× at a 2-message one
CITAS_ARGV = [sys.executable, "-m", "citas", "serve"]
FLOOR = ROOT / "scripts" / "bench_floor.py"  # the floor's own server


# --------------------------------------------------------------------------- the fake model


def slot_day() -> date:
    """A weekday at least two days ahead, so 09:00-12:00 is open and bookable."""
    day = datetime.now(LIMA).date() + timedelta(days=2)
    while day.weekday() >= 5:
        day += timedelta(days=1)
    return day


class Model:
    """The fake LLM's responder: a tool call for the customer's message, then a text answer."""

    def __init__(self) -> None:
        self.calls = 0
        self.tool_calls = 0
        self.first_body: dict[str, Any] | None = None
        # While probing: (first request of a turn?, messages) of every request.
        self.probe: list[tuple[bool, list[dict[str, Any]]]] | None = None

    def __call__(self, body: dict[str, Any]) -> Any:
        from citas.testing import call, reply

        self.calls += 1
        if self.first_body is None:
            self.first_body = body
        messages = body["messages"]
        opening = messages[-1]["role"] != "tool"
        if self.probe is not None:
            self.probe.append((opening, messages))
        # Each answer differs from the last, as a real model's do: citas sends back an answer
        # that repeats the previous reply (its reply guard), which would add a model call.
        if opening and messages[-1]["content"].startswith(SMALL_TALK):
            return reply(f"Claro, aquí estoy cuando quieras (mensaje {len(messages)}).")
        if opening:
            self.tool_calls += 1
            asked = ASK.search(messages[-1]["content"])
            day, at = asked.groups() if asked else (slot_day().isoformat(), "10:00")
            return call("check_availability", {"date": day, "time": at})
        when = json.loads(messages[-1]["content"]).get("cuando", "Ese horario")
        return reply(f"{when}: está libre. ¿Te lo reservo? Dime tu nombre y tu correo.")


# --------------------------------------------------------------------------- processes


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    name: str
    process: subprocess.Popen[bytes]
    url: str
    log: Path

    def cpu_seconds(self) -> float:
        """User + system time of the server and its worker processes, if any (a worker that
        exited takes its share with it)."""
        return sum(cpu_seconds(pid) for pid in process_tree(self.process.pid))

    def rss_mib(self) -> float:
        return sum(rss_mib(pid) for pid in process_tree(self.process.pid))

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def spawn(name: str, argv: list[str], env: dict[str, str], workdir: Path) -> Server:
    port = free_port()
    log = workdir / f"{name}.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [*argv, "--port", str(port)],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT), **env},
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    return Server(name, process, f"http://127.0.0.1:{port}", log)


def stat_fields(pid: int) -> list[str]:
    """/proc/PID/stat after the command name: state is [0], ppid [1], utime [11], stime [12]."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def cpu_seconds(pid: int) -> float:
    try:
        fields = stat_fields(pid)
    except FileNotFoundError:  # it exited between the listing and the reading
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def rss_mib(pid: int) -> float:
    with contextlib.suppress(FileNotFoundError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def process_tree(root: int) -> list[int]:
    """`root` and its descendants (a supervisor's workers)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(FileNotFoundError, IndexError):
                children.setdefault(int(stat_fields(int(entry.name))[1]), []).append(
                    int(entry.name)
                )
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += children.get(pid, [])
    return found


async def start_server(name: str, argv: list[str], env: dict[str, str], workdir: Path) -> Server:
    """Start a server process and wait until its /health answers."""
    import aiohttp

    server = spawn(name, argv, env, workdir)
    async with aiohttp.ClientSession() as http:
        for _ in range(300):
            if server.process.poll() is not None:
                break
            with contextlib.suppress(aiohttp.ClientError):
                async with http.get(server.url + "/health") as answer:
                    if answer.status == 200:
                        return server
            await asyncio.sleep(0.05)
    server.stop()
    tail = server.log.read_text(errors="replace")[-2000:]
    raise SystemExit(f"bench: {name} did not start:\n{tail}")


# --------------------------------------------------------------------------- load


@dataclass
class Run:
    """One system at one concurrency level."""

    turns: int = 0
    errors: int = 0
    wall: float = 0.0
    cpu: float = 0.0
    harness_cpu: float = 0.0
    llm_calls: int = 0
    tool_calls: int = 0
    backend_calls: int = 0
    rss_end: float = 0.0
    # RSS as the last round began, if the store was already full of earlier conversations.
    rss_full_before_last_round: float | None = None
    latencies: list[float] = field(default_factory=list)

    def per_turn(self, value: float) -> float:
        return value / self.turns if self.turns else float("nan")

    @property
    def throughput(self) -> float:
        return self.turns / self.wall if self.wall else float("nan")

    def latency_ms(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return 1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def split(total: int, parts: int) -> list[int]:
    return [total // parts + (i < total % parts) for i in range(parts)]


def request_body(session_id: str, turn: int, day: date, message: str | None = None) -> bytes:
    at = f"{9 + turn % 4:02d}:00"
    return json.dumps(
        {
            "message": message or f"Hola, ¿tienen libre el {day.isoformat()} a las {at}?",
            "session_id": session_id,
            "message_id": f"{session_id}-{turn}",
            "context": {
                "config": {
                    "id_empresa": ID_EMPRESA,
                    "usuario_id": USUARIO_ID,
                    "duracion_cita_minutos": DURATION,
                }
            },
        }
    ).encode()


@dataclass(frozen=True)
class Load:
    tag: str  # prefix of the session ids
    concurrency: int
    conversations: int
    turns: int
    first_turn: int = 0  # turn numbers go on from here (message ids stay unique)
    first_conversation: int = 0  # conversation numbers start here (a slice of earlier ones)
    message: str | None = None  # what the customer says (default: asks for a slot)


async def drive(
    http: Any, server: Server, load: Load, on_conversation: Callable[[], None] | None = None
) -> tuple[list[float], int]:
    """`conversations` × `turns` turns, `concurrency` conversations at a time; latencies, errors."""
    latencies: list[float] = []
    errors = 0
    day = slot_day()
    todo: Iterator[int] = iter(
        range(load.first_conversation, load.first_conversation + load.conversations)
    )
    headers = {"Content-Type": "application/json"}

    async def worker() -> None:
        nonlocal errors
        for number in todo:  # one iterator shared by all workers
            if on_conversation is not None:
                on_conversation()
            for turn in range(load.first_turn, load.first_turn + load.turns):
                data = request_body(f"{load.tag}-{number}", turn, day, load.message)
                start = time.perf_counter()
                async with http.post(server.url + "/api/chat", data=data, headers=headers) as r:
                    answer = await r.json()
                latencies.append(time.perf_counter() - start)
                if r.status != 200 or "error" in answer or not answer.get("reply"):
                    errors += 1

    await asyncio.gather(*(worker() for _ in range(load.concurrency)))
    return latencies, errors


@dataclass
class Bench:
    model: Model
    sandbox: Any
    http: Any
    max_sessions: int
    runs: int = 0
    started: dict[str, int] = field(default_factory=dict)  # conversations started per server

    async def measure(
        self,
        server: Server,
        concurrency: int,
        conversations: int,
        turns: int,
        into: Run,
        *,
        load: Load | None = None,
    ) -> Run:
        """Run the load on `server` (by default new conversations that ask for a slot) and add
        what it took to `into`."""
        self.runs += 1
        model, backend = self.model, self.sandbox.backend
        backend.calls.clear()
        llm0, tools0 = model.calls, model.tool_calls

        def on_conversation() -> None:
            self.started[server.name] = self.started.get(server.name, 0) + 1

        full = self.started.get(server.name, 0) >= self.max_sessions
        into.rss_full_before_last_round = server.rss_mib() if full else None
        cpu0, own0, wall0 = server.cpu_seconds(), time.process_time(), time.perf_counter()
        load = load or Load(f"{server.name}-{self.runs}", concurrency, conversations, turns)
        latencies, errors = await drive(self.http, server, load, on_conversation)
        into.wall += time.perf_counter() - wall0
        into.cpu += server.cpu_seconds() - cpu0
        into.harness_cpu += time.process_time() - own0
        into.latencies += latencies
        into.turns += len(latencies)
        into.errors += errors
        into.llm_calls += model.calls - llm0
        into.tool_calls += model.tool_calls - tools0
        into.backend_calls += len(backend.calls)
        backend.calls.clear()  # the sandbox records every call: keep this process small
        into.rss_end = server.rss_mib()
        return into


# --------------------------------------------------------------------------- stable prefix


@dataclass(frozen=True)
class PrefixTurn:
    share: float  # of the turn's first request, identical to the previous turn's last request
    appended: bool  # the previous request's history is all in this one: nothing was trimmed


async def prefix_turns(bench: Bench, server: Server, turns: int) -> list[PrefixTurn]:
    """Turns 2..`turns` of one conversation: how much of each turn's first request (serialized
    messages) is identical to the start of the previous turn's last request — the longest
    prefix a provider's prompt cache can have seen. The clock note (a system message after the
    history, sent each turn and not kept) ends the part that can be the same."""
    from citas.testing.script import common_prefix_len

    def text(messages: list[dict[str, Any]]) -> str:
        return json.dumps(messages, ensure_ascii=False)

    def kept(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The prompt and the history: what comes before the clock note."""
        notes = [n for n, m in enumerate(messages) if n and m["role"] == "system"]
        return messages[: notes[0]] if notes else messages

    bench.model.probe = []
    try:
        await drive(bench.http, server, Load(f"{server.name}-prefix", 1, 1, turns))
        requests = bench.model.probe
    finally:
        bench.model.probe = None
    found = []
    for (_, previous), (opening, current) in itertools.pairwise(requests):
        if opening:
            now = text(current)
            same = common_prefix_len(text(previous), now)
            history = kept(previous)
            appended = current[: len(history)] == history
            found.append(PrefixTurn(same / len(now), appended))
    return found


# --------------------------------------------------------------------------- report


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}×" if b else "—"


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


ROW = "  {:<13}{:>8}{:>9}{:>9}{:>13}{:>10}{:>14}{:>9}{:>9}"


def print_level(concurrency: int, runs: dict[str, Run]) -> None:
    floor = runs["floor"]
    print(f"\nconcurrency {concurrency}: {floor.turns} turns each")
    print(
        ROW.format(
            "",
            "turns/s",
            "p50 ms",
            "p99 ms",
            "CPU ms/turn",
            "LLM/turn",
            "backend/turn",
            "RSS MiB",
            "harness",
        )
    )
    for name, run in runs.items():
        print(
            ROW.format(
                name,
                f"{run.throughput:.0f}",
                f"{run.latency_ms(0.5):.1f}",
                f"{run.latency_ms(0.99):.1f}",
                f"{1000 * run.per_turn(run.cpu):.2f}",
                f"{run.per_turn(run.llm_calls):.2f}",
                f"{run.per_turn(run.backend_calls):.2f}",
                f"{run.rss_end:.0f}",
                f"{100 * run.harness_cpu / run.wall:.0f}%",
            )
        )
    for name, run in runs.items():
        if name == "floor":
            continue
        print(
            ROW.format(
                f"{name}/floor",
                ratio(run.throughput, floor.throughput),
                ratio(run.latency_ms(0.5), floor.latency_ms(0.5)),
                ratio(run.latency_ms(0.99), floor.latency_ms(0.99)),
                ratio(run.per_turn(run.cpu), floor.per_turn(floor.cpu)),
                ratio(run.llm_calls, floor.llm_calls),
                ratio(run.backend_calls, floor.backend_calls),
                ratio(run.rss_end, floor.rss_end),
                "",
            )
        )
    failed = {name: run.errors for name, run in runs.items() if run.errors}
    if failed:
        print(f"  failed turns: {failed}")


def print_targets(levels: dict[int, dict[str, Run]]) -> None:
    print(f"\ntargets (CPU per turn ≤ {TARGET}× the floor's at every level)")
    systems = [name for name in next(iter(levels.values())) if name.startswith("citas")]
    for name in systems:
        cells = []
        for level, runs in levels.items():
            mine, floor = (
                runs[name].per_turn(runs[name].cpu),
                runs["floor"].per_turn(runs["floor"].cpu),
            )
            cells.append(f"C={level} {ratio(mine, floor)} {verdict(mine <= TARGET * floor)}")
        print(f"  CPU per turn, {name}/floor: {'; '.join(cells)}")
    if 20 in levels:
        p50c, p50f = (levels[20][name].latency_ms(0.5) for name in ("citas", "floor"))
        print(
            f"  p50 at concurrency 20: citas {p50c:.1f} ms, floor {p50f:.1f} ms"
            f" = {ratio(p50c, p50f)} (≤ {TARGET}×: {verdict(p50c <= TARGET * p50f)})"
        )
    citas = [level["citas"] for level in levels.values()]
    turns = sum(r.turns for r in citas)
    backend, tools = sum(r.backend_calls for r in citas), sum(r.tool_calls for r in citas)
    print(
        f"  backend calls per turn: {backend / turns:.2f} for {tools / turns:.2f} tool calls"
        f" (≤ tool calls, business info cached: {verdict(backend <= tools)})"
    )
    for name in systems:
        if "-w" in name:  # compare a worker pool with the single process on the same store
            single = name.rsplit("-w", 1)[0]
            cells = [
                f"C={level} {ratio(runs[name].throughput, runs[single].throughput)}"
                for level, runs in levels.items()
            ]
            print(f"  turns/s, {name}/{single}: {'; '.join(cells)}")
    last = citas[-1]
    if last.rss_full_before_last_round is None:
        print("  citas memory once the store is full: not reached (more conversations needed)")
    else:
        # A coarse check (allocator noise is about 1-2 MiB); scripts/bench_memory.py is the
        # real one, with many more conversations.
        start, end = last.rss_full_before_last_round, last.rss_end
        print(
            f"  citas RSS over the last round, the store full: {start:.1f} → {end:.1f} MiB"
            f" ({end - start:+.1f} MiB; flat within 5%: {verdict(end <= start * 1.05)})"
        )


def print_prefix(label: str, turns: list[PrefixTurn]) -> None:
    cells = " ".join(f"{100 * t.share:.0f}" for t in turns)
    print(f"  {label}: turns 2..{len(turns) + 1}: {cells} %")
    later = turns[1:]  # turn 3 onwards
    if not later:
        return
    grown = [t.share for t in later if t.appended]
    trimmed = [n for n, t in enumerate(later, start=3) if not t.appended]
    low = min(grown, default=float("nan"))
    # The share itself depends on how long this bench's messages are next to the clock note
    # (which follows the history); what the code guarantees is that the prompt and the history
    # come back whole, except right after a trim.
    print(
        f"    from turn 3: mean {100 * statistics.fmean(t.share for t in later):.0f}%,"
        f" min {100 * low:.0f}% where history only grew;"
        f" trimmed before turns: {', '.join(map(str, trimmed)) or '-'}"
        f" (not every turn: {verdict(len(trimmed) < len(later))})"
    )


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few seconds: a smoke run")
    parser.add_argument("--levels", default="1,20,100", help="concurrency levels (1,20,100)")
    parser.add_argument("--turns", type=int, help="turns per conversation (10; quick: 3)")
    parser.add_argument(
        "--conversations", type=int, help="conversations per level (2 × level, at least 20)"
    )
    parser.add_argument("--rounds", type=int, default=3, help="alternations per level (3)")
    parser.add_argument("--max-sessions", type=int, default=120, help="CITAS_MAX_SESSIONS (120)")
    parser.add_argument("--small-budget", type=int, default=20, help="small history budget (20)")
    parser.add_argument(
        "--floor-sdk",
        action="store_true",
        help="also run a floor calling the model through the OpenAI SDK's streamed post",
    )
    parser.add_argument(
        "--floor-create",
        action="store_true",
        help="also run a floor calling the SDK's chat.completions.create",
    )
    parser.add_argument(
        "--redis", metavar="URL", help="also run citas on the Redis store at URL (a test db)"
    )
    parser.add_argument(
        "--workers", type=int, default=1, help="also run citas --workers N (needs --redis)"
    )
    parser.add_argument(
        "--history-conversations",
        type=int,
        help="conversations per history length in the history phase (200; quick: 4)",
    )
    parser.add_argument("--profile", metavar="FILE", help="run citas under pyinstrument")
    parser.add_argument("--keep-logs", action="store_true", help="keep the servers' logs")
    return parser.parse_args(argv)


def citas_systems(
    env: dict[str, str], args: argparse.Namespace
) -> dict[str, tuple[list[str], dict[str, str]]]:
    """The citas processes to measure: name → (command, environment)."""
    systems = {"citas": (args.citas_argv, env)}
    if args.redis:
        # Its own key prefix, and keys that expire soon: the bench leaves nothing for long.
        redis_env = {
            **env,
            "REDIS_URL": args.redis,
            "CITAS_REDIS_PREFIX": f"citas-bench-{os.getpid()}",
            "CITAS_SESSION_TTL_SECONDS": "600",
        }
        systems["citas-redis"] = (args.citas_argv, redis_env)
        if args.workers > 1:
            argv = [*args.citas_argv, "--workers", str(args.workers)]
            systems[f"citas-redis-w{args.workers}"] = (argv, redis_env)
    return systems


def floor_command(
    name: str,
    client: str,
    first_body: dict[str, Any],
    urls: tuple[str, str],
    *,
    workdir: Path,
    keep: int,
) -> list[str]:
    """A floor server's command line. It is sent citas's own system prompt and tool schemas,
    so that both put the same bytes on the wire."""
    prompt_file = workdir / f"{name}.json"
    prompt = {
        "system": first_body["messages"][0]["content"],
        "tools": first_body["tools"],
        "client": client,
    }
    prompt_file.write_text(json.dumps(prompt))
    return [sys.executable, str(FLOOR), *urls, str(prompt_file), str(keep)]


async def start_floors(
    runner: Bench, first_body: dict[str, Any], urls: tuple[str, str], args: argparse.Namespace
) -> dict[str, Server]:
    """The raw floor, and with --floor-sdk / --floor-create the SDK's."""
    floors = {"floor": "raw"}
    floors |= {"floor-sdk": "sdk"} if args.floor_sdk else {}
    floors |= {"floor-create": "create"} if args.floor_create else {}
    servers = {}
    for name, client in floors.items():
        argv = floor_command(
            name, client, first_body, urls, workdir=args.workdir, keep=args.max_sessions
        )
        servers[name] = await start_server(name, argv, {}, args.workdir)
        await runner.measure(servers[name], 2, 2, 2, Run())  # warm-up
    return servers


async def run_levels(
    runner: Bench, servers: dict[str, Server], args: argparse.Namespace
) -> dict[int, dict[str, Run]]:
    results: dict[int, dict[str, Run]] = {}
    for level in args.levels:
        count = args.conversations or (level if args.quick else max(20, 2 * level))
        rounds = max(1, min(args.rounds, count // level))
        # Rounds alternate between the systems, so a neighbour's load on the machine weighs on
        # each about equally.
        results[level] = {name: Run() for name in servers}
        for part in split(count, rounds):
            for name, server in servers.items():
                await runner.measure(server, level, part, args.turns, results[level][name])
        print_level(level, results[level])
    return results


HISTORY_LENGTHS = (2, 60)  # messages of history before the measured turn


async def run_history(
    runner: Bench, systems: dict[str, tuple[list[str], dict[str, str]]], args: argparse.Namespace
) -> None:
    """CPU of one tool turn at a short and at a long history, per system: each conversation is
    first brought to that length with small-talk turns (two messages each, not measured); then
    the lengths are measured in alternating slices, so a drift of the machine weighs on both."""
    count = args.history_conversations or (4 if args.quick else 200)
    print(
        f"\nhistory: CPU of a turn after {' and '.join(map(str, HISTORY_LENGTHS))} messages"
        f" of history ({count} conversations each, concurrency 20)"
    )
    for name, (argv, env) in systems.items():
        server = await start_server(f"{name}-history", argv, env, args.workdir)
        try:
            for length in HISTORY_LENGTHS:
                warm = Load(f"{name}-h{length}", 20, count, length // 2, message=SMALL_TALK)
                await drive(runner.http, server, warm)
            runs = {length: Run() for length in HISTORY_LENGTHS}
            start = 0
            for part in split(count, 1 if args.quick else 4):
                for length, run in runs.items():
                    tag, small_talk = f"{name}-h{length}", length // 2
                    load = Load(tag, 20, part, 1, first_turn=small_talk, first_conversation=start)
                    await runner.measure(server, 20, part, 1, run, load=load)
                start += part
            cpu = {length: run.per_turn(run.cpu) for length, run in runs.items()}
            for length, run in runs.items():
                if run.errors:
                    print(f"  {name}: {run.errors} failed turns after {length} messages")
        finally:
            server.stop()
        short, long = (cpu[length] for length in HISTORY_LENGTHS)
        target = f" (≤ {HISTORY_TARGET}×: {verdict(long <= HISTORY_TARGET * short)})"
        print(
            f"  {name:<13} {1000 * short:.2f} → {1000 * long:.2f} ms/turn:"
            f" {ratio(long, short)}{target if name == 'citas' else ''}"
        )


async def run_prefix(
    runner: Bench, citas: Server, env: dict[str, str], args: argparse.Namespace
) -> None:
    from citas.config import Settings

    turns = 4 if args.quick else 10
    print("\nstable prefix: each turn's first request against the previous turn's last")
    budget = Settings.model_fields["history_max_messages"].default
    print_prefix(f"history budget {budget}", await prefix_turns(runner, citas, turns))
    small_env = {**env, "CITAS_HISTORY_MAX_MESSAGES": str(args.small_budget)}
    small = await start_server("citas-small", CITAS_ARGV, small_env, args.workdir)
    try:
        found = await prefix_turns(runner, small, turns)
    finally:
        small.stop()
    print_prefix(f"history budget {args.small_budget}", found)


async def bench(args: argparse.Namespace) -> None:
    import aiohttp

    from citas.sandbox import SandboxBackend, SandboxSeed, start_sandbox
    from citas.testing import FakeLLM

    model = Model()
    print(
        f"citas bench: Python {platform.python_version()}, {os.cpu_count()} CPUs, "
        f"{args.turns} turns per conversation, one tool round per turn\n"
        "(CPU ms/turn: the server process's own; harness: this process's CPU — fake LLM,"
        " sandbox, load — as a share of one core)"
    )
    servers: dict[str, Server] = {}
    async with (
        FakeLLM(responder=model, record=False) as llm,
        await start_sandbox(SandboxBackend(SandboxSeed.load())) as sandbox,
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http,
    ):
        env = {
            "OPENAI_API_KEY": "bench",
            "OPENAI_BASE_URL": llm.base_url,
            "CITAS_CALENDAR_API_URL": sandbox.calendar_url,
            "CITAS_INFO_API_URL": sandbox.info_url,
            "CITAS_LOG_FORMAT": "json",
            "CITAS_MAX_SESSIONS": str(args.max_sessions),
        }
        runner = Bench(model, sandbox, http, args.max_sessions)
        systems = citas_systems(env, args)
        try:
            for name, (argv, system_env) in systems.items():
                servers[name] = await start_server(name, argv, system_env, args.workdir)
                # Warm-up (not reported): connections open, business info cached.
                await runner.measure(servers[name], 2, 2, 2, Run())
            assert model.first_body is not None
            urls = (llm.base_url, sandbox.calendar_url)
            servers |= await start_floors(runner, model.first_body, urls, args)
            print_targets(await run_levels(runner, servers, args))
            await run_prefix(runner, servers["citas"], env, args)
            if args.profile:  # the history phase's own citas would overwrite the profile
                return
            for server in servers.values():
                server.stop()  # the history phase starts its own, with room for its sessions
            keep = 4 * (args.history_conversations or 200)
            floor_argv = floor_command(
                "floor", "raw", model.first_body, urls, workdir=args.workdir, keep=keep
            )
            # Room for every conversation, and for its small talk within the per-conversation
            # rate limit (still on: a burst of 30 by default).
            roomy = {"CITAS_MAX_SESSIONS": str(keep), "CITAS_RATE_LIMIT_CONVERSATION_BURST": "100"}
            history = {
                name: (argv, {**system_env, **roomy})
                for name, (argv, system_env) in systems.items()
                if "-w" not in name
            } | {"floor": (floor_argv, {})}
            await run_history(runner, history, args)
        finally:
            for server in servers.values():
                server.stop()
    if args.profile:
        print(f"\nprofile of citas: {args.profile}")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    args.levels = [int(level) for level in args.levels.split(",")]
    args.turns = args.turns or (3 if args.quick else 10)
    args.workdir = Path(tempfile.mkdtemp(prefix="citas-bench-"))
    args.citas_argv = CITAS_ARGV
    if args.profile:
        profiler = ["-m", "pyinstrument", "-o", os.path.abspath(args.profile)]
        args.citas_argv = [sys.executable, *profiler, *CITAS_ARGV[1:]]
    try:
        asyncio.run(bench(args))
    finally:
        if args.keep_logs:
            print(f"logs: {args.workdir}")
        else:
            shutil.rmtree(args.workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
