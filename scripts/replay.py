#!/usr/bin/env python3
"""Replay recorded conversations offline, or record one against a real model.

    python scripts/replay.py tests/conversations/                 # replay the whole corpus
    python scripts/replay.py FILE... [--verbose] [--update]
    OPENAI_API_KEY=... python scripts/replay.py --record new.json --messages msgs.txt

The file format is described in README.md ("Recorded conversations"); the code lives in
`citas/replay/` so the test suite replays the same way.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a checkout without installing it

from citas.replay.cli import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main())
