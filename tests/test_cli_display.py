"""The live display and summary output: plain lines for pipes, rich on terminals, plain without rich."""

from __future__ import annotations

import io
import sys

import pytest
from rich.console import Console

from shannon_otel import BreakerRegistered, BreakerState, BreakerTransition, WaveStarted
from shannon_otel.cli._demo import _console
from shannon_otel.cli._display import PlainDisplay, RichDisplay, make_display
from shannon_otel.cli._summary import Out, resilience_section
from shannon_otel.executor._report import ReportBuilder
from shannon_otel.reporting._counters import WaveLive
from shannon_otel.reporting._recorder import RunRecorder


def recorder_with_a_wave() -> tuple[RunRecorder, WaveLive]:
    recorder = RunRecorder()
    live = WaveLive("research#2", 24, done=10, failed=2, active=6, retries=7, rejected=3, degraded=1)
    recorder.waves.append(live)
    recorder.breakers["search-api"] = BreakerState.OPEN
    return recorder, live


def test_plain_display_prints_one_line_per_event() -> None:
    recorder, _ = recorder_with_a_wave()
    stream = io.StringIO()
    with PlainDisplay(recorder, stream) as display:
        observer = display.wave_started(WaveStarted("research", 24, None, 0.0))
        display.breaker_transition(BreakerTransition("search-api", BreakerState.CLOSED, BreakerState.OPEN,
                                                     "failure_threshold", 0.0))
        assert observer is not None
        observer.wave_finished(ReportBuilder().build("research", 1.5, 4, cancelled=False))
    lines = [line.split("] ", 1)[1] for line in stream.getvalue().splitlines()]
    assert lines == [
        "wave research#2: started, 24 tasks",
        "breaker search-api: closed -> open (failure_threshold)",
        "wave research#2: done 10/24, failed 2, retries 7, tries rejected by an open breaker 3, degraded 1; "
        "breakers: search-api=open, 1.50 s",
    ]


def test_rich_display_renders_the_live_table() -> None:
    recorder, _ = recorder_with_a_wave()
    console = Console(file=io.StringIO(), force_terminal=True, width=120, color_system=None)
    display = make_display(recorder, plain=False, console=console)
    assert isinstance(display, RichDisplay)
    console.print(display._render())
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert "research#2" in text and "10/24" in text and "search-api=open" in text
    assert isinstance(make_display(recorder, plain=True, console=console), PlainDisplay)


def test_summary_tables_in_rich_and_plain() -> None:
    console = Console(file=io.StringIO(), force_terminal=True, width=100, color_system=None)
    stream = io.StringIO()
    for out in (Out(console), Out(stream=stream)):
        out.heading("Waves (1)")
        out.table(["wave", "tasks"], [["plan", "24"]], footer=["all", "24"])
    rich_text = console.file.getvalue()  # type: ignore[attr-defined]
    assert "Waves (1)" in rich_text and "plan" in rich_text and "all" in rich_text
    assert stream.getvalue().splitlines() == ["", "== Waves (1) ==", "wave  tasks", "----  -----", "plan     24",
                                              "----  -----", "all      24"]


def test_resilience_section_details_each_breakers_own_transitions() -> None:
    recorder = RunRecorder()
    closed, opened, half = BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN
    for name in "abc":
        recorder.breaker_registered(BreakerRegistered(name, closed, 0.0))
    for name, a, b in [("a", closed, opened), ("b", closed, opened), ("b", opened, half)]:
        recorder.breaker_transition(BreakerTransition(name, a, b, "r", 0.0))
    stream = io.StringIO()
    resilience_section(Out(stream=stream), recorder, recorder.report())
    lines = [line for line in stream.getvalue().splitlines() if line.startswith("breaker ")]
    assert lines == [
        "breaker a: 1 transitions (closed->open x1); now open",
        "breaker b: 2 transitions (closed->open x1, open->half_open x1); now half_open",
        "breaker c: 0 transitions (no transitions); now closed",
    ]


def test_plain_when_not_a_terminal_or_rich_is_missing(monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    assert _console(plain=True) is None
    monkeypatch.setitem(sys.modules, "rich.console", None)  # import fails as if rich were not installed
    assert _console(plain=True) is None
    assert capsys.readouterr().err == ""  # --plain asked for plain output: nothing to explain
    assert _console(plain=False) is None
    # a terminal without rich was silent about the live table a `pip install 'shannon-otel[cli]'` brings
    assert "pip install 'shannon-otel[cli]'" in capsys.readouterr().err
    monkeypatch.setattr(sys.stdout, "isatty", lambda: False)
    assert _console(plain=False) is None
    assert capsys.readouterr().err == ""  # piped: plain is what it should be


def test_the_missing_rich_note_stays_out_of_stdout_when_stderr_is_closed(monkeypatch: pytest.MonkeyPatch,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    monkeypatch.setitem(sys.modules, "rich.console", None)
    monkeypatch.setattr(sys, "stderr", None)  # started with `2>&-`: print(file=None) writes to stdout
    assert _console(plain=False) is None
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize(("count", "said"), [(1, "FAILED (1 error or retry logged; first: refused)"),
                                             (3, "FAILED (3 errors and retries logged; first: refused)")])
def test_the_failed_export_line_counts_one_error_in_the_singular(count: int, said: str) -> None:
    """A demo whose one export failed once ended with "FAILED (1 errors and retries logged; ...)"."""
    import io
    from types import SimpleNamespace

    from shannon_otel.cli._demo import _telemetry_section
    from shannon_otel.cli._summary import Out

    stream = io.StringIO()
    exporting = SimpleNamespace(
        spans=SimpleNamespace(count=0), endpoint="http://127.0.0.1:9", disabled=False,
        problems=SimpleNamespace(count=count, first="refused", metrics_refused=False),
    )
    _telemetry_section(Out(stream=stream), exporting, None, None)  # type: ignore[arg-type]
    assert f"OTLP export to http://127.0.0.1:9: {said}" in stream.getvalue()


def test_a_lazy_inputs_wave_is_shown_of_unknown_size_not_of_zero_tasks() -> None:
    # A stream of a lazy input (a generator) starts with no known size: the display said "started, 0 tasks",
    # then "done 3/0", and the rich bar was full from the start. A wave of one task said "1 tasks".
    import asyncio

    from shannon_otel import Wave

    recorder, stream = RunRecorder(), io.StringIO()
    console = Console(file=io.StringIO(), force_terminal=True, width=120, color_system=None)
    rich = RichDisplay(recorder, console)
    bars: list[str] = []

    async def ok() -> None:
        if not bars:
            console.file = io.StringIO()
            console.print(rich._render())
            bars.append(console.file.getvalue())

    async def main() -> None:
        hooks = (recorder, PlainDisplay(recorder, stream))
        async with Wave("lazy", max_concurrency=1, hooks=hooks, instrument=False).stream(ok for _ in range(3)) as s:
            async for _ in s:
                pass
        await Wave("one", hooks=hooks, instrument=False).run([ok])

    asyncio.run(main())
    lines = [line.split("] ", 1)[1].split(";")[0] for line in stream.getvalue().splitlines()]
    assert lines == [
        "wave lazy: started, tasks of an input of unknown size",
        "wave lazy: done 3, failed 0, retries 0, tries rejected by an open breaker 0, degraded 0",
        "wave one: started, 1 task",
        "wave one: done 1/1, failed 0, retries 0, tries rejected by an open breaker 0, degraded 0",
    ]
    assert "0/?" in bars[0] and "#" not in bars[0], bars[0]  # nothing done yet: an empty bar
    console.file = io.StringIO()
    console.print(rich._render())
    after = console.file.getvalue()
    assert "#" * 20 in after and "/0" not in after and " 3 " in after


def test_the_summary_says_one_earlier_wave_in_the_singular() -> None:
    from shannon_otel.cli._summary import _MAX_WAVE_ROWS, waves_section

    recorder = RunRecorder()
    for i in range(_MAX_WAVE_ROWS + 1):
        live = WaveLive(f"w{i}", 0)
        recorder.waves.append(live)
        live.report = ReportBuilder().build(f"w{i}", 1.0, 1, cancelled=False)
        recorder._finished(live)
    stream = io.StringIO()
    waves_section(Out(stream=stream), recorder)
    assert "(the 1 earlier wave is in the totals only)" in stream.getvalue()


def test_summary_latency_cells_never_read_10000_ms() -> None:
    # 9.99996 s rounds to 10.0 s: the summary's cells said "10000.0 ms" (the advice said "10.0 s" for it).
    from shannon_otel.cli._summary import ms

    assert ms(9.99996) == "10.0 s" and ms(9.9999) == "9999.9 ms" and ms(float("nan")) == "-"
