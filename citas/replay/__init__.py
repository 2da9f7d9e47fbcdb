"""Recorded conversations: the file format, offline replay, recording against a real model.

Shared by `scripts/replay.py` and the test suite (which replays `tests/conversations/`); both
run citas through the one harness, `citas.testing.harness`.
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
from citas.replay.runner import ReplayReport, TurnReport, bundled_fixture, record, replay

__all__ = [
    "FORMAT",
    "Difference",
    "Expectation",
    "ModelResponse",
    "Recording",
    "RecordingError",
    "ReplayReport",
    "Turn",
    "TurnReport",
    "bundled_fixture",
    "compare",
    "expectation",
    "load_recording",
    "record",
    "replay",
    "save_recording",
]
