"""The terminal waterfall drawn from real SDK spans of a wave with protected calls.

The wave runs on virtual time and the SDK stamps its spans from the same clock, so every bar, the
slowest task and the medians are exact however loaded the machine is (on wall time a scheduling delay
of a few ms made another task the slowest now and then).
"""

from __future__ import annotations

import asyncio
import functools
import re

import pytest
from opentelemetry import trace
from opentelemetry.sdk import trace as sdk_trace

from shannon_otel import Wave
from shannon_otel._telemetry import TASK_INDEX
from shannon_otel.cli._waterfall import BAR, waterfall
from shannon_otel.recovery import Retry
from shannon_otel.testing import InMemoryTelemetry, run_virtual

EPOCH_NS = 1_700_000_000 * 10**9  # span timestamps are virtual time after this (they look like real ones)


def run_wave(otel: InMemoryTelemetry, tasks: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Task i's attempts take (i + 1) ms of virtual time; task 0's first attempt and task 1 fail."""
    retry = Retry(name="fetch", attempts=2, initial=0.0, **otel.providers)

    async def flaky(i: int) -> int:
        calls = 0

        async def attempt() -> int:
            nonlocal calls
            calls += 1
            await asyncio.sleep(0.001 * (i + 1))
            if i == 0 and calls == 1:
                raise ConnectionError("first attempt of task 0 fails")
            if i == 1:
                raise ValueError("task 1 always fails")
            return i

        return await retry.call(attempt)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        # The SDK reads time_ns() for span start, end and event times: the fake clock of these spans.
        monkeypatch.setattr(sdk_trace, "time_ns", lambda: EPOCH_NS + round(loop.time() * 1e9))
        wave: Wave[int] = Wave("fetch-all", max_concurrency=2, clock=loop.time, **otel.providers)
        await wave.run([functools.partial(flaky, i) for i in range(tasks)])

    run_virtual(main())


def test_rows_nest_wave_tasks_operations_attempts_with_bars(monkeypatch: pytest.MonkeyPatch) -> None:
    otel = InMemoryTelemetry()
    run_wave(otel, tasks=3, monkeypatch=monkeypatch)
    rows = waterfall(otel.spans())
    text = [r.text for r in rows]
    assert text[0].strip().startswith("0") and text[0].rstrip().endswith("ms"), "time scale header"
    assert text[1].startswith("wave fetch-all ") and f"|{'#' * BAR}|" in text[1], "root spans the whole bar"
    names = [re.split(r"\s+\|", t)[0] for t in text[1:]]
    assert names == [
        "wave fetch-all",
        "  task fetch-all #0", "    fetch", "      attempt 1", "      attempt 2",
        "  task fetch-all #1", "    fetch", "      attempt 1", "      attempt 2",
        "  task fetch-all #2", "    fetch", "      attempt 1",
    ]
    errors = [re.split(r"\s+\|", r.text)[0].strip() for r in rows if r.error]
    assert errors == ["wave fetch-all", "attempt 1", "task fetch-all #1", "fetch", "attempt 1", "attempt 2"]
    assert all(r.text.endswith("ERROR") for r in rows if r.error)
    for t in text[1:]:
        bar = t.split("|")[1]
        assert len(bar) == BAR and "#" in bar


def test_a_wide_wave_shows_the_slowest_and_failed_tasks_and_summarises_the_rest(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    otel = InMemoryTelemetry()
    run_wave(otel, tasks=10, monkeypatch=monkeypatch)
    rows = waterfall(otel.spans(), max_tasks=4)
    tasks = [r.text.split("|")[0].strip() for r in rows if r.text.startswith("  task")]
    assert len(tasks) == 4
    assert "task fetch-all #1" in tasks, "the failed task is shown"
    assert "task fetch-all #9" in tasks, "the slowest task is shown"
    assert re.match(r"  \.\.\. 6 more tasks \(median [\d.]+ ms, fastest [\d.]+ ms\)", rows[-1].text)


def test_no_spans_no_rows() -> None:
    assert waterfall([]) == []


def test_rows_fit_the_given_width_and_labels_stay_whole_while_the_bar_can_shrink(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    otel = InMemoryTelemetry()
    run_wave(otel, tasks=3, monkeypatch=monkeypatch)
    for width in (60, 80, 100):
        rows = waterfall(otel.spans(), width=width)
        assert all(len(r.text) <= width for r in rows), width
        labels = [re.split(r" \|", r.text)[0].strip() for r in rows[1:]]
        assert "task fetch-all #0" in labels and "attempt 2" in labels, "no label was cut"
        bars = {len(r.text.split("|")[1]) for r in rows[1:]}
        assert len(bars) == 1, "every bar has the same length"
    narrow = waterfall(otel.spans(), width=40)
    assert all(len(r.text) <= 40 for r in narrow[1:])
    assert any(r.text.split(" |")[0].endswith("~") for r in narrow), "too narrow: long labels are cut with ~"


HIDDEN = 14  # tasks the waterfall of `traces` summarises


def shown(ns: int) -> str:
    """A duration as the waterfall prints it, computed here independently."""
    seconds = ns / 1e9
    return f"{seconds * 1000:.1f} ms" if seconds < 10 else f"{seconds:.2f} s"


# Sub-microsecond to hours, zero-length, and past 10,000 s (where the time column grows a character).
DURATIONS_NS = (0, 1, 400, 1_000_000, 2_637_600_000, 9_999_000_000, 3 * 3600 * 10**9, 40 * 3600 * 10**9)


@pytest.fixture(scope="module")
def traces() -> list[tuple[int, list[sdk_trace.ReadableSpan]]]:
    """Per duration: a wave span of that length with a failed task span over its first half and 19 more
    tasks, task i lasting i/20 of it (SDK spans with explicit start and end times, so each duration is
    exact). The waterfall shows 6 tasks (#0 and #15..#19) and summarises #1..#14."""
    out = []
    for total in DURATIONS_NS:
        otel = InMemoryTelemetry()
        tracer = otel.tracer_provider.get_tracer("waterfall-test")
        root = tracer.start_span("wave fetch-all", start_time=EPOCH_NS)
        for i in range(HIDDEN + 6):
            task = tracer.start_span("task fetch-all", trace.set_span_in_context(root), start_time=EPOCH_NS,
                                     attributes={TASK_INDEX: i})
            if i == 0:
                task.set_status(trace.StatusCode.ERROR)
            task.end(end_time=EPOCH_NS + (total // 2 if i == 0 else total * i // 20))
        root.end(end_time=EPOCH_NS + total)
        out.append((total, list(otel.spans())))
    return out


@pytest.mark.parametrize("width", [None, *range(1, 201)])
def test_the_time_axis_labels_never_run_together_and_sit_over_the_bar_ends(
    width: int | None, traces: list[tuple[int, list[sdk_trace.ReadableSpan]]],
) -> None:
    """At 30 columns the axis printed '0' and the total as one word ('02637.6 ms'): the 4-column bar
    left no room for both. Now a label that does not fit with a space before the next is dropped.
    The summary of the hidden tasks was never narrowed (56 columns at width 40 for the 2.6 s wave); now
    it drops the fastest time, then the median, only when the longer line does not fit, never cutting a
    number."""
    for total, spans in traces:
        rows = waterfall(spans, width=width)
        axis, root = rows[0].text, rows[1].text
        first, last = root.index("|") + 1, root.index("|", root.index("|") + 1) - 1  # the bar's columns
        seconds = max(total, 1) / 1e9
        true_total = shown(max(total, 1))
        count = f"  ... {HIDDEN} more tasks"
        median = f"{count} (median {shown(total * 8 // 20)})"  # tasks #1..#14: #8 is the median
        forms = [f"{median[:-1]}, fastest {shown(total // 20)})", median, count]
        summary = rows[-1].text
        assert summary in forms, (total, width, summary)
        assert all(width is not None and len(longer) > width for longer in forms[: forms.index(summary)]), (
            "a time is dropped only when the line with it does not fit", total, width, summary)
        assert axis.split() in (["0", *true_total.split()], true_total.split()), (total, width, axis)
        assert axis.endswith(true_total) and len(axis) == last + 1, "the total ends over the bar's last column"
        if axis.split()[0] == "0":
            assert axis.index("0") == first and axis[first + 1] == " ", "0 over the bar's first column"
        fits = max(len(r.text) for r in rows[1:])
        assert len(axis) <= fits, "the axis is no wider than the rows"
        if width is not None and width >= 8 + 4 + len(" |") + len("| ") + len(" 1234.5 ms  ERROR") + (
                seconds >= 10_000) + (seconds >= 100_000):
            assert fits <= width, (total, width, rows)
