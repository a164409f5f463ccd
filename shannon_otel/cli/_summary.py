"""The end-of-run summary: waves table, resilience, anomalies, the slowest wave's waterfall, advice.

:class:`Out` writes headings, tables and lines either through a rich console (terminals) or as plain
aligned text (pipes, files, no rich installed); the sections are the same in both.
"""

from __future__ import annotations

import math
import sys
from collections import Counter
from collections.abc import Sequence
from typing import IO, Any

from .._events import Anomaly
from .._telemetry import TASK_COST_ATTR, TASK_INPUT_TOKENS, TASK_OUTPUT_TOKENS, Outcome
from ..reporting._advice import Recommendation
from ..reporting._recorder import RunRecorder
from ..reporting._run import RunReport
from ._waterfall import Row

_MAX_WAVE_ROWS = 20


class Out:
    """Sections of text for a rich console (``console``) or a plain stream."""

    def __init__(self, console: Any | None = None, stream: IO[str] | None = None) -> None:
        self.console = console
        self.stream = stream or sys.stdout

    def heading(self, text: str) -> None:
        if self.console is not None:
            self.console.print()
            self.console.rule(f"[bold]{text}", align="left")
        else:
            print(f"\n== {text} ==", file=self.stream)

    def line(self, text: str, style: str | None = None) -> None:
        if self.console is not None:
            from rich.text import Text

            self.console.print(Text(text, style=style or ""), soft_wrap=style == "trace")
        else:
            print(text, file=self.stream)

    def table(
        self, headers: Sequence[str], rows: Sequence[Sequence[str]], *, footer: Sequence[str] | None = None,
    ) -> None:
        if self.console is not None:
            from rich.table import Table

            table = Table(show_footer=footer is not None, header_style="bold")
            for i, header in enumerate(headers):
                table.add_column(header, justify="left" if i == 0 else "right",
                                 footer=footer[i] if footer is not None else "")
            for row in rows:
                table.add_row(*row)
            self.console.print(table)
            return
        every = [list(headers), *map(list, rows), *([list(footer)] if footer is not None else [])]
        widths = [max(len(r[i]) for r in every) for i in range(len(headers))]

        def fmt(row: Sequence[str]) -> str:
            return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths,
                                                                                                   strict=True)))
        print(fmt(headers), file=self.stream)
        print("  ".join("-" * w for w in widths), file=self.stream)
        for row in rows:
            print(fmt(row), file=self.stream)
        if footer is not None:
            print("  ".join("-" * w for w in widths), file=self.stream)
            print(fmt(footer), file=self.stream)


def ms(seconds: float) -> str:
    if math.isnan(seconds):
        return "-"
    return f"{seconds * 1000:.1f} ms" if seconds < 10 else f"{seconds:.1f} s"


def _total(report: Any, name: str) -> float:
    summary = report.measurements.get(name)
    return float(summary.total) if summary is not None else 0.0


def waves_section(out: Out, recorder: RunRecorder) -> None:
    lives = [w for w in recorder.waves if w.report is not None]
    shown = lives[-_MAX_WAVE_ROWS:]
    totals, sums = recorder.totals, recorder.sums
    out.heading(f"Waves ({totals['waves']})")
    if totals["waves"] > len(shown):
        out.line(f"(the {totals['waves'] - len(shown)} earlier waves are in the totals only)")
    rows = []
    for live in shown:
        r = live.report
        assert r is not None
        rows.append([
            live.label, str(r.total), str(r.counts[Outcome.SUCCESS]), str(r.counts[Outcome.FAILURE]),
            str(r.counts[Outcome.TIMEOUT]), ms(r.latency.p50), ms(r.latency.p95), ms(r.latency.p99),
            ms(r.queue_wait.p50), f"{r.parallel_efficiency:.0%}", str(live.retries),
            f"{_total(r, TASK_INPUT_TOKENS) + _total(r, TASK_OUTPUT_TOKENS):,.0f}",
            f"${_total(r, TASK_COST_ATTR):.3f}",
        ])
    lat = recorder.latency

    def p(q: float) -> str:
        return ms(lat.quantile(q)) if lat.count else "-"

    footer = [
        "all", str(sum(totals[o.value] for o in Outcome)), str(totals["success"]), str(totals["failure"]),
        str(totals["timeout"]), p(0.5), p(0.95), p(0.99), "", "", str(totals["retries"]),
        f"{sums.get(TASK_INPUT_TOKENS, 0) + sums.get(TASK_OUTPUT_TOKENS, 0):,.0f}",
        f"${sums.get(TASK_COST_ATTR, 0):.3f}",
    ]
    out.table(["wave", "tasks", "ok", "failed", "timeout", "p50", "p95", "p99", "queue p50", "efficiency",
               "retries", "tokens", "cost"], rows, footer=footer)
    errors: Counter[str] = Counter()
    for live in lives:
        assert live.report is not None
        errors.update(live.report.errors_by_type)
    if errors:
        out.line("errors: " + ", ".join(f"{k.rsplit('.', 1)[-1]} x{v}" for k, v in errors.most_common()))


def resilience_section(out: Out, recorder: RunRecorder, run: RunReport) -> None:
    out.heading("Resilience")
    ops = run.operations
    rows = [
        [name, str(op.calls), str(op.attempts), str(op.retries), str(op.rejected), str(op.degraded),
         str(op.fallbacks), str(op.failed)]
        for name, op in sorted(ops.items())
    ]
    out.table(["operation", "calls", "attempts", "retries", "rejected", "degraded", "fallbacks", "failed"], rows)
    moves: dict[str, Counter[str]] = {}
    for t in run.transitions:
        moves.setdefault(t.breaker, Counter())[f"{t.from_state.value}->{t.to_state.value}"] += 1
    for name, state in recorder.breakers.items():
        own = moves.get(name, Counter())
        detail = ", ".join(f"{k} x{v}" for k, v in own.items()) or "no transitions"
        out.line(f"breaker {name}: {own.total()} transitions ({detail}); now {state.value}")
    out.line(f"sagas: {run.rollbacks} rolled back, {run.compensations} compensations run")
    shown = {t: (saga, steps) for saga, steps, t in recorder.rollbacks}
    for trace_id, (saga, steps) in list(shown.items())[:3]:
        out.line(f"  {saga}: compensated {', '.join(steps) or 'nothing'} (trace {trace_id or '-'})", "trace")


def anomalies_section(out: Out, run: RunReport, advice: Sequence[Recommendation], detector: bool) -> None:
    groups: dict[tuple[str, str, str], list[Anomaly]] = {}
    for a, wave in zip(run.anomalies, run.anomaly_waves, strict=True):
        groups.setdefault((a.series, a.signal, wave or "-"), []).append(a)
    out.heading(f"Anomalies ({len(run.anomalies)})")
    if not detector:
        out.line("(the anomaly detector is not available in this build)")
    for (series, signal, wave), found in list(groups.items())[:10]:
        worst = max(found, key=lambda a: (a.score, a.value))
        unit = " s" if signal == "latency" else ""
        out.line(f"{worst.severity or '-':<8} {signal} of {series} in wave {wave}: {len(found)} samples, score "
                 f"{worst.score:.2f}, worst value {worst.value:.4g}{unit}, trace {worst.trace_id or '-'}", "trace")
    if len(groups) > 10:
        out.line(f"... and {len(groups) - 10} more groups")
    for rec in advice:
        if rec.kind == "latency_anomaly":
            out.line(f"run analysis: {rec.message.split('. ')[0]}", "trace")
    if not run.anomalies and not any(r.kind == "latency_anomaly" for r in advice):
        out.line("none")


def waterfall_section(out: Out, rows: Sequence[Row], title: str) -> None:
    out.heading(title)
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
