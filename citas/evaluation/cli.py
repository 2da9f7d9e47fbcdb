"""`scripts/eval.py`: run the evaluation cases against a model and report how it did.

    python scripts/eval.py --demo -k 1                     # the bundled rule-based demo model
    OPENAI_API_KEY=... python scripts/eval.py -k 3 --json out.json
    python scripts/eval.py --cases '0*,santiago*' --compare out.json
    python scripts/eval.py --merge part1.json part2.json --json all.json

Exit status: 0 when the evaluation ran (it is not a gate), 1 when `--min-pass1` is given and the
overall pass^1 is below it, 2 when a case file is invalid or the command line is wrong.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TextIO

from citas.agent.model import ChatModel
from citas.agent.openai_model import OpenAIChatModel, create_client
from citas.config import Settings
from citas.errors import ConfigError
from citas.evaluation.case import Case, CaseError, load_case, select_cases
from citas.evaluation.compare import compare_reports, format_comparison
from citas.evaluation.merge import merge_reports
from citas.evaluation.results import Report, ReportError, RunResult, load_report
from citas.evaluation.runner import Contender, Plan, evaluate, skip_reason
from citas.evaluation.table import format_failures, format_table
from citas.logs import configure_logging
from citas.replay.report import Progress, add_progress_flags
from citas.sandbox.demo_model import demo_model

EXIT_RAN, EXIT_BELOW_GATE, EXIT_ERROR = 0, 1, 2
DEMO_CONCURRENCY = 4  # in-process and instant: several runs at once cost nothing


def main(
    argv: Sequence[str] | None = None,
    *,
    cases_dir: Path,
    out: TextIO | None = None,
    env: Mapping[str, str] | None = None,
) -> int:
    """`env` replaces the process environment (tests)."""
    args = _parser(cases_dir).parse_args(argv)
    out = out or sys.stdout
    # The app's own warnings (a refused booking, a failed model call) would interleave with
    # the table; what matters of them is in the report.
    configure_logging("console", logging.CRITICAL)
    try:
        previous = load_report(args.compare) if args.compare else None
        if args.merge:
            merged: Report | None = merge_reports([load_report(path) for path in args.merge])
        else:
            merged = None
            cases = _load(args.dir, args.cases)
            settings = Settings.from_env(env)
    except (CaseError, ConfigError, ReportError, ValueError) as exc:
        print(f"eval.py: {exc}", file=sys.stderr)
        return EXIT_ERROR
    if merged is not None:
        return _report(args, merged, previous, out)
    if not args.demo and not (settings.openai_api_key or settings.openai_base_url):
        print(
            "eval.py: set OPENAI_API_KEY (and OPENAI_BASE_URL, CITAS_MODEL for another "
            "endpoint or model), or use --demo for the bundled demo model",
            file=sys.stderr,
        )
        return EXIT_ERROR
    return _report(args, asyncio.run(_run(args, cases, settings, env)), previous, out)


def _report(args: argparse.Namespace, report: Report, previous: Report | None, out: TextIO) -> int:
    if previous is not None:
        comparison = compare_reports(report, previous, str(args.compare))
        report = report.model_copy(update={"comparison": comparison})
    _show(report, out, verbose=args.verbose)
    if args.json:
        args.json.write_text(report.to_json(), encoding="utf-8")
        print(f"report written to {args.json}", file=out)
    if args.min_pass1 is not None and report.figures.pass1 < args.min_pass1:
        print(
            f"pass^1 {report.figures.pass1:.3f} is below --min-pass1 {args.min_pass1:.3f}",
            file=out,
        )
        return EXIT_BELOW_GATE
    return EXIT_RAN


def _parser(cases_dir: Path) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="eval.py",
        description="Run the evaluation cases against the model at OPENAI_BASE_URL / "
        "OPENAI_API_KEY (CITAS_MODEL), or the bundled demo model, k times each, each run with "
        "the real app in-process, its own sandbox and a frozen clock; report pass^1 and pass^k.",
    )
    parser.add_argument(
        "--demo", action="store_true", help='the rule-based demo model (skips "demo": false cases)'
    )
    parser.add_argument("-k", type=_positive, default=3, help="runs per case (default 3)")
    parser.add_argument(
        "--cases",
        nargs="+",
        default=[],
        metavar="PATTERN",
        help="case names or globs (with or without .json; commas allowed); default: all",
    )
    parser.add_argument("--dir", type=Path, default=cases_dir, help=f"default {cases_dir}")
    parser.add_argument(
        "--concurrency",
        type=_positive,
        help=f"runs at once (default 1 against an endpoint, {DEMO_CONCURRENCY} with --demo)",
    )
    parser.add_argument("--json", type=Path, metavar="OUT", help="write the report as JSON")
    parser.add_argument(
        "--compare", type=Path, metavar="PREVIOUS", help="an earlier --json report to compare"
    )
    parser.add_argument(
        "--merge",
        type=Path,
        nargs="+",
        metavar="REPORT",
        help="run nothing: put together --json reports of parts of one evaluation (same model "
        "and k, run by --cases) and report them as one",
    )
    parser.add_argument(
        "--min-pass1",
        type=_share,
        metavar="X",
        help="exit 1 when the overall pass^1 is below X (0..1): makes the run a gate",
    )
    parser.add_argument(
        "--customer-model",
        metavar="NAME",
        help="the model playing simulated customers, on the same endpoint (default CITAS_MODEL)",
    )
    add_progress_flags(parser, "runs")
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="show the conversation of each failed run"
    )
    return parser


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _share(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {value}")
    return value


def _load(folder: Path, patterns: Sequence[str]) -> list[tuple[str, Case]]:
    """Every selected case, or a `CaseError` naming every invalid file."""
    paths = select_cases(folder, patterns)
    if not paths:
        raise ValueError(f"no case in {folder} matches {' '.join(patterns) or '*.json'}")
    cases: list[tuple[str, Case]] = []
    problems: list[str] = []
    for path in paths:
        try:
            cases.append((path.stem, load_case(path)))
        except CaseError as exc:
            problems.append(str(exc))
    if problems:
        raise CaseError("\n".join(problems))
    return cases


async def _run(
    args: argparse.Namespace,
    cases: list[tuple[str, Case]],
    settings: Settings,
    env: Mapping[str, str] | None,
) -> Report:
    if args.demo:
        contender = Contender("demo", demo_model, demo=True)
        concurrency = args.concurrency or DEMO_CONCURRENCY
        customer_client = None
        customer: ChatModel | None = None
    else:
        contender = Contender(settings.model, lambda: None)
        concurrency = args.concurrency or 1
        customer_client = create_client(
            settings.openai_api_key,
            settings.openai_base_url,
            settings.llm_timeout_seconds,
            settings.llm_max_retries,
        )
        customer = OpenAIChatModel(
            customer_client,
            args.customer_model or settings.model,
            call_timeout=settings.llm_timeout_seconds,
        )
    plan = Plan(k=args.k, concurrency=concurrency, env=env, customer_model=customer)
    total = sum(args.k for _, case in cases if skip_reason(case, contender, plan) is None)
    progress = Progress.auto(total, sys.stderr, force=args.progress, verb="ran")
    done = 0

    def advance(name: str, _run: RunResult) -> None:
        nonlocal done
        done += 1
        progress.update(done, name)

    try:
        return await evaluate(cases, contender, replace(plan, on_run=advance))
    finally:
        progress.clear()
        if customer_client is not None:
            await customer_client.close()


def _show(report: Report, out: TextIO, *, verbose: bool) -> None:
    print(format_table(report), file=out)
    failures = format_failures(report, verbose=verbose)
    if failures:
        print(f"\n{failures}", file=out)
    if report.comparison is not None:
        print(f"\n{format_comparison(report.comparison)}", file=out)
