"""The demo on a stdout whose encoding is not UTF-8 (LANG=C, PYTHONIOENCODING=ascii): it still runs to its
exit code and summary; what the encoding cannot show is replaced, never a UnicodeEncodeError traceback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from _terminal import on_a_terminal

ROOT = Path(__file__).resolve().parent.parent


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "LC_", "NO_COLOR", "FORCE_COLOR"))}
    env.update(PYTHONPATH=str(ROOT), LANG="C", LC_ALL="C", PYTHONIOENCODING="ascii", **extra)
    return env


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_on_an_ascii_terminal_the_waterfall_is_drawn_in_ascii() -> None:
    """On a terminal (rich) the waterfall's bars were the block character U+2588: the summary died in the
    waterfall with a UnicodeEncodeError traceback (exit 1), after the waves had run."""
    code, shown, err = on_a_terminal([sys.executable, "-m", "shannon_otel", "demo", "--waves", "2", "--tasks", "6"],
                                     _env(TERM="xterm", COLUMNS="100"))
    out = shown.decode("ascii", "replace")
    assert b"Traceback" not in err and b"UnicodeEncodeError" not in err, err.decode()
    assert code == 0, err.decode()
    assert "Slowest wave trace" in out and "Recommendations" in out and "Telemetry" in out
    assert "\ufffd" not in out, "only ASCII reaches an ASCII terminal"


def test_a_name_the_encoding_cannot_write_is_replaced_not_a_traceback() -> None:
    """`--service-name dé` is echoed on the OTLP line: the demo died there with a UnicodeEncodeError
    traceback before running a wave. (A closed port: the export fails, exit 3 as documented.)"""
    proc = subprocess.run(
        [sys.executable, "-m", "shannon_otel", "demo", "--waves", "1", "--tasks", "2", "--service-name", "d\xe9",
         "--otlp-endpoint", f"127.0.0.1:{_closed_port()}", "--export-timeout", "0.5"],
        capture_output=True, env=_env(), timeout=120, check=False,
    )
    out, err = proc.stdout.decode("ascii"), proc.stderr.decode("ascii", "replace")
    assert "Traceback" not in err, err
    assert "as service 'd?'" in out
    assert "== Telemetry ==" in out
    assert proc.returncode == 3, err


def test_check_echoing_a_url_the_encoding_cannot_write_prints_its_line() -> None:
    """`check` printed its result line, which quotes the URL, with the strict ascii codec: a URL with a
    non-ASCII character ended it in a UnicodeEncodeError traceback instead of its FAIL line."""
    url = f"http://127.0.0.1:{_closed_port()}/d\xe9"
    proc = subprocess.run(
        [sys.executable, "-m", "shannon_otel", "check", "--skip-otlp", "--prometheus", url, "--timeout", "5"],
        capture_output=True, env=_env(), timeout=120, check=False,
    )
    out, err = proc.stdout.decode("ascii"), proc.stderr.decode("ascii", "replace")
    assert "Traceback" not in err, err
    assert out.startswith(f"FAIL Prometheus {url[:-1]}?: "), out
    assert proc.returncode == 1, err


def test_rules_the_encoding_cannot_write_are_refused_not_garbled(tmp_path: Path) -> None:
    """`rules --stall-after-wave dé=40m` on an ascii stdout died in a UnicodeEncodeError traceback. A '?' in
    place of the 'é' would be a matcher for another wave: stdout is refused (exit 1, said why), --out works."""
    command = [sys.executable, "-m", "shannon_otel", "rules", "--stall-after-wave", "d\xe9=40m"]
    proc = subprocess.run(command, capture_output=True, env=_env(), timeout=120, check=False)
    err = proc.stderr.decode("ascii", "replace")
    assert "Traceback" not in err, err
    assert proc.returncode == 1, err
    assert proc.stdout == b""
    assert "cannot write the rules to stdout" in err and "--out FILE" in err
    out = tmp_path / "rules.yml"
    written = subprocess.run([*command, "--out", str(out)], capture_output=True, env=_env(), timeout=120, check=False)
    assert written.returncode == 0, written.stderr.decode("ascii", "replace")
    assert 'shannon_wave_name!~"d\xe9"' in out.read_text(encoding="utf-8")
