"""The evaluation: cases (`evals/*.json`) played k times against a model with the real app
in-process, judged on the end state (bookings made, facts said, no false confirmations), and
reported as pass^1 / pass^k with costs and latency. `scripts/eval.py` is its command line."""

from citas.evaluation.case import Case, CaseError, load_case, select_cases
from citas.evaluation.claims import claims_booking, claims_change
from citas.evaluation.compare import compare_reports, format_comparison
from citas.evaluation.customer import STOP_MARKER, ScriptedCustomer, SimulatedCustomer
from citas.evaluation.results import Report, ReportError, RunResult, load_report
from citas.evaluation.runner import Contender, Plan, evaluate, play
from citas.evaluation.scoring import judge, pass_hat_k
from citas.evaluation.table import format_failures, format_table

__all__ = [
    "STOP_MARKER",
    "Case",
    "CaseError",
    "Contender",
    "Plan",
    "Report",
    "ReportError",
    "RunResult",
    "ScriptedCustomer",
    "SimulatedCustomer",
    "claims_booking",
    "claims_change",
    "compare_reports",
    "evaluate",
    "format_comparison",
    "format_failures",
    "format_table",
    "judge",
    "load_case",
    "load_report",
    "pass_hat_k",
    "play",
    "select_cases",
]
