"""Text for people: replay reports, turn transcripts with timings, and a tiny progress bar."""

from __future__ import annotations

import argparse
import json
from typing import TextIO

from citas.replay.compare import Difference, show_value
from citas.replay.runner import ReplayReport
from citas.testing.harness import ObservedCall, TurnOutcome

_LONG = 60
_RESULT_SUMMARY = ("ok", "disponible", "reservado", "ya_existia", "motivo", "error")


def format_report(name: str, report: ReplayReport, *, verbose: bool = False) -> str:
    """A differing conversation turn by turn; a same one in one line (only when verbose)."""
    turns = len(report.turns)
    title = f" — {report.recording.title}" if report.recording.title else ""
    if report.same:
        if not verbose:
            return ""
        lines = [f"ok   {name}{title} ({turns} turns)"]
    else:
        differing = sum(1 for t in report.turns if t.differences)
        lines = [f"FAIL {name}{title} ({differing} of {turns} turns differ)"]
    for turn in report.turns:
        if not (verbose or turn.differences):
            continue
        lines.append(f"  turn {turn.number} «{_clip(turn.turn.message)}»")
        if verbose:
            lines += ["    " + line for line in transcript(turn.outcome)]
        lines += ["    " + line for diff in turn.differences for line in format_difference(diff)]
    return "\n".join(lines)


def format_difference(diff: Difference) -> list[str]:
    text = str(diff)
    if len(text) <= 100:
        return [text]
    # Long values (replies) one under the other, so the change is easy to spot.
    return [
        f"{diff.where}:",
        f"  expected {show_value(diff.expected)}",
        f"  got      {show_value(diff.actual)}",
    ]


def transcript(outcome: TurnOutcome, *, timings: bool = False, reply: bool = True) -> list[str]:
    """The turn's model answers and tool calls, then (with `reply`) the reply and link, then
    (with `timings`) the turn's duration; model and tool lines carry timings too."""
    lines: list[str] = []
    calls = iter(outcome.tool_calls)
    models = outcome.model_calls
    for number, model in enumerate(models, start=1):
        took = f" ({_ms(model.seconds)})" if timings else ""
        asked = len(model.reply.tool_calls)
        lines.append(f"model {number}{took}: " + (f"{asked} tool call(s)" if asked else "text"))
        for _ in range(asked):
            call = next(calls, None)
            if call is not None:
                lines += ["  " + line for line in describe_call(call)]
        if timings and asked and number < len(models):
            # From this answer to the next request: the tools (concurrent within a round).
            gap = models[number].started - (model.started + model.seconds)
            lines.append(f"  tools: {_ms(gap)}")
    for call in calls:  # no model answers observed (e.g. a replay without the recorder)
        lines += describe_call(call)
    if reply:
        lines.append(f"reply: {outcome.reply}")
        if outcome.url:
            lines.append(f"url: {outcome.url}")
        if outcome.error:
            lines.append(f"error: {outcome.error}")
    if timings:
        lines.append(f"turn: {_ms(outcome.seconds)}")
    return lines


def describe_call(call: ObservedCall) -> list[str]:
    """`name {arguments}` and, below it, `→ ok=true disponible=false … — mensaje`."""
    arguments = call.decoded_arguments()
    shown = (
        json.dumps(arguments, ensure_ascii=False)
        if not isinstance(arguments, str)
        else repr(arguments)
    )
    lines = [f"{call.name} {shown}"]
    if call.result is not None:
        flags = " ".join(
            f"{key}={json.dumps(call.result[key], ensure_ascii=False)}"
            for key in _RESULT_SUMMARY
            if key in call.result
        )
        message = call.result.get("mensaje")
        lines.append(f"  → {flags}" + (f" — {message}" if message else ""))
    return lines


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def _clip(text: str, width: int = _LONG) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


class Progress:
    """`[#####.....] 7/15 name` redrawn on a terminal; on a pipe, a plain line every tenth."""

    def __init__(
        self, total: int, stream: TextIO, *, redraw: bool, lines: bool, verb: str = "replayed"
    ) -> None:
        self.total = total
        self.stream = stream
        self.redraw = redraw
        self.lines = lines and not redraw
        self.verb = verb  # what the plain lines say was done: `replayed 7/15`
        self._next_line = max(total // 10, 1)

    @classmethod
    def auto(
        cls, total: int, stream: TextIO, force: bool | None = None, *, verb: str = "replayed"
    ) -> Progress:
        """A bar on a terminal when there is more than one item; lines on a pipe from 50 items;
        `force` True/False overrides the choice."""
        tty = stream.isatty()
        if force is not None:
            return cls(total, stream, redraw=force and tty, lines=force and not tty, verb=verb)
        return cls(
            total, stream, redraw=tty and total > 1, lines=not tty and total >= 50, verb=verb
        )

    def update(self, done: int, label: str = "") -> None:
        if self.redraw:
            width = 24
            filled = width * done // max(self.total, 1)
            bar = "#" * filled + "." * (width - filled)
            self.stream.write(f"\r[{bar}] {done}/{self.total} {_clip(label, 40)}\x1b[K")
            self.stream.flush()
        elif self.lines and done >= self._next_line:
            self.stream.write(f"{self.verb} {done}/{self.total}\n")
            self.stream.flush()
            self._next_line = done + max(self.total // 10, 1)

    def clear(self) -> None:
        """Erase the bar before other output goes to the terminal."""
        if self.redraw:
            self.stream.write("\r\x1b[K")
            self.stream.flush()


def add_progress_flags(parser: argparse.ArgumentParser, items: str) -> None:
    """`--progress` / `--no-progress` (default: a bar on a terminal, lines on a pipe from 50
    `items`), stored as `progress` (None, True or False) for `Progress.auto(force=...)`."""
    progress = parser.add_mutually_exclusive_group()
    progress.add_argument(
        "--progress",
        dest="progress",
        action="store_true",
        default=None,
        help="always show progress (default: a bar on a terminal, "
        f"lines on a pipe from 50 {items})",
    )
    progress.add_argument(
        "--no-progress", dest="progress", action="store_false", help="never show progress"
    )
