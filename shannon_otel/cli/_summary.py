"""The end-of-run summary: waves table, resilience, anomalies, the slowest wave's waterfall, advice.

:class:`Out` writes headings, tables and lines either through a rich console (terminals) or as plain
aligned text (pipes, files, no rich installed); the sections are the same in both. Every text it is given
may hold a server's or an exception's words: it is shown one line per line, control characters as escapes, rich
markup as its characters (``_shown``).
"""

from __future__ import annotations

import itertools
import math
import re
import shutil
import sys
import textwrap
from collections import Counter
from collections.abc import Callable, Sequence
from typing import IO, Any

from .._events import Anomaly
from .._telemetry import TASK_COST_ATTR, TASK_INPUT_TOKENS, TASK_OUTPUT_TOKENS, Outcome
from ..reporting._advice import Recommendation
from ..reporting._advice import ms as advice_ms
from ..reporting._recorder import RunRecorder
from ..reporting._run import RunReport
from ._pipe import write_line
from ._secrets import scrub
from ._shown import literal, visible
from ._waterfall import Row

_MAX_WAVE_ROWS = 20


_GAP = 2  # spaces between table columns, in both renderings


class Out:
    """Sections of text for a rich console (``console``) or a plain stream, at most ``width`` columns.

    ``width`` defaults to the console's width, or the terminal's for a plain stream that is one; a plain
    stream that is a pipe or file has no width limit. Tables wider than ``width`` are split into several
    tables that repeat the first column, never truncated.
    """

    def __init__(self, console: Any | None = None, stream: IO[str] | None = None, width: int | None = None) -> None:
        self.console = console
        self.stream = stream or sys.stdout
        if width is None and console is not None:
            width = int(console.width)
        elif width is None and self.stream.isatty():
            width = shutil.get_terminal_size().columns
        self.width = width
        self.on_gone: Callable[[], object] | None = None  # called when a write finds the reader gone

    def _print(self, text: str) -> None:
        if not write_line(self.stream, text) and self.on_gone is not None:
            self.on_gone()

    def heading(self, text: str) -> None:
        if self.console is not None:
            self.console.print()
            self.console.rule(f"[bold]{literal(text)}", align="left")
        else:
            self._print(f"\n== {visible(text)} ==")

    def line(self, text: str, style: str | None = None) -> None:
        """``text`` word-wrapped to ``width``: a number keeps its unit and a trace id stays whole.

        OTLP header values from the environment are masked (``_secrets.scrub``): an exporter's error
        quoted here never shows an API key, nor a control character (an escape instead).
        """
        lines = _wrap(visible(scrub(text)), self.width)
        if self.console is not None:
            from rich.text import Text

            for part in lines:
                self.console.print(Text(part, style=style if style and style != "trace" else ""), soft_wrap=True)
        else:
            for part in lines:
                self._print(part)

    def table(
        self, headers: Sequence[str], rows: Sequence[Sequence[str]], *, footer: Sequence[str] | None = None,
        breaks: Sequence[int] = (),
    ) -> None:
        """A table whose first column names the rows. Wider than ``width``, it is printed as several
        tables, each with the first column: split at the column indexes in ``breaks`` first (groups
        that belong together), then wherever the next column would not fit. Cells are shown as
        :func:`~._shown.visible` makes them (one line each), measured so."""
        headers, rows = _visible(headers), [_visible(row) for row in rows]
        footer = _visible(footer) if footer is not None else None
        every = [list(headers), *map(list, rows), *([list(footer)] if footer is not None else [])]
        widths = [max(len(r[i]) for r in every) for i in range(len(headers))]
        for columns in _column_groups(widths, self.width, breaks):
            pick = [0, *columns]
            self._table([headers[i] for i in pick], [[row[i] for i in pick] for row in rows],
                        [footer[i] for i in pick] if footer is not None else None, [widths[i] for i in pick])

    def _table(
        self, headers: Sequence[str], rows: Sequence[Sequence[str]], footer: Sequence[str] | None,
        widths: Sequence[int],
    ) -> None:
        if self.console is not None:
            from rich import box
            from rich.markup import escape
            from rich.table import Table

            table = Table(show_footer=footer is not None, header_style="bold", box=box.SIMPLE_HEAD,
                          show_edge=False, pad_edge=False, padding=(0, _GAP - 1, 0, 0), collapse_padding=True)
            for i, header in enumerate(headers):
                table.add_column(escape(header), justify="left" if i == 0 else "right", no_wrap=True,
                                 min_width=widths[i], footer=escape(footer[i]) if footer is not None else "")
            for row in rows:
                table.add_row(*map(escape, row))  # rich parses a cell's markup: the cells are text
            self.console.print(table)
            return

        def fmt(row: Sequence[str]) -> str:
            cells = (c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True)))
            return (" " * _GAP).join(cells)

        rule = (" " * _GAP).join("-" * w for w in widths)
        self._print(fmt(headers))
        self._print(rule)
        for row in rows:
            self._print(fmt(row))
        if footer is not None:
            self._print(rule)
            self._print(fmt(footer))


def _visible(cells: Sequence[str]) -> list[str]:
    return [visible(cell) for cell in cells]


_UNIT = re.compile(r"(\d) (ms|s|us|min|h|x)\b")


def _wrap(text: str, width: int | None) -> list[str]:
    if width is None or len(text) <= width:
        return [text]
    glued = _UNIT.sub(lambda m: f"{m.group(1)}\0{m.group(2)}", text)  # one word: never split there
    indent = " " * (len(text) - len(text.lstrip(" ")))
    parts = textwrap.wrap(glued, width, subsequent_indent=indent, break_long_words=False, break_on_hyphens=False)
    return [p.replace("\0", " ") for p in parts] or [text]


def _column_groups(widths: Sequence[int], limit: int | None, breaks: Sequence[int]) -> list[list[int]]:
    """Indexes of the columns after the first, grouped so each group plus the first column fits ``limit``."""
    def fits(columns: Sequence[int]) -> bool:
        return limit is None or sum(widths[i] + _GAP for i in columns) + widths[0] <= limit

    everything = list(range(1, len(widths)))
    if fits(everything):
        return [everything]
    edges = [1, *sorted(b for b in breaks if 1 < b < len(widths)), len(widths)]
    groups: list[list[int]] = []
    for lo, hi in itertools.pairwise(edges):
        current: list[int] = []
        for i in range(lo, hi):
            if current and not fits([*current, i]):
                groups.append(current)
                current = []
            current.append(i)
        groups.append(current)
    return groups


def ms(seconds: float) -> str:
    """A latency cell: ``-`` for none (NaN), else as advice quotes it (9.99996 s is "10.0 s", not "10000.0 ms")."""
    if math.isnan(seconds):
        return "-"
    return advice_ms(seconds)


def _total(report: Any, name: str) -> float:
    summary = report.measurements.get(name)
    return float(summary.total) if summary is not None else 0.0


# The demo's own errors, all injected on purpose (see _workload): what the summary says they are.
_DELIBERATE = {
    "SagaError": "deliberate: the notify step of 30% of the publish sagas fails, rolling them back",
    "SearchUnavailableError": "deliberate: the injected search-API outage",
    "RateLimitedError": "deliberate: 5% of LLM calls answer 429",
}


def waves_section(out: Out, recorder: RunRecorder) -> None:
    lives = [w for w in recorder.waves if w.report is not None]
    shown = lives[-_MAX_WAVE_ROWS:]
    totals, sums = recorder.totals, recorder.sums
    out.heading(f"Waves ({totals['waves']})")
    if totals["waves"] > len(shown):
        earlier = totals["waves"] - len(shown)
        out.line(f"(the {earlier} earlier wave is in the totals only)" if earlier == 1
                 else f"(the {earlier} earlier waves are in the totals only)")
    # Cancelled tasks (Ctrl-C) get a column of their own when there are any: the live display
    # counted them done, so the table must show where they went.
    cancelled = totals[Outcome.CANCELLATION.value] > 0 or any(
        w.report is not None and w.report.counts[Outcome.CANCELLATION] for w in shown)
    rows = []
    for live in shown:
        r = live.report
        assert r is not None
        rows.append([
            live.label, str(r.total), str(r.counts[Outcome.SUCCESS]), str(r.counts[Outcome.FAILURE]),
            str(r.counts[Outcome.TIMEOUT]), *([str(r.counts[Outcome.CANCELLATION])] if cancelled else []),
            str(live.retries), f"{_total(r, TASK_INPUT_TOKENS) + _total(r, TASK_OUTPUT_TOKENS):,.0f}",
            f"${_total(r, TASK_COST_ATTR):.3f}",
            ms(r.latency.p50), ms(r.latency.p95), ms(r.latency.p99), ms(r.queue_wait.p50),
            f"{r.parallel_efficiency:.0%}",
        ])
    lat = recorder.latency

    def p(q: float) -> str:
        return ms(lat.quantile(q)) if lat.count else "-"

    footer = [
        "all", str(sum(totals[o.value] for o in Outcome)), str(totals["success"]), str(totals["failure"]),
        str(totals["timeout"]), *([str(totals[Outcome.CANCELLATION.value])] if cancelled else []),
        str(totals["retries"]), f"{sums.get(TASK_INPUT_TOKENS, 0) + sums.get(TASK_OUTPUT_TOKENS, 0):,.0f}",
        f"${sums.get(TASK_COST_ATTR, 0):.3f}", p(0.5), p(0.95), p(0.99), "", "",
    ]
    headers = ["wave", "tasks", "ok", "failed", "timeout", *(["cancelled"] if cancelled else []), "retries",
               "tokens", "cost", "p50", "p95", "p99", "queue p50", "efficiency"]
    out.table(headers, rows, footer=footer, breaks=[headers.index("p50")])
    out.line("p50/p95/p99: task latency; queue p50: wait for a concurrency slot; efficiency: busy slot time / "
             "(slots x wave time)" + ("; cancelled: stopped by Ctrl-C" if cancelled else ""), "dim")
    dropped = sum(live.report.telemetry_dropped for live in lives if live.report is not None)
    if dropped:  # the delivery guards refused or lost spans while the waves ran: say so, once
        which = "the waves" if totals["waves"] <= len(lives) else f"the last {len(lives)} waves"
        out.line(f"telemetry dropped: {_plural(dropped, 'span')} while {which} ran "
                 "(shannon.telemetry.dropped has them by reason)", "yellow")
    errors: Counter[str] = Counter()
    for live in lives:
        assert live.report is not None
        errors.update(live.report.errors_by_type)
    if errors:
        out.line("errors (why tasks failed):")
        for kind, n in errors.most_common():
            name = kind.rsplit(".", 1)[-1]
            why = _DELIBERATE.get(name)
            out.line(f"  {name} x{n}" + (f" ({why})" if why else ""))


def resilience_section(out: Out, recorder: RunRecorder, run: RunReport) -> None:
    out.heading("Resilience")
    ops = run.operations
    rows = [
        [name, str(op.calls), str(op.retries), str(op.attempts), str(op.rejected), str(op.degraded),
         str(op.fallbacks), str(op.failed)]
        for name, op in sorted(ops.items())
    ]
    out.table(["operation", "calls", "retries", "attempts", "rejected", "degraded", "fallbacks", "failed"], rows)
    out.line("Each call is tried once plus once per retry; a try either runs the operation (attempts) or is "
             "refused unrun by an open circuit breaker (rejected): calls + retries = attempts + rejected (a retry "
             "is counted as it runs: one whose wait a task timeout or Ctrl-C cut short is not; a Hedge's extra "
             "attempts are counted in attempts alone). "
             "degraded: calls Degrade answered with a degraded result (its default, last good value or cheaper "
             "call); fallbacks: calls whose Fallback ran (one that failed too, then also failed); "
             "failed: calls that raised into their task.", "dim")
    tallies = run.tallies()  # every transition counted (run.transitions keeps the newest 1,000)
    for name, state in recorder.breakers.items():
        tally = tallies.get(name)
        moves = tally.moves if tally is not None else {}
        detail = ", ".join(f"{k} x{v}" for k, v in moves.items()) or "no transitions"
        out.line(f"breaker {name}: {sum(moves.values())} transitions ({detail}); now {state.value}")
    # Only rollbacks in a recorded trace are listed: those sampled out (no trace id) all fell on one key, None,
    # and were listed as "-" under "traces of some:", a heading naming traces where there were none.
    shown = {t: (saga, steps) for saga, steps, t in recorder.rollbacks if t is not None}
    failed = f", {run.failed_rollbacks} failed to roll back (a compensation failed)" if run.failed_rollbacks else ""
    traced = "; traces of some:" if shown else "; no trace of them recorded" if recorder.rollbacks else ""
    out.line(f"sagas: {run.rollbacks} rolled back{failed}, {run.compensations} compensations run"
             + (" (deliberate failures, see errors above)" if recorder.rollbacks else "") + traced)
    for trace_id, (saga, steps) in list(shown.items())[:3]:
        out.line(f"  {trace_id} {saga}: compensated {', '.join(steps) or 'nothing'}", "trace")


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def anomalies_section(out: Out, run: RunReport, advice: Sequence[Recommendation], detector: bool) -> None:
    groups: dict[tuple[str, str, str], list[Anomaly]] = {}
    for a, wave in zip(run.anomalies, run.anomaly_waves, strict=True):
        groups.setdefault((a.series, a.signal, wave or "-"), []).append(a)
    out.heading(f"Anomalies ({len(run.anomalies)})")
    if not detector:
        out.line("(the anomaly detector is not available in this build)")
    if groups:
        out.line("A tick is one sample of a series (e.g. the mean task latency of >= 12 finished tasks); score "
                 "0..1 = -log10(p)/10 of how unlikely the tick is next to the series' history (1: p <= 1e-10, "
                 "or outside every value seen).", "dim")
    for (series, signal, wave), found in list(groups.items())[:10]:
        worst = max(found, key=lambda a: (a.score, a.value))
        unit = " s" if signal == "latency" else ""
        out.line(f"{worst.severity or '-':<8} {signal} of {series} in wave {wave}: "
                 f"{_plural(len(found), 'flagged tick')}, score {worst.score:.2f}, worst tick {worst.value:.4g}{unit}, "
                 f"trace {worst.trace_id or '-'}", "trace")
    if len(groups) > 10:
        out.line(f"... and {len(groups) - 10} more groups")
    for rec in advice:
        if rec.kind == "latency_anomaly":
            out.line(f"run analysis: {rec.message.split('. ')[0]}", "trace")
    if not run.anomalies and not any(r.kind == "latency_anomaly" for r in advice):
        out.line("none")


def waterfall_section(out: Out, rows: Sequence[Row], title: str, trace_id: str | None = None) -> None:
    out.heading(title)
    if trace_id is not None:
        out.line(f"trace {trace_id}", "trace")
    if not rows:
        out.line("(no trace recorded)")
    for row in rows:
        out.line(row.text, "red" if row.error else None)


def advice_section(out: Out, advice: Sequence[Recommendation]) -> None:
    out.heading(f"Recommendations ({len(advice)})")
    if not advice:
        out.line("none: nothing measured stands out")
    for i, rec in enumerate(advice, 1):
        out.line(f"{i}. [{rec.kind}] {rec.message}")
