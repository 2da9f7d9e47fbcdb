"""One report from several: a long evaluation (the 44 cases at k=3 against a model on a CPU take
hours) run in parts, by `--cases`, and put together as if it had run at once."""

from __future__ import annotations

from collections.abc import Sequence

from citas.evaluation.results import Report
from citas.evaluation.scoring import overall_figures


class MergeError(ValueError):
    """Reports that cannot be one evaluation: another model, another k."""


def merge_reports(reports: Sequence[Report]) -> Report:
    """The cases of every report, in the order first seen; a case in several reports keeps the
    runs of the last one that ran it (a part run again replaces the earlier part)."""
    if not reports:
        raise MergeError("nothing to merge")
    first = reports[0]
    for report in reports[1:]:
        if (report.model, report.k, report.demo) != (first.model, first.k, first.demo):
            raise MergeError(
                f"reports of different evaluations: {first.model} k={first.k} and "
                f"{report.model} k={report.k}"
            )
    cases = {}
    for report in reports:
        for case in report.cases:
            if case.name not in cases or case.figures is not None:
                cases[case.name] = case
    merged = list(cases.values())
    return Report(
        model=first.model, k=first.k, demo=first.demo, figures=overall_figures(merged), cases=merged
    )
