"""Live progress while the demo runs: a rich live table on a terminal, plain lines otherwise.

Both displays read the :class:`RunRecorder` counters. The rich display refreshes from its own
thread (rich's ``Live``). The plain one prints only on events, so a log file or CI output gets one
line per wave and per breaker transition: it is a hook like any other (no callback bus beside the
hooks), placed right after the recorder in ``hooks=`` so that the recorder has made the wave's live
counters when the display hears of the wave.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import IO, TYPE_CHECKING, Any

from .._events import BreakerTransition, Hook, WaveObserver, WaveStarted
from ..reporting._counters import WaveLive
from ..reporting._recorder import RunRecorder
from ._pipe import discard, write_line
from ._shown import literal, visible

if TYPE_CHECKING:
    from ..executor._report import WaveReport

_ROWS = 8  # waves shown in the live table (the newest ones)


def _breakers(recorder: RunRecorder) -> str:
    return ", ".join(f"{name}={state.value}" for name, state in recorder.breakers.items()) or "none"


class PlainDisplay(Hook):
    """One line per wave and per breaker transition; safe for pipes and log files."""

    def __init__(self, recorder: RunRecorder, out: IO[str] | None = None) -> None:
        self._recorder = recorder
        self._out = out or sys.stdout
        self._started = time.monotonic()
        self.on_gone: Callable[[], object] | None = None  # called when a write finds the reader gone

    def __enter__(self) -> PlainDisplay:
        return self

    def __exit__(self, *exc_info: object) -> None:
        try:
            self._out.flush()
        except BrokenPipeError:
            discard(self._out)

    def _print(self, text: str) -> None:
        line = f"[{time.monotonic() - self._started:6.2f}s] {visible(text)}"
        if not write_line(self._out, line, flush=True) and self.on_gone is not None:
            self.on_gone()

    def wave_started(self, event: WaveStarted) -> WaveObserver | None:
        # The recorder, called just before, made this wave's live counters (hooks start in order).
        waves = self._recorder.waves
        live = waves[-1] if waves else None
        if live is None or live.report is not None or not (
                live.label == event.wave or live.label.startswith(event.wave + "#")):
            live = WaveLive(event.wave, event.size)  # not after a recorder: the name and size only
        self._print(f"wave {live.label}: started, {_tasks(live.size)}")
        return _PlainWave(self, live)

    def wave_finished(self, live: WaveLive, report: WaveReport) -> None:
        self._print(
            f"wave {live.label}: done {_done(live, ended=True)}, failed {live.failed}, retries {live.retries}, "
            f"tries rejected by an open breaker {live.rejected}, degraded {live.degraded}; "
            f"breakers: {_breakers(self._recorder)}, {report.duration_s:.2f} s"
        )

    def breaker_transition(self, event: BreakerTransition) -> None:
        self._print(f"breaker {event.breaker}: {event.from_state.value} -> {event.to_state.value} ({event.reason})")


def _tasks(size: int | None) -> str:
    """A wave's task count, ``1 task`` / ``n tasks``, or that a lazy input's is not known."""
    if size is None:
        return "tasks of an input of unknown size"
    return "1 task" if size == 1 else f"{size} tasks"


def _done(live: WaveLive, ended: bool = False) -> str:
    """``done/size``; for a lazy input, whose size is unknown (it read ``done/0``), ``done/?`` until it ended."""
    if live.size is not None:
        return f"{live.done}/{live.size}"
    return str(live.done) if ended or live.report is not None else f"{live.done}/?"


class _PlainWave(WaveObserver):
    __slots__ = ("_display", "_live")

    def __init__(self, display: PlainDisplay, live: WaveLive) -> None:
        self._display, self._live = display, live

    def wave_finished(self, report: WaveReport) -> None:
        self._display.wave_finished(self._live, report)


class RichDisplay(Hook):
    """A live table of the newest waves (done/failed/active, retries, breaker state). Needs rich.

    A hook that listens to nothing: it reads the recorder when rich refreshes."""

    def __init__(self, recorder: RunRecorder, console: Any) -> None:
        from rich.live import Live

        self._recorder = recorder
        self._console = console
        self._started = time.monotonic()
        self._live = Live(console=console, get_renderable=self._render, refresh_per_second=8, transient=False)

    def __enter__(self) -> RichDisplay:
        self._live.__enter__()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._live.refresh()
        self._live.__exit__(None, None, None)

    def _render(self) -> Any:
        from rich import box
        from rich.table import Table

        recorder = self._recorder
        waves = recorder.waves[-_ROWS:]
        table = Table(
            title=f"shannon-otel demo - {time.monotonic() - self._started:.1f} s", title_justify="left",
            caption=f"breakers: {self._breaker_text()}   anomalies: {len(recorder.anomalies)}   "
                    f"compensations: {recorder.compensations}\n"
                    "rejected: tries an open circuit breaker refused (each retry of a call counts again)",
            caption_justify="left", box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 1, 0, 0),
        )
        for column, justify in (("wave", "left"), ("progress", "left"), ("done", "right"), ("failed", "right"),
                                ("active", "right"), ("retries", "right"), ("rejected", "right"),
                                ("degraded", "right")):
            table.add_column(column, justify=justify, no_wrap=True)  # type: ignore[arg-type]
        width = 20 if self._console.width >= 100 else 10  # the whole table fits 80 columns
        for live in waves:
            if live.size:  # (a list the consumer grew as it streamed may run more tasks than its size)
                filled = min(width, int(width * live.done / live.size))
            else:  # empty, or a lazy input of unknown size (None), whose bar fills when it ends, not at its start
                filled = 0 if live.size is None and live.report is None else width
            bar = "[green]" + "#" * filled + "[/][dim]" + "." * (width - filled) + "[/]"
            table.add_row(
                literal(live.label), bar, _done(live), f"[red]{live.failed}[/]" if live.failed else "0",
                str(live.active), str(live.retries), str(live.rejected), str(live.degraded),
            )
        return table

    def _breaker_text(self) -> str:
        colours = {"closed": "green", "open": "red", "half_open": "yellow"}
        return ", ".join(
            f"{literal(name)}=[{colours[state.value]}]{state.value}[/]"
            for name, state in self._recorder.breakers.items()
        ) or "none"


def make_display(recorder: RunRecorder, *, plain: bool, console: Any | None) -> PlainDisplay | RichDisplay:
    """Rich when a console is given and ``plain`` is off, plain lines otherwise."""
    if plain or console is None:
        return PlainDisplay(recorder)
    return RichDisplay(recorder, console)


Display = PlainDisplay | RichDisplay  # a context manager around the run, and a hook (right after the recorder)
