"""`demo --service-name` typed in UTF-8 under a C locale without UTF-8 mode (PYTHONUTF8=0): Python hands the
bytes it could not decode on as surrogate escapes. They are the UTF-8 the user typed: taken as such."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from shannon_otel.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent


def _c_locale() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "LC_", "LANG", "PYTHON"))}
    env.update(PYTHONPATH=str(ROOT), LC_ALL="C", PYTHONUTF8="0", PYTHONCOERCECLOCALE="0")
    return env


def test_an_escaped_utf8_name_is_the_name_typed() -> None:
    """Before: the escapes reached configure(), which refused them ("service_name must be text encodable as
    UTF-8"), a usage error naming a parameter the user never saw."""
    escaped = "d\xc3\xa9".encode("latin-1").decode("ascii", "surrogateescape")  # 'd\udcc3\udca9', as argv has it
    assert build_parser().parse_args(["demo", "--service-name", escaped]).service_name == "d\xe9"


def test_a_name_not_in_utf8_is_a_usage_error_naming_the_flag(capsys: pytest.CaptureFixture[str]) -> None:
    latin1 = b"d\xe9".decode("ascii", "surrogateescape")  # bytes that are not UTF-8 at all
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(["demo", "--service-name", latin1])
    assert exit_.value.code == 2
    assert "argument --service-name: expected a name in UTF-8" in capsys.readouterr().err


def test_the_demo_runs_under_a_c_locale_with_a_utf8_name() -> None:
    """The whole command under that locale: it ran no wave, exit 2."""
    proc = subprocess.run(
        [sys.executable.encode(), b"-m", b"shannon_otel", b"demo", b"--waves", b"1", b"--tasks", b"2",
         b"--service-name", "d\xe9".encode()],
        capture_output=True, env=_c_locale(), timeout=120, check=False,
    )
    err = proc.stderr.decode("utf-8", "replace")
    assert "Traceback" not in err, err
    assert proc.returncode == 0, err
    assert b"== Telemetry ==" in proc.stdout
