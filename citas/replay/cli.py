"""`scripts/replay.py`: replay recorded conversations offline, or record one from a real model.

    python scripts/replay.py tests/conversations/            # every *.json in the folder
    python scripts/replay.py FILE... [--verbose] [--update]
    python scripts/replay.py --record OUT.json [--messages FILE|-] [--empresa 12] ...

Exit status: 0 when every conversation went as recorded, 1 when any differed, 2 when a file
could not be read or the command line is wrong.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import TextIO
from zoneinfo import ZoneInfo

from citas.config import Settings
from citas.errors import ConfigError
from citas.logs import configure_logging
from citas.replay.format import (
    Recording,
    RecordingError,
    Turn,
    load_recording,
    save_recording,
)
from citas.replay.report import Progress, add_progress_flags, format_report, transcript
from citas.replay.runner import bundled_fixture, record, replay
from citas.sandbox import SandboxSeed
from citas.testing.harness import TurnOutcome

EXIT_SAME, EXIT_DIFFERENT, EXIT_ERROR = 0, 1, 2


def main(argv: Sequence[str] | None = None, *, out: TextIO | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    out = out or sys.stdout
    # The app's own warnings (e.g. a refused booking) would interleave with the report.
    configure_logging("console", logging.CRITICAL if not args.verbose else logging.WARNING)
    if args.record:
        if len(args.files) != 1:
            parser.error("--record writes exactly one FILE")
        return _record_main(args, Path(args.files[0]), out)
    return asyncio.run(_replay_main(args, out))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="replay.py",
        description="Replay recorded conversations against citas offline (real app, sandbox, "
        "frozen clock, recorded model responses) and report per turn what differs.",
    )
    parser.add_argument("files", nargs="+", metavar="FILE", help="recordings, or folders of them")
    parser.add_argument("-v", "--verbose", action="store_true", help="show every turn")
    parser.add_argument(
        "--update",
        action="store_true",
        help="rewrite the expectations of differing files from what citas did (review the diff!)",
    )
    add_progress_flags(parser, "files")
    rec = parser.add_argument_group(
        "recording", "talk to the model at OPENAI_BASE_URL / OPENAI_API_KEY (CITAS_MODEL)"
    )
    rec.add_argument("--record", action="store_true", help="record FILE instead of replaying")
    rec.add_argument(
        "--messages",
        default="-",
        help="customer messages, one per line ('#' comments and blank lines skipped), or a "
        "recording (.json) to record again with its context, fixture and messages; - is stdin",
    )
    rec.add_argument("--empresa", type=int, default=12, help="id_empresa (default 12)")
    rec.add_argument("--usuario", type=int, default=7, help="usuario_id (default 7)")
    rec.add_argument("--duracion", type=int, default=30, help="duracion_cita_minutos")
    rec.add_argument("--zona", default="America/Lima", help="zona_horaria")
    rec.add_argument("--personalidad", help="personalidad of the context")
    rec.add_argument("--session", default="51987654321", help="session_id")
    rec.add_argument("--now", help="frozen now, ISO with offset (default: now, to the minute)")
    rec.add_argument("--title", default="", help="title of the recording")
    rec.add_argument("--seed", type=Path, help="sandbox seed file (default: the bundled one)")
    return parser


# --------------------------------------------------------------------------- replay


def _expand(names: Sequence[str]) -> Iterator[Path]:
    for name in names:
        path = Path(name)
        if path.is_dir():
            yield from sorted(path.glob("*.json"))
        else:
            yield path


async def _replay_main(args: argparse.Namespace, out: TextIO) -> int:
    paths = list(_expand(args.files))
    if not paths:
        print("no recordings found in " + " ".join(args.files), file=out)
        return EXIT_ERROR
    progress = Progress.auto(len(paths), sys.stderr, force=args.progress)
    started = time.perf_counter()
    turns = different = unreadable = updated = 0
    for done, path in enumerate(paths):
        progress.update(done, path.name)
        try:
            recording = load_recording(path)
        except RecordingError as exc:
            unreadable += 1
            progress.clear()
            print(f"ERROR {exc}", file=out, flush=True)
            continue
        report = await replay(recording)
        turns += len(report.turns)
        text = format_report(str(path), report, verbose=args.verbose)
        if text:
            progress.clear()
            print(text, file=out, flush=True)
        if not report.same:
            different += 1
            if args.update:
                save_recording(report.updated(), path)
                updated += 1
                print(f"     updated {path}", file=out, flush=True)
    progress.update(len(paths))
    progress.clear()
    seconds = time.perf_counter() - started
    same = len(paths) - different - unreadable
    summary = (
        f"{len(paths)} conversations, {turns} turns: {same} same, {different} different"
        + (f", {unreadable} unreadable" if unreadable else "")
        + (f", {updated} updated" if updated else "")
        + f" ({seconds:.1f} s)"
    )
    print(summary, file=out, flush=True)
    if unreadable:
        return EXIT_ERROR
    return EXIT_DIFFERENT if different and not args.update else EXIT_SAME


# --------------------------------------------------------------------------- record


def _record_main(args: argparse.Namespace, target: Path, out: TextIO) -> int:
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        print(f"replay.py: {exc}", file=sys.stderr)
        return EXIT_ERROR
    if not settings.openai_api_key and not settings.openai_base_url:
        print(
            "replay.py: --record talks to a real model: set OPENAI_API_KEY "
            "(and OPENAI_BASE_URL for an endpoint other than OpenAI's)",
            file=sys.stderr,
        )
        return EXIT_ERROR
    try:
        plan = _plan(args)
    except (RecordingError, ValueError, OSError) as exc:
        print(f"replay.py: {exc}", file=sys.stderr)
        return EXIT_ERROR

    def show(number: int, turn: Turn, outcome: TurnOutcome) -> None:
        print(f"turn {number} «{turn.message}»", file=out)
        print("\n".join("  " + line for line in transcript(outcome)), file=out, flush=True)

    recording = asyncio.run(record(plan, settings=settings, on_turn=show))
    save_recording(recording, target)
    check = asyncio.run(replay(recording))
    print(f"recorded {len(recording.turns)} turns to {target}", file=out)
    if not check.same:
        # A fresh recording must replay as it happened; if not, something is not deterministic.
        print(format_report(str(target), check), file=out)
        return EXIT_DIFFERENT
    print("replayed it: same", file=out, flush=True)
    return EXIT_SAME


def _plan(args: argparse.Namespace) -> Recording:
    """A recording without model responses: the messages to send, with the context, session,
    clock and fixture (those of `--messages FILE.json`, or from the options)."""
    source = args.messages
    if source != "-" and source.endswith(".json"):
        earlier = load_recording(Path(source))
        turns = [Turn(message=t.message, message_id=t.message_id) for t in earlier.turns]
        return earlier.model_copy(update={"turns": turns, "title": args.title or earlier.title})
    text = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
    messages = [
        line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")
    ]
    if not messages:
        raise ValueError("no customer messages to record")
    zone = ZoneInfo(args.zona)
    now = (
        datetime.fromisoformat(args.now)
        if args.now
        else datetime.now(zone).replace(second=0, microsecond=0)
    )
    if now.tzinfo is None:
        raise ValueError("--now needs an offset, e.g. 2026-11-30T10:00:00-05:00")
    config: dict[str, object] = {
        "id_empresa": args.empresa,
        "usuario_id": args.usuario,
        "duracion_cita_minutos": args.duracion,
        "zona_horaria": args.zona,
    }
    if args.personalidad:
        config["personalidad"] = args.personalidad
    seed = SandboxSeed.load(args.seed) if args.seed else None
    return Recording(
        title=args.title,
        now=now,
        session_id=args.session,
        context={"config": config},
        fixture=bundled_fixture(args.empresa, seed),
        turns=[Turn(message=m) for m in messages],
    )
