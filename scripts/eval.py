#!/usr/bin/env python3
"""Evaluate a model on the cases in evals/: pass^1, pass^k, bookings, claims, tokens, latency.

    python scripts/eval.py --demo -k 1                         # the bundled demo model
    OPENAI_API_KEY=... python scripts/eval.py -k 3 --json out.json
    python scripts/eval.py --cases '1*' --compare out.json

The case format is described in README.md ("Evaluation"); the code lives in `citas/evaluation/`
so the test suite runs it the same way.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a checkout without installing it

from citas.evaluation.cli import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main(cases_dir=ROOT / "evals"))
