"""The demo's summary on narrow terminals: rendered through rich at 80, 100 and 120 columns, nothing is
cut (no ``resear…``, no ``$0.…``), no value's unit wraps onto its own line, the waterfall stays one line
per span, and the legends explain the numbers (the resilience counts add up as the legend says)."""

from __future__ import annotations

import io
import re

import pytest
from rich.console import Console

from shannon_otel.cli import _demo, main

WIDTHS = (80, 100, 120)


def render(width: int, monkeypatch: pytest.MonkeyPatch) -> str:
    """The full demo output (live display and summary) as a terminal of ``width`` columns shows it."""
    buf = io.StringIO()
    console = Console(width=width, file=buf, force_terminal=True, color_system=None, _environ={})
    monkeypatch.setattr(_demo, "_console", lambda plain: console)
    assert main(["demo", "--waves", "6", "--tasks", "24", "--seed", "3"]) == 0
    return buf.getvalue()


@pytest.fixture(scope="module", params=WIDTHS)
def output(request: pytest.FixtureRequest) -> tuple[int, str]:
    with pytest.MonkeyPatch.context() as monkeypatch:
        return request.param, render(request.param, monkeypatch)


@pytest.fixture
def summary(output: tuple[int, str]) -> tuple[int, str]:
    """The summary: what follows the last frame of the live display."""
    width, text = output
    return width, text[text.index("Waves ("):]


def test_the_live_table_fits(output: tuple[int, str]) -> None:
    width, text = output
    live = text[text.rindex("shannon-otel demo - "):text.index("Waves (")]
    lines = [re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", line) for line in live.splitlines()]
    assert max(len(line) for line in lines) <= width
    assert "…" not in live
    assert re.search(r"^research#2 ", "\n".join(lines), re.MULTILINE)


def test_every_line_fits_and_nothing_is_cut(summary: tuple[int, str]) -> None:
    width, text = summary
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= width
    assert "…" not in text
    assert not re.search(r"~ *\|", text), "a waterfall label was cut"
    for name in ("plan", "research#2", "write", "llm.chat", "search-api", "vector-db.query"):
        assert re.search(rf"^{re.escape(name)}\s", text, re.MULTILINE), f"{name} is not a whole row label"
    assert re.search(r"^all .*\$\d+\.\d{3}", text, re.MULTILINE), "the total cost is whole"


def test_no_unit_wraps_onto_its_own_line(summary: tuple[int, str]) -> None:
    _, text = summary
    for line in text.splitlines():
        assert not re.match(r"^\s*(ms|s)\b", line), f"a unit wrapped: {line!r}"
    # Each table row of durations keeps number and unit together.
    assert re.search(r"^plan\s.*?[\d.]+ ms\s+[\d.]+ ms\s+[\d.]+ ms", text, re.MULTILINE)


def test_the_waterfall_is_one_line_per_span(summary: tuple[int, str]) -> None:
    width, text = summary
    section = text[text.index("Slowest wave trace"):text.index("Recommendations (")]
    rows = [line for line in section.splitlines() if "|" in line]
    assert len(rows) > 10
    for row in rows:
        assert re.fullmatch(r"\s*\S.*? \|[ █]+\|\s+[\d.]+ (ms|s)( +ERROR)?", row), row
        assert len(row) <= width
    title = re.search(r"Slowest wave trace: (\S+), span '(wave \w+)'", section)
    assert title, section[:200]
    assert rows[0].startswith(title.group(2) + " "), "the root row is the span the title names"


def test_the_resilience_counts_add_up_as_the_legend_says(summary: tuple[int, str]) -> None:
    """The identity holds, a task timeout (2 s in the demo, reached on a loaded machine) cutting a call in its backoff
    wait included: a retry is counted as it runs (144 + 5 != 148 + 0 in a full-suite run while retries were counted
    as they were scheduled). The legend said such a retry was "counted, never tried" after that had stopped being
    true."""
    _, text = summary
    legend = " ".join(text.split())
    assert "calls + retries = attempts + rejected (a retry is counted as it runs: one whose wait a task timeout or " \
        "Ctrl-C cut short is not;" in legend
    assert "counted, never tried" not in legend
    rows = re.findall(r"^(llm\.chat|search-api|vector-db\.query)((?:\s+\d+){7})$", text, re.MULTILINE)
    assert len(rows) == 3
    for _, numbers in rows:
        calls, retries, attempts, rejected = (int(n) for n in numbers.split()[:4])
        assert calls + retries == attempts + rejected
