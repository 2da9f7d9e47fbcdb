"""Smoke test of scripts/bench.py: a tiny run prints every figure (timings are not judged)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the bench reads /proc")


def test_quick_bench_prints_every_figure() -> None:
    argv = [sys.executable, "scripts/bench.py", "--quick", "--levels", "1,2"]
    argv += ["--turns", "2", "--conversations", "2", "--rounds", "1"]
    done = subprocess.run(argv, check=False, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    for heading in ("turns/s", "p50 ms", "p99 ms", "CPU ms/turn", "LLM/turn", "backend/turn"):
        assert heading in out
    assert "RSS MiB" in out and "citas/floor" in out
    assert "concurrency 1:" in out and "concurrency 2:" in out
    # A ratio, or "—" when a tiny run's CPU stays under one clock tick (10 ms) and reads 0.
    ratio = r"(?:[\d.]+×|—)"
    assert re.search(rf"CPU per turn, citas/floor: C=1 {ratio} \w+; C=2 {ratio} \w+", out)
    assert "p50 at concurrency" not in out  # no level 20
    assert "failed turns" not in out
    # Counts are exact, not timings: one tool round is two model calls and one backend call,
    # and the business info was cached by the warm-up.
    levels = out.split("\ntargets")[0]
    rows = re.findall(r"^  (citas|floor) +\d.*$", levels, re.MULTILINE)
    assert rows == ["citas", "floor"] * 2
    for line in re.findall(r"^  (?:citas|floor) +\d.*$", levels, re.MULTILINE):
        cells = line.split()
        assert cells[5:7] == ["2.00", "1.00"], line
    assert "backend calls per turn: 1.00 for 1.00 tool calls" in out
    prefix = re.findall(r"history budget (\d+): turns 2\.\.4: (\d+) (\d+) (\d+) %", out)
    assert [budget for budget, *_ in prefix] == ["60", "20"]
    assert all(0 < int(share) <= 100 for _, *shares in prefix for share in shares)
    # The history phase: a turn's CPU at a short and a long history, for citas and the floor.
    history = re.findall(r"^  (citas|floor) +[\d.]+ → [\d.]+ ms/turn: ", out, re.MULTILINE)
    assert history == ["citas", "floor"]
    assert "failed turns after" not in out
