"""The evaluation for people: one row per case, the overall row, why runs failed and (verbose)
the failed runs' conversations."""

from __future__ import annotations

import json

from citas.evaluation.results import Figures, Report, RunResult, ToolCallRecord

_NAME = 34
_HEADER = (
    f"{'case':<{_NAME}} {'pass^1':>6} {'pass^k':>6} {'ok':>7}  {'bookings r/w/m/u':<16} "
    f"{'claims b/c':>10} {'invalid':>7} {'calls':>5} {'tokens':>7} {'p50 s':>7} {'p95 s':>7} "
    f"{'errors':>6}"
)


def format_table(report: Report) -> str:
    lines = [
        f"model {report.model} · k {report.k} · {len(report.cases)} cases"
        + (" · demo" if report.demo else ""),
        _HEADER.replace("pass^k", f"pass^{report.k}".rjust(6)),
    ]
    for case in report.cases:
        if case.figures is None:
            lines.append(f"{_clip(case.name, _NAME):<{_NAME}} skipped: {case.skipped}")
        else:
            lines.append(_row(_clip(case.name, _NAME), case.figures))
    ran = sum(case.figures is not None for case in report.cases)
    skipped = len(report.cases) - ran
    label = f"overall ({ran} cases ran" + (f", {skipped} skipped)" if skipped else ")")
    lines.append(_row(label, report.figures))
    return "\n".join(lines)


def _row(label: str, f: Figures) -> str:
    b = f.bookings
    seconds = f.seconds_per_turn
    p50, p95 = (f"{seconds.p50:.2f}", f"{seconds.p95:.2f}") if seconds else ("-", "-")
    tokens = f.tokens.prompt + f.tokens.completion
    claims = f"{f.unbooked_claims}/{f.unchanged_claims}"  # of a booking / of a change
    return (
        f"{label:<{_NAME}} {f.pass1:>6.3f} {f.passk:>6.3f} {f'{f.passed}/{f.runs}':>7}  "
        f"{f'{b.right}/{b.wrong}/{b.missing}/{b.unexpected}':<16} {claims:>10} "
        f"{f.invalid_tool_calls:>7} {f.model_calls:>5} {_count(tokens):>7} {p50:>7} {p95:>7} "
        f"{f.errors:>6}"
    )


def format_failures(report: Report, *, verbose: bool = False) -> str:
    """Each failing case's reasons, runs sharing a reason on one line; with `verbose`, the
    conversation of every failed run."""
    lines: list[str] = []
    for case in report.cases:
        failed = [run for run in case.runs if not run.passed]
        if not failed:
            continue
        lines.append(f"FAIL {case.name} — {case.title}")
        lines += [f"  {line}" for line in _reasons(failed)]
        if verbose:
            for run in failed:
                lines.append(f"  run {run.run}:")
                lines += [f"    {line}" for line in transcript(run)]
    return "\n".join(lines)


def _reasons(runs: list[RunResult]) -> list[str]:
    by_reason: dict[str, list[int]] = {}
    for run in runs:
        for reason in run.failures:
            by_reason.setdefault(reason, []).append(run.run)
    return [
        f"run{'s' if len(numbers) > 1 else ''} {', '.join(map(str, numbers))}: {reason}"
        for reason, numbers in by_reason.items()
    ]


def transcript(run: RunResult) -> list[str]:
    lines: list[str] = []
    for number, turn in enumerate(run.turns, start=1):
        lines.append(f"{number} cliente: {turn.customer}")
        lines += [f"    {line}" for call in turn.tool_calls for line in _call(call)]
        lines.append(f"  citas: {turn.reply}")
        if turn.error:
            lines.append(f"  error: {turn.error}")
    return lines


def _call(call: ToolCallRecord) -> list[str]:
    arguments = json.dumps(call.arguments, ensure_ascii=False)
    lines = [f"{call.name} {arguments}"]
    if call.result is not None:
        said = call.result.get("mensaje") or call.result.get("error") or ""
        lines.append(f"  → ok={json.dumps(call.result.get('ok'))} {said}".rstrip())
    return lines


def _count(n: int) -> str:
    if n >= 1_000_000:
        return f"{n / 1_000_000:.2f}M"
    if n >= 1_000:
        return f"{n / 1_000:.1f}k"
    return str(n)


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"
