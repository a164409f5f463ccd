"""A list the consumer extends as it reads a stream's results (a crawler: each page read appends the links found).

As with a plain ``for`` loop over a growing list, every task the list holds when the consumer has read every
result runs: the stream's wave stays open until the consumer has read every result produced so far and asks for
the next, then looks at the list again. Deterministic: virtual time (``run_virtual``), no real sleeps.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
from typing import Any

import pytest
from _open_spans import OpenSpans

from shannon_otel import Outcome, Wave, WaveReport
from shannon_otel.testing import InMemoryTelemetry, run_virtual

# page -> the links found on it
_SITE = {"/": ["/a", "/b"], "/a": ["/c"], "/b": ["/c", "/d"], "/c": [], "/d": ["/e"], "/e": []}


async def _fetch(page: str) -> list[str]:
    await asyncio.sleep(0.1)  # virtual: the download
    return _SITE[page]


def _crawl(max_concurrency: int, mapped: bool, batch_size: int | None, think: float) -> tuple[list[str], WaveReport]:
    """Crawl _SITE from "/" with one stream; the consumer takes ``think`` virtual seconds per page it reads."""
    pages = ["/"]
    tasks: list[Any] = [functools.partial(_fetch, "/")]
    wave = Wave[list[str]]("crawl", max_concurrency=max_concurrency, batch_size=batch_size, instrument=False)
    stream = wave.stream_map(_fetch, pages) if mapped else wave.stream(tasks)

    async def main() -> list[str]:
        read: list[str] = []
        async with stream as results:
            async for result in results:
                assert result.outcome is Outcome.SUCCESS, result
                read.append(pages[result.index])
                await asyncio.sleep(think)  # the consumer parses the page: the wave's tasks have all ended meanwhile
                for link in result.value or ():
                    if link not in pages:
                        pages.append(link)
                        tasks.append(functools.partial(_fetch, link))
        return read

    read = run_virtual(main())
    assert stream.report is not None
    return read, stream.report


@pytest.mark.parametrize("mapped", [False, True])
@pytest.mark.parametrize("batch_size", [None, 2])
@pytest.mark.parametrize("max_concurrency", [1, 3])
@pytest.mark.parametrize("think", [0.0, 1.0])
def test_a_crawler_extending_its_streamed_list_at_each_result_runs_every_page(
    mapped: bool, batch_size: int | None, max_concurrency: int, think: float, caplog: pytest.LogCaptureFixture,
) -> None:
    """The wave ended once its workers found the list's end, before the consumer had read (and appended the links
    of) the last results: a consumer taking a second per page crawled "/" alone, the links it appended never ran
    (a WARNING shannon.wave.tasks_not_run counted them). Now every page runs, once, and the report counts them."""
    with caplog.at_level(logging.WARNING, logger="shannon_otel"):
        read, report = _crawl(max_concurrency, mapped, batch_size, think)
    assert sorted(read) == sorted(_SITE)
    assert report.total == len(_SITE) == report.counts[Outcome.SUCCESS]
    assert report.outcome is Outcome.SUCCESS
    assert not [r for r in caplog.records if r.__dict__.get("event.name") == "shannon.wave.tasks_not_run"]


def test_a_crawl_ends_every_span_and_its_wave_span_counts_every_page() -> None:
    """The wave span of a crawl counted the one page that ran; now it counts every page, each has its task span,
    every span has ended and the active and pending gauges are back to 0."""
    tel = InMemoryTelemetry()
    spans = OpenSpans()
    tel.tracer_provider.add_span_processor(spans)
    pages = ["/"]

    async def main() -> None:
        wave = Wave[list[str]]("crawl-otel", max_concurrency=2, **tel.providers)
        async with wave.stream_map(_fetch, pages) as results:
            async for result in results:
                await asyncio.sleep(1.0)
                pages.extend(link for link in result.value or () if link not in pages)

    run_virtual(main())
    assert spans.open == {}
    attributes = tel.span("wave crawl-otel").attributes or {}
    assert attributes["shannon.wave.tasks.success"] == len(_SITE)
    counts: list[Any] = [attributes[f"shannon.wave.tasks.{outcome.value}"] for outcome in Outcome]
    assert sum(counts) == len(_SITE)
    assert len(tel.spans("task crawl-otel")) == len(_SITE)
    for gauge in ("shannon.task.active", "shannon.task.pending"):
        assert tel.point(gauge, shannon_wave_name="crawl-otel").value == 0


@pytest.mark.parametrize("batch_size", [None, 2])
@pytest.mark.parametrize("appended", [False, True])
def test_a_consumer_leaving_once_it_read_every_result_ends_the_wave_at_once_every_span_ended(
    appended: bool, batch_size: int | None,
) -> None:
    """The wave waits for its consumer once every task taken has ended; a consumer that leaves then (its block
    left after its last result, without asking for the next) ends it at once, never hung: not cancelled when the
    list gained nothing; when it gained tasks the consumer will never read, those are a left stream's rest,
    cancelled and counted so (they were neither run nor counted: the wave had ended before)."""
    tel = InMemoryTelemetry()
    spans = OpenSpans()
    tel.tracer_provider.add_span_processor(spans)
    tasks: list[Any] = [functools.partial(_fetch, "/")]

    async def main() -> WaveReport | None:
        stream = Wave[list[str]]("left", max_concurrency=2, batch_size=batch_size, **tel.providers).stream(tasks)
        async with stream as results:
            async for _ in results:
                await asyncio.sleep(1.0)  # the wave's task has ended: it waits for this consumer
                if appended:
                    tasks.extend(functools.partial(_fetch, link) for link in ("/a", "/b"))
                break
        return stream.report

    report = run_virtual(asyncio.wait_for(main(), 60))  # virtual seconds: a hang ends as a timeout, at once
    assert spans.open == {}
    assert report is not None and report.counts[Outcome.SUCCESS] == 1
    assert report.counts[Outcome.CANCELLATION] == (2 if appended else 0)
    assert report.outcome is (Outcome.CANCELLATION if appended else Outcome.SUCCESS)
    attributes = tel.span("wave left").attributes or {}
    assert attributes["shannon.wave.tasks.cancellation"] == report.counts[Outcome.CANCELLATION]
    assert attributes["shannon.wave.tasks.success"] == 1


def test_a_stream_dropped_while_its_wave_waits_for_its_consumer_ends_it() -> None:
    """Entered without ``async with`` and dropped once the wave waits for the consumer: collected, it cancels the
    wave, which ends with every span, no task left behind."""
    tel = InMemoryTelemetry()
    spans = OpenSpans()
    tel.tracer_provider.add_span_processor(spans)

    async def consume_one() -> None:
        stream = Wave[list[str]]("dropped-idle", max_concurrency=2, **tel.providers).stream_map(_fetch, ["/"])
        await stream.__aenter__()
        await stream.__anext__()
        await asyncio.sleep(1.0)  # the wave waits for this consumer, which never asks again

    async def main() -> list[asyncio.Task[Any]]:
        await consume_one()
        gc.collect()
        await asyncio.sleep(1)
        return [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]

    assert run_virtual(main()) == []
    assert spans.open == {}
    assert tel.span("wave dropped-idle").attributes["shannon.wave.tasks.success"] == 1  # type: ignore[index]


@pytest.mark.parametrize("mapped", [False, True])
def test_a_consumer_appending_while_tasks_still_run_keeps_them_at_max_concurrency(mapped: bool) -> None:
    """Growth read after a wait for the consumer still runs up to max_concurrency at once, on the workers it
    needs: one page that links to six, read while nothing runs, runs the six three at a time."""
    running = peak = 0

    async def job(n: int) -> list[int]:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(1.0)
        running -= 1
        return list(range(1, 7)) if n == 0 else []

    items = [0]

    async def main() -> int:
        wave = Wave[list[int]]("fan", max_concurrency=3, instrument=False)
        tasks: list[Any] = [functools.partial(job, 0)]
        count = 0
        async with (wave.stream_map(job, items) if mapped else wave.stream(tasks)) as results:
            async for result in results:
                count += 1
                await asyncio.sleep(0.5)
                for n in result.value or ():
                    items.append(n)
                    tasks.append(functools.partial(job, n))
        return count

    assert run_virtual(main()) == 7
    assert peak == 3


@pytest.mark.parametrize("appended", [False, True])
def test_a_stream_dropped_after_its_every_result_was_read_tells_the_waves_true_outcome(appended: bool) -> None:
    """Dropped (never left) once its consumer had read every result, with the wave waiting for it: its finalizer
    cancelled the wave, whose span said outcome "cancellation" with no task cancelled, every one a success (before
    the wave waited for its consumer it had ended on its own, a success). Now it ends as leaving the block ends it:
    a success when the list gained nothing; what it gained, never read, is cancelled and counted so."""
    tel = InMemoryTelemetry()
    spans = OpenSpans()
    tel.tracer_provider.add_span_processor(spans)
    pages = ["/c", "/e"]

    async def read_all() -> None:
        stream = Wave[list[str]]("dropped-read", max_concurrency=2, **tel.providers).stream_map(_fetch, pages)
        await stream.__aenter__()
        for _ in range(2):
            await stream.__anext__()
        await asyncio.sleep(1.0)  # every task has ended: the wave waits for this consumer, which never asks again
        if appended:
            pages.append("/d")

    async def main() -> list[asyncio.Task[Any]]:
        await read_all()
        gc.collect()
        await asyncio.sleep(1)
        return [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]

    assert run_virtual(main()) == []
    assert spans.open == {}
    attributes = tel.span("wave dropped-read").attributes or {}
    assert attributes["shannon.wave.tasks.success"] == 2
    assert attributes["shannon.wave.tasks.cancellation"] == (1 if appended else 0)
    assert attributes["shannon.task.outcome"] == (Outcome.CANCELLATION if appended else Outcome.SUCCESS).value


def test_tasks_a_second_consumer_appends_after_the_first_read_the_end_are_logged_not_lost(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Two consumers of one stream: one read the end (the wave saw it waiting, every result read) while the other
    still handled its last result and then appended a task. That task never ran and no WARNING counted it (the
    warning was looked for once, when the first consumer read the end). Now leaving the block counts it."""
    tasks: list[Any] = [functools.partial(_fetch, "/c"), functools.partial(_fetch, "/e")]

    async def main() -> WaveReport | None:
        stream = Wave[list[str]]("two-readers", max_concurrency=2, instrument=False).stream(tasks)

        async def read(think: float) -> None:
            async for _ in stream:
                await asyncio.sleep(think)
                if think:
                    tasks.append(functools.partial(_fetch, "/"))

        async with stream:
            await asyncio.gather(read(0.0), read(1.0))
        return stream.report

    with caplog.at_level(logging.WARNING, logger="shannon_otel"):
        report = run_virtual(asyncio.wait_for(main(), 60))
    assert report is not None
    never_ran = len(tasks) - report.total
    assert never_ran > 0
    told = [r for r in caplog.records if r.__dict__.get("event.name") == "shannon.wave.tasks_not_run"]
    assert sum(r.__dict__["shannon.wave.tasks_not_run.count"] for r in told) == never_ran


def _cut(work: list[Any], how: str, make: Any) -> None:
    if how == "clear":  # then extended: the two first of it land below the index
        work.clear()
        work.extend(make(page) for page in ("/a", "/b", "/d"))
    elif how == "del":  # then extended: "/a" lands below the index
        del work[1:]
        work.append(make("/a"))
    else:
        work.pop(0)  # "/" moves below the index


@pytest.mark.parametrize("mapped", [False, True])
@pytest.mark.parametrize("cut", ["clear", "del", "pop"])
def test_a_list_cut_below_what_the_wave_took_is_logged_once(
    cut: str, mapped: bool, caplog: pytest.LogCaptureFixture,
) -> None:
    """The wave reads a streamed list by index, as Python's list iterator does: what a cut (``clear``, ``del``,
    ``pop``) moves below that index, or what is added there after it, is never taken. That was silent: not run, not
    logged, not counted. Now one WARNING ``shannon.wave.input_cut`` says the list was cut and at which index."""
    pages = ["/c", "/e", "/"]
    tasks: list[Any] = [functools.partial(_fetch, page) for page in pages]
    ran: list[int] = []

    async def main() -> WaveReport | None:
        wave = Wave[list[str]]("cut", max_concurrency=1, instrument=False)
        stream = wave.stream_map(_fetch, pages) if mapped else wave.stream(tasks)
        async with stream as results:
            async for result in results:
                ran.append(result.index)
                if result.index == 0:  # the worker has taken "/e" meanwhile (its buffer has room): index 2
                    _cut(pages, cut, str)
                    _cut(tasks, cut, functools.partial(functools.partial, _fetch))
        return stream.report

    with caplog.at_level(logging.WARNING, logger="shannon_otel"):
        report = run_virtual(asyncio.wait_for(main(), 60))
    assert report is not None
    told = [r for r in caplog.records if r.__dict__.get("event.name") == "shannon.wave.input_cut"]
    assert len(told) == 1
    assert told[0].__dict__["shannon.wave.input_cut.index"] == report.total
    assert told[0].__dict__["shannon.wave.name"] == "cut"
    assert ran == list(range(report.total))  # the rule pinned: the index goes on; what fell below it never ran
    assert report.total == (3 if cut == "clear" else 2)


def test_an_item_replaced_in_place_is_not_told_as_a_cut_that_skipped_tasks(caplog: pytest.LogCaptureFixture) -> None:
    """A consumer freeing each task it has read (``tasks[i] = None``) cuts nothing: every task runs. The wave cannot
    tell that from a cut then extended to the same length (it keeps one task, the last it took), so it warns, but
    the warning said the list "was cut" and that tasks "never ran", untrue here: it now says the list changed (a
    cut, or an item replaced) and what follows only if it was cut (review: the false claim)."""
    tasks: list[Any] = [functools.partial(_fetch, page) for page in ["/a", "/b", "/c", "/d"]]
    ran: list[int] = []

    async def main() -> WaveReport | None:
        stream = Wave[list[str]]("freed", max_concurrency=1, instrument=False).stream(tasks)
        async with stream as results:
            async for result in results:
                ran.append(result.index)
                tasks[result.index] = None  # freed: the wave has taken it (and the one after, into its buffer)
        return stream.report

    with caplog.at_level(logging.WARNING, logger="shannon_otel"):
        report = run_virtual(asyncio.wait_for(main(), 60))
    assert report is not None and report.total == 4 and sorted(ran) == [0, 1, 2, 3]
    told = [r for r in caplog.records if r.__dict__.get("event.name") == "shannon.wave.input_cut"]
    assert len(told) == 1
    message = told[0].getMessage()
    assert "list was cut" not in message
    assert "changed below" in message and "or an item it had taken replaced" in message
    assert "if it was cut, the tasks moved or added below that index never ran" in message


@pytest.mark.parametrize("mapped", [False, True])
def test_a_list_only_extended_as_it_streams_logs_no_cut(mapped: bool, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="shannon_otel"):
        read, _ = _crawl(2, mapped, None, 1.0)
    assert sorted(read) == sorted(_SITE)
    assert [r for r in caplog.records if r.__dict__.get("event.name") == "shannon.wave.input_cut"] == []
