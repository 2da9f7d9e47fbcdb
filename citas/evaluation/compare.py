"""`--compare`: what got better or worse since an earlier report, case by case (pass^1, then
pass^k, then the share of expected bookings made right) and overall."""

from __future__ import annotations

from citas.evaluation.results import (
    CaseChange,
    CaseResult,
    Comparison,
    Figures,
    Report,
    Verdict,
)


def compare_reports(current: Report, previous: Report, previous_name: str) -> Comparison:
    before = {case.name: case for case in previous.cases}
    after = {case.name: case for case in current.cases}
    changes = [_change(name, before.get(name), after.get(name)) for name in after]
    changes += [_change(name, case, None) for name, case in before.items() if name not in after]
    return Comparison(
        previous=previous_name,
        previous_model=previous.model,
        previous_k=previous.k,
        overall=_figures_change("overall", previous.figures, current.figures),
        cases=changes,
    )


def _change(name: str, before: CaseResult | None, after: CaseResult | None) -> CaseChange:
    if before is None:
        return CaseChange(name=name, verdict="new")
    if after is None:
        return CaseChange(name=name, verdict="gone")
    if before.figures is None or after.figures is None:
        return CaseChange(name=name, verdict="skipped")
    return _figures_change(name, before.figures, after.figures)


def _figures_change(name: str, before: Figures, after: Figures) -> CaseChange:
    return CaseChange(
        name=name,
        verdict=_verdict(before, after),
        pass1_before=before.pass1,
        pass1_after=after.pass1,
        passk_before=before.passk,
        passk_after=after.passk,
        right_before=f"{before.bookings.right}/{before.bookings.expected}",
        right_after=f"{after.bookings.right}/{after.bookings.expected}",
    )


def _verdict(before: Figures, after: Figures) -> Verdict:
    # Rounded: the same success rate written by two runs must not read as a change.
    for old, new in (
        (before.pass1, after.pass1),
        (before.passk, after.passk),
        (_right_share(before), _right_share(after)),
    ):
        if round(new, 6) > round(old, 6):
            return "better"
        if round(new, 6) < round(old, 6):
            return "worse"
    return "same"


def _right_share(figures: Figures) -> float:
    expected = figures.bookings.expected
    return figures.bookings.right / expected if expected else 1.0


def format_comparison(comparison: Comparison) -> str:
    lines = [
        f"compared with {comparison.previous} "
        f"(model {comparison.previous_model}, k {comparison.previous_k}):",
        f"{'case':<34} {'':<7} {'pass^1':<15} {'pass^k':<15} bookings right",
    ]
    changed = [c for c in comparison.cases if c.verdict in ("better", "worse")]
    for change in [*changed, comparison.overall]:
        lines.append(_line(change))
    same = sum(c.verdict == "same" for c in comparison.cases)
    notes = [f"{same} case(s) the same"]
    for verdict in ("new", "gone", "skipped"):
        names = [c.name for c in comparison.cases if c.verdict == verdict]
        if names:
            notes.append(f"{verdict}: {', '.join(names)}")
    lines.append("; ".join(notes))
    return "\n".join(lines)


def _line(change: CaseChange) -> str:
    def arrow(old: float | str | None, new: float | str | None) -> str:
        show = [f"{v:.3f}" if isinstance(v, float) else str(v) for v in (old, new)]
        return f"{show[0]} → {show[1]}"

    return (
        f"{change.name:<34} {change.verdict:<7} "
        f"{arrow(change.pass1_before, change.pass1_after):<15} "
        f"{arrow(change.passk_before, change.passk_after):<15} "
        f"{arrow(change.right_before, change.right_after)}"
    )
