"""`citas chat`: a conversation with the agent in a terminal, for people trying it out.

The app runs in this process through the harness (`citas.testing.harness`), on an event loop in a
background thread, so the terminal keeps readline's line editing and Ctrl-C while the loop keeps
serving.
"""

from __future__ import annotations

import argparse
import logging
import secrets
import sys
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from datetime import datetime
from typing import Any, TextIO

from citas.clock import Clock, frozen_clock, system_clock
from citas.config import Settings, missing_setup
from citas.errors import ConfigError
from citas.logs import configure_logging
from citas.replay.report import transcript
from citas.sandbox.local import sandbox_setup
from citas.testing.harness import LocalCitas, LoopThread

EXIT_WORDS = frozenset({"/salir", "/exit", "/quit"})
PROMPT = "tú> "
AGENT = "citas> "


def run(args: argparse.Namespace, stdin: TextIO | None = None, stdout: TextIO | None = None) -> int:
    """The chat command; returns the process exit status."""
    stdin, stdout = stdin or sys.stdin, stdout or sys.stdout
    try:
        settings = Settings.from_env()
        clock = _clock(args.now)
    except (ConfigError, ValueError) as exc:
        print(f"citas chat: {exc}", file=sys.stderr)
        return 2
    problem = missing_setup(settings, sandbox=args.sandbox)
    if problem:
        print(f"citas chat: {problem}", file=sys.stderr)
        return 2
    # Log lines would break the conversation; --verbose keeps warnings (e.g. the demo model).
    configure_logging("console", logging.WARNING if args.verbose else logging.ERROR)
    config: dict[str, Any] = {"id_empresa": args.empresa}
    for key, value in (
        ("usuario_id", args.usuario),
        ("duracion_cita_minutos", args.duracion),
        ("zona_horaria", args.zona),
    ):
        if value is not None:
            config[key] = value
    session = _Session(
        settings,
        clock,
        sandbox=args.sandbox,
        context={"config": config},
        session_id=args.session or f"chat-{secrets.token_hex(4)}",
    )
    return session.talk(stdin, stdout, verbose=args.verbose)


def _clock(now: str | None) -> Clock:
    if not now:
        return system_clock
    instant = datetime.fromisoformat(now)
    if instant.tzinfo is None:
        raise ValueError("--now needs an offset, e.g. 2026-11-30T10:00:00-05:00")
    return frozen_clock(instant)


@asynccontextmanager
async def _running(settings: Settings, clock: Clock, sandbox: bool) -> AsyncIterator[LocalCitas]:
    async with AsyncExitStack() as stack:
        model = None
        if sandbox:
            setup = await stack.enter_async_context(sandbox_setup(settings, clock=clock))
            settings, model = setup.settings, setup.model
        yield await stack.enter_async_context(LocalCitas.start(settings, model=model, clock=clock))


class _Session:
    def __init__(
        self,
        settings: Settings,
        clock: Clock,
        *,
        sandbox: bool,
        context: dict[str, Any],
        session_id: str,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.sandbox = sandbox
        self.context = context
        self.session_id = session_id

    def talk(self, stdin: TextIO, stdout: TextIO, *, verbose: bool) -> int:
        interactive = stdin.isatty()
        if interactive:
            import readline  # noqa: F401  (importing it gives input() line editing and history)
        loop = LoopThread("citas-chat")
        manager: AbstractAsyncContextManager[LocalCitas] = _running(
            self.settings, self.clock, self.sandbox
        )
        try:
            citas = loop.run(manager.__aenter__())
            self._banner(citas, stdout)
            while (message := self._read(stdin, stdout, interactive)) is not None:
                if message:
                    self._turn(loop, citas, message, stdout, verbose)
        except KeyboardInterrupt:
            print(file=stdout)
        finally:
            loop.run(manager.__aexit__(None, None, None))
            loop.stop()
        return 0

    def _banner(self, citas: LocalCitas, stdout: TextIO) -> None:
        backend = "sandbox" if self.sandbox else citas.settings.calendar_api_url
        print(
            f"citas chat · empresa {self.context['config']['id_empresa']} · sesión "
            f"{self.session_id} · modelo {citas.runtime.agent.model.name} · backend {backend}\n"
            "Escribe tu mensaje (Ctrl-D o /salir para terminar).",
            file=stdout,
            flush=True,
        )

    def _read(self, stdin: TextIO, stdout: TextIO, interactive: bool) -> str | None:
        """The next message ("" to skip a blank line), or None at the end."""
        try:
            if interactive:
                line = input(PROMPT)
            else:
                line = stdin.readline()
                if not line:
                    return None
                if line.strip():
                    # Piped input is not echoed by a terminal; show it so the transcript reads.
                    print(f"{PROMPT}{line.strip()}", file=stdout)
        except EOFError:
            print(file=stdout)
            return None
        text = line.strip()
        return None if text.lower() in EXIT_WORDS else text

    def _turn(
        self, loop: LoopThread, citas: LocalCitas, message: str, stdout: TextIO, verbose: bool
    ) -> None:
        try:
            outcome = loop.run(
                citas.send(message, session_id=self.session_id, context=self.context)
            )
        except KeyboardInterrupt:
            print("\n(interrumpido)", file=stdout, flush=True)
            return
        if outcome.paused:
            lines = [f"{AGENT}(en pausa: una persona atiende esta conversación; no se responde)"]
        else:
            lines = [f"{AGENT}{outcome.reply}"]
        if outcome.handoff:
            lines.append(f"{' ' * len(AGENT)}(derivada a una persona: {outcome.handoff})")
        if outcome.url:
            lines.append(f"{' ' * len(AGENT)}enlace: {outcome.url}")
        if outcome.error:
            lines.append(f"{' ' * len(AGENT)}({outcome.error})")
        if verbose:
            lines += [f"    · {line}" for line in transcript(outcome, timings=True, reply=False)]
        print("\n".join(lines), file=stdout, flush=True)
