"""The OTel SDK's repeated warnings, said once by ``shannon-otel`` (a real demo run in a subprocess).

Before: ``OTEL_RESOURCE_ATTRIBUTES=junk`` was warned twice (the SDK's logs module builds a default resource as it is
imported, configure() builds the demo's); ``OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT=0`` (allowed by the specification:
integers 0..2**31-1) printed one truncation warning per string attribute, 36 lines for a one-wave demo of two tasks.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from shannon_otel.cli import main

ROOT = Path(__file__).resolve().parents[1]


def _demo(**env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "_OTEL_"))}
    return subprocess.run(
        [sys.executable, "-m", "shannon_otel", "demo", "--plain", "--waves", "1", "--tasks", "2"], capture_output=True,
        text=True, env={**clean, "PYTHONPATH": str(ROOT), **env}, timeout=90, check=False,
    )


def test_a_malformed_resource_attribute_is_warned_once() -> None:
    done = _demo(OTEL_RESOURCE_ATTRIBUTES="junk")
    assert done.returncode == 0, done.stderr
    [warning] = done.stderr.splitlines()
    assert "junk" in warning


@pytest.mark.parametrize("limit", ["0", "3"])
def test_a_value_length_limit_is_honoured_and_its_truncation_warned_once(limit: str) -> None:
    done = _demo(OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT=limit)
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines() == [f"String attribute value exceeds max length of {limit}, truncating."]
    assert "spans recorded: " in done.stdout


def test_the_command_leaves_the_sdk_loggers_as_it_found_them(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rules"]) == 0
    for name in ("opentelemetry.sdk.resources", "opentelemetry.attributes"):
        assert logging.getLogger(name).filters == []
