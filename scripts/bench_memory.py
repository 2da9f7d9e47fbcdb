"""Resident memory of one citas process as conversations pile up in the in-process store.

One process runs everything: the citas app on a local port (in-process store, sandbox backend)
and a fake OpenAI-compatible model that answers at once without recording requests. Each
conversation is one real `/api/chat` turn with its own `session_id` and `message_id`, so each
leaves a saved history and a dedupe record. RSS (VmRSS of /proc/self/status, after a full
garbage collection) is printed at each checkpoint: it should stop growing once the store holds
CITAS_MAX_SESSIONS conversations.

    CITAS_MAX_SESSIONS=10000 python scripts/bench_memory.py --conversations 100000
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from citas.app import create_app
from citas.config import Settings
from citas.logs import configure_logging
from citas.runtime import RUNTIME
from citas.sandbox.local import sandbox_setup
from citas.store.memory import MemorySessionStore
from citas.testing import FakeLLM, reply

REPLY = (
    "¡Hola! Claro, con gusto te ayudo. Atendemos de lunes a viernes de 9:00 a 13:00 y de 15:00 "
    "a 19:00. ¿Para qué día y hora te gustaría agendar tu cita? También puedo contarte sobre "
    "nuestros servicios y precios."
)


def status_kib(field: str) -> int:
    """A `VmRSS`-like field of /proc/self/status, in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status (Linux only)")


async def run(total: int, checkpoints: list[int], concurrency: int) -> None:
    llm = FakeLLM(responder=lambda _body: reply(REPLY), record=False)
    base_url = await llm.start()
    settings = Settings.from_env(OPENAI_API_KEY="bench", OPENAI_BASE_URL=base_url, CITAS_PORT=0)
    if settings.redis_url:
        sys.exit("bench_memory measures the in-process store: unset REDIS_URL")
    # The bundled sandbox backend, as `citas serve --sandbox` runs it (no call log).
    sandbox = sandbox_setup(settings)
    setup = await sandbox.__aenter__()
    app = create_app(setup.settings, model=setup.model)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    url = f"http://{host}:{port}/api/chat"
    store = app[RUNTIME].store
    assert isinstance(store, MemorySessionStore)

    print(f"CITAS_MAX_SESSIONS={settings.max_sessions}, concurrency {concurrency}")
    print(f"{'conversations':>13} {'stored':>7} {'replies':>7} {'locks':>5} {'RSS MiB':>8}")
    done = 0
    started = time.perf_counter()
    async with aiohttp.ClientSession() as http:

        async def converse(n: int) -> None:
            body: dict[str, Any] = {
                "message": "Hola, ¿qué horarios tienen para una limpieza dental esta semana?",
                "session_id": f"519{n:08d}",
                "message_id": f"wamid.bench.{n}",
                "context": {"config": {"id_empresa": 12, "usuario_id": 7}},
            }
            async with http.post(url, json=body) as response:
                if response.status != 200:
                    raise RuntimeError(f"turn {n}: HTTP {response.status} {await response.text()}")
                await response.read()

        def report(conversations: int) -> None:
            gc.collect()
            rss = status_kib("VmRSS") / 1024
            print(
                f"{conversations:>13} {len(store):>7} {store.replies_remembered:>7} "
                f"{store.locks_held:>5} {rss:>8.1f}",
                flush=True,
            )

        report(0)
        for checkpoint in checkpoints:
            while done < checkpoint:
                batch = range(done, min(checkpoint, done + concurrency))
                await asyncio.gather(*(converse(n) for n in batch))
                done = batch.stop
            report(done)
    elapsed = time.perf_counter() - started
    print(f"{done} turns in {elapsed:.0f} s; peak RSS {status_kib('VmHWM') / 1024:.1f} MiB")
    await runner.cleanup()
    await sandbox.__aexit__(None, None, None)
    await llm.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conversations", type=int, default=100_000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument(
        "--checkpoints",
        default="1000,10000,20000,50000,100000",
        help="conversation counts at which RSS is printed (comma-separated)",
    )
    args = parser.parse_args()
    checkpoints = sorted(
        {c for c in map(int, args.checkpoints.split(",")) if c <= args.conversations}
        | {args.conversations}
    )
    configure_logging("json", level=logging.WARNING)  # a log line per turn would be the bench
    asyncio.run(run(args.conversations, checkpoints, args.concurrency))


if __name__ == "__main__":
    main()
