"""The demo on a terminal whose COLUMNS variable says nothing usable: the summary fits the terminal itself."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from _terminal import on_a_terminal

ROOT = Path(__file__).resolve().parent.parent
TERMINAL_COLUMNS = 90


def _on_a_terminal(columns: str) -> tuple[int, str, str]:
    """(exit code, what the terminal showed, stderr) of a short demo on a terminal of TERMINAL_COLUMNS."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "NO_COLOR", "FORCE_COLOR"))}
    env.update(PYTHONPATH=str(ROOT), TERM="xterm", COLUMNS=columns, PYTHONIOENCODING="utf-8")
    code, out, err = on_a_terminal([sys.executable, "-m", "shannon_otel", "demo", "--waves", "2", "--tasks", "6"],
                                   env, TERMINAL_COLUMNS)
    return code, out.decode("utf-8", "replace"), err.decode("utf-8", "replace")


def test_columns_zero_is_the_terminals_width_not_a_traceback() -> None:
    """rich took COLUMNS=0 as a console 0 columns wide: the summary's word wrap raised "invalid width 0"
    (a ValueError traceback, exit 1) after the waves had run."""
    code, out, err = _on_a_terminal("0")
    assert "Traceback" not in err, err
    assert code == 0, err
    summary = out[out.index("Recommendations"):]
    assert "Telemetry" in summary
    widest = max(len(line.rstrip("\r")) for line in summary.split("\n") if "\x1b" not in line)
    assert widest <= TERMINAL_COLUMNS
