"""A terminal waterfall of one trace: wave -> tasks -> operations -> attempts, with relative timing bars.

Built from finished SDK spans (the demo's in-memory span store). A wave of hundreds of tasks would
not fit a screen, so it shows the slowest and the failed tasks (``max_tasks`` in all, in start order)
with everything under them, and one line summarising the rest.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import StatusCode

from .._telemetry import TASK_INDEX

BAR = 40  # bar columns when no width is given
LABEL = 38  # at most this many label columns
MIN_BAR = 16
_FRAME = len(" |") + len("| ") + len("  ERROR")  # every row: bar frame, error mark (and the time column)


@dataclass(frozen=True, slots=True)
class Row:
    text: str
    error: bool = False


def _duration(span: ReadableSpan) -> float:
    return ((span.end_time or 0) - (span.start_time or 0)) / 1e9


def _start(span: ReadableSpan) -> tuple[int, int]:
    """Start order; tasks started in the same nanosecond (a fake clock, a coarse one) by task index."""
    index = (span.attributes or {}).get(TASK_INDEX)
    return span.start_time or 0, index if isinstance(index, int) else -1


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:7.1f} ms" if seconds < 10 else f"{seconds:7.2f} s "


def _name(span: ReadableSpan, depth: int) -> str:
    index = (span.attributes or {}).get(TASK_INDEX)
    return "  " * depth + (span.name if index is None else f"{span.name} #{index}")


def _label(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "~"


def _axis(label_w: int, bar_w: int, seconds: float) -> str:
    """The time scale over the bars: ``0`` at the bar's first column, the total ending at its last.

    A label that would touch the other is dropped, ``0`` first (the total may then reach left over the
    blank label columns); a total wider than the whole row is dropped too. Labels are never run together."""
    end = _ms(seconds).strip()
    if len(end) + 2 <= bar_w:  # "0", at least one space, the total
        return " " * (label_w + 2) + "0" + end.rjust(bar_w - 1)
    return end.rjust(label_w + 2 + bar_w) if len(end) <= label_w + 2 + bar_w else ""


def waterfall(
    spans: Sequence[ReadableSpan], *, max_tasks: int = 6, max_depth: int = 4, fill: str = "#",
    width: int | None = None,
) -> list[Row]:
    """Rows of text for the trace in ``spans`` (empty when it has no root span); bars drawn with ``fill``.

    With ``width``, every row fits in that many columns (the bar narrows first, then long labels are
    cut with ``~``) down to 33 (a column more per digit past 9,999 s): labels keep 8 columns and bars 4
    below that, so rows are wider and the summary wraps them; without, labels take up to ``LABEL``
    columns and bars ``BAR``. The first row is the time axis (``_axis``); the last, when tasks are
    hidden, counts them (``_summary``: their median and fastest times as the width allows)."""
    by_id = {s.context.span_id: s for s in spans if s.context is not None}
    children: dict[int, list[ReadableSpan]] = {}
    roots = []
    for span in spans:
        parent = span.parent.span_id if span.parent is not None else None
        if parent is None or parent not in by_id:
            roots.append(span)
        else:
            children.setdefault(parent, []).append(span)
    if not roots:
        return []
    root = max(roots, key=_duration)
    t0 = root.start_time or 0
    total = max((root.end_time or t0) - t0, 1)

    def walk(span: ReadableSpan, depth: int, out: list[tuple[ReadableSpan, int]]) -> None:
        out.append((span, depth))
        if depth >= max_depth:
            return
        for child in sorted(children.get(span.context.span_id if span.context else 0, ()), key=_start):
            walk(child, depth + 1, out)

    assert root.context is not None
    tasks = sorted(children.get(root.context.span_id, ()), key=_start)
    failed = [s for s in tasks if s.status.status_code is StatusCode.ERROR]
    slowest = sorted(tasks, key=_duration, reverse=True)
    chosen: list[ReadableSpan] = []
    for span in [*slowest[: max(1, max_tasks // 2)], *failed, *slowest]:
        if span not in chosen and len(chosen) < max_tasks:
            chosen.append(span)
    shown: list[tuple[ReadableSpan, int]] = [(root, 0)]
    for span in sorted(chosen, key=_start):
        walk(span, 1, shown)
    longest = max(len(_name(s, d)) for s, d in shown)
    time_w = max(len(_ms(_duration(s))) for s, _ in shown)  # 10, or more past 10,000 s
    if width is None:
        label_w, bar_w = min(LABEL, longest), BAR
    else:
        label_w = max(8, min(LABEL, longest, width - _FRAME - time_w - MIN_BAR))
        bar_w = max(4, min(BAR, width - _FRAME - time_w - label_w))

    def row(span: ReadableSpan, depth: int) -> Row:
        start = max(0, ((span.start_time or t0) - t0)) / total
        end = min(1.0, ((span.end_time or t0) - t0) / total)
        left = min(bar_w - 1, int(start * bar_w))
        size = max(1, round(end * bar_w) - left)
        bar = " " * left + fill * size + " " * max(0, bar_w - left - size)
        error = span.status.status_code is StatusCode.ERROR
        label, took = _label(_name(span, depth), label_w), _ms(_duration(span))
        return Row(f"{label:<{label_w}} |{bar[:bar_w]}| {took:>{time_w}}{'  ERROR' if error else ''}", error)

    rows = [Row(_axis(label_w, bar_w, total / 1e9))]
    rows += [row(span, depth) for span, depth in shown]
    hidden = [s for s in tasks if s not in chosen]
    if hidden:
        rows.append(Row(_summary(sorted(_duration(s) for s in hidden), width)))
    return rows


def _summary(durations: list[float], width: int | None) -> str:
    """The line for the tasks not shown (``durations``, sorted): their count with the median and fastest
    times, with the median only, or bare, the first that fits ``width`` (the first without one); no number
    is ever cut. The bare count (21 columns up to 9,999 tasks, inside the 33-column minimum) is returned
    even when it does not fit."""
    median, fastest = _ms(durations[len(durations) // 2]).strip(), _ms(durations[0]).strip()
    count = f"  ... {len(durations)} more tasks"
    for line in (f"{count} (median {median}, fastest {fastest})", f"{count} (median {median})"):
        if width is None or len(line) <= width:
            return line
    return count
