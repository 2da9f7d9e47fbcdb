"""Settings: defaults, validation naming the variable, and the CLI's one-line failure."""

from __future__ import annotations

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


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("CITAS_PORT", "eighty"),
        ("CITAS_PORT", "70000"),
        ("CITAS_TIMEZONE", "Mars/Olympus"),
        ("CITAS_LOG_FORMAT", "xml"),
        ("CITAS_MAX_SESSIONS", "0"),
        ("CITAS_CALENDAR_API_URL", "not a url"),
    ],
)
def test_bad_values_name_the_variable(variable: str, value: str) -> None:
    with pytest.raises(ConfigError, match=variable):
        Settings.from_env({variable: value})


def test_empty_means_unset() -> None:
    assert Settings.from_env({"CITAS_PORT": ""}).port == 8080


def test_cli_stops_with_one_line_naming_the_variable() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "citas", "serve"],
        env={"CITAS_TIMEZONE": "Nowhere/City", "PATH": ""},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "CITAS_TIMEZONE" in result.stderr
