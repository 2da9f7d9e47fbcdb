"""Settings: defaults, validation naming the variable, and the CLI's one-line failure."""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest

from citas.config import Settings
from citas.errors import ConfigError


def test_defaults_match_the_spec() -> None:
    settings = Settings.from_env({})
    assert (settings.model, settings.host, settings.port) == ("gpt-4o-mini", "127.0.0.1", 8080)
    assert settings.session_ttl_seconds == 86400 and settings.max_sessions == 10000
    assert settings.max_message_chars == 4096 and settings.timezone == "America/Lima"
    assert settings.log_format == "json" and settings.redis_url is None
    assert settings.log_level == "info" and settings.log_level_number == logging.INFO
    # Sent to the model only when set; the history budget always applies.
    assert settings.llm_max_tokens is None and settings.llm_temperature is None
    assert settings.history_max_tokens == 6000


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("CITAS_PORT", "eighty"),
        ("CITAS_PORT", "70000"),
        ("CITAS_TIMEZONE", "Mars/Olympus"),
        ("CITAS_LOG_FORMAT", "xml"),
        ("CITAS_LOG_LEVEL", "verbose"),
        ("CITAS_LOG_LEVEL", "critical"),
        ("CITAS_MAX_SESSIONS", "0"),
        ("CITAS_CALENDAR_API_URL", "not a url"),
        ("CITAS_LLM_MAX_TOKENS", "0"),
        ("CITAS_LLM_TEMPERATURE", "2.5"),
        ("CITAS_LLM_TEMPERATURE", "-0.1"),
        ("CITAS_HISTORY_MAX_TOKENS", "0"),
    ],
)
def test_bad_values_name_the_variable(variable: str, value: str) -> None:
    with pytest.raises(ConfigError, match=variable):
        Settings.from_env({variable: value})


@pytest.mark.parametrize(
    ("value", "number"),
    [
        ("debug", logging.DEBUG),
        ("INFO", logging.INFO),
        ("Warning", logging.WARNING),
        ("error", logging.ERROR),
    ],
)
def test_log_level_in_any_case(value: str, number: int) -> None:
    settings = Settings.from_env({"CITAS_LOG_LEVEL": value})
    assert (settings.log_level, settings.log_level_number) == (value.lower(), number)


def test_empty_means_unset() -> None:
    assert Settings.from_env({"CITAS_PORT": ""}).port == 8080


@pytest.mark.parametrize(
    ("variable", "value"), [("CITAS_TIMEZONE", "Nowhere/City"), ("CITAS_LOG_LEVEL", "loud")]
)
def test_cli_stops_with_one_line_naming_the_variable(variable: str, value: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "citas", "serve"],
        env={variable: value, "PATH": ""},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert variable in result.stderr
