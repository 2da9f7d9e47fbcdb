"""Recorded conversations: the file format, offline replay, recording against a real model.

Shared by `scripts/replay.py`, the test suite (which replays `tests/conversations/`) and
`citas chat` (which uses the in-process harness to show tool calls and timings).
"""

from citas.replay.compare import Difference, compare, expectation
from citas.replay.format import (
    FORMAT,
    Expectation,
    ModelResponse,
    Recording,
    RecordingError,
    Turn,
    load_recording,
    save_recording,
)
from citas.replay.harness import LiveCitas, ObservedCall, TurnOutcome
from citas.replay.runner import ReplayReport, TurnReport, bundled_fixture, record, replay

__all__ = [
    "FORMAT",
    "Difference",
    "Expectation",
    "LiveCitas",
    "ModelResponse",
    "ObservedCall",
    "Recording",
    "RecordingError",
    "ReplayReport",
    "Turn",
    "TurnOutcome",
    "TurnReport",
    "bundled_fixture",
    "compare",
    "expectation",
    "load_recording",
    "record",
    "replay",
    "save_recording",
]
