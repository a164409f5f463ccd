"""A stream over a generator its consumer feeds as it reads each result (a crawler: the generator yields from a
deque, the consumer appends the links of each page it reads), and the input's end found as the consumer leaves.

With one result in flight (``buffer=1``) a worker pulled the next item only once the consumer had read the last
result and asked for the next, so what the consumer appended as it read was there: the whole crawl ran. A worker
that pulled the next item as its task ended (to know the input's end before its last result was read) found the
deque empty: the wave ended after the first page, a success, the crawl silently cut to one page. The end is now
looked for as the consumer leaves instead (a consumer leaving right after the last result still cuts nothing short).

Deterministic: each task suspends once (``sleep(0)``), so the steps run in asyncio's FIFO order.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Iterator
from typing import Any

import pytest
from _open_spans import OpenSpans

from shannon_otel import Outcome, Wave
from shannon_otel.testing import InMemoryTelemetry

DEPTH = 3  # pages 0..6 have two links each: 15 pages in all


async def _page(number: int) -> int:
    await asyncio.sleep(0)
    return number


@pytest.mark.parametrize("kind", ["stream", "stream_map"])
@pytest.mark.parametrize("batch_size", [None, 2])
@pytest.mark.parametrize("max_concurrency", [1, 3])
def test_a_generator_the_consumer_feeds_as_it_reads_runs_every_task_it_is_fed(
    max_concurrency: int, batch_size: int | None, kind: str,
) -> None:
    tel = InMemoryTelemetry()
    spans = OpenSpans()
    tel.tracer_provider.add_span_processor(spans)
    frontier = collections.deque([0])
    pulls: list[int] = []

    def links() -> Iterator[int]:
        while frontier:
            pulls.append(frontier[0])
            yield frontier.popleft()

    wave = Wave[int]("crawl", max_concurrency=max_concurrency, batch_size=batch_size, **tel.providers)

    async def main() -> tuple[list[int], Any]:
        seen: list[int] = []
        if kind == "stream":
            stream = wave.stream((_page(number) for number in links()), buffer=1)
        else:
            stream = wave.stream_map(_page, links(), buffer=1)
        async with stream as results:
            async for result in results:
                assert result.value is not None
                seen.append(result.value)
                if result.value < 2 ** DEPTH - 1:
                    frontier.extend((2 * result.value + 1, 2 * result.value + 2))
        return seen, stream.report

    seen, report = asyncio.run(main())
    every = list(range(2 ** (DEPTH + 1) - 1))
    assert sorted(seen) == every and sorted(pulls) == every
    assert report.outcome is Outcome.SUCCESS and report.total == len(every)
    assert (tel.span("wave crawl").attributes or {})["shannon.task.outcome"] == "success"
    assert spans.open == {}
    tel.shutdown()


@pytest.mark.parametrize("leave", ["after_last", "before_feeding"])
def test_a_consumer_leaving_a_fed_generator_pulls_one_item_at_most_to_find_its_end(leave: str) -> None:
    """Left right after the last page (nothing fed), the wave is a success, one pull finding the end; left with
    links just fed, one of them is pulled, closed and counted a cancelled task: the wave is a cancellation."""
    frontier = collections.deque([0])
    pulls: list[int] = []

    def links() -> Iterator[int]:
        while frontier:
            pulls.append(frontier[0])
            yield frontier.popleft()

    wave = Wave[int]("crawl", max_concurrency=1)

    async def main() -> Any:
        stream = wave.stream_map(_page, links(), buffer=1)
        async with stream as results:
            async for _ in results:
                if leave == "before_feeding":
                    frontier.extend((1, 2))
                break
        return stream.report

    report = asyncio.run(main())
    if leave == "after_last":
        assert pulls == [0] and report.outcome is Outcome.SUCCESS and report.total == 1
    else:
        assert pulls == [0, 1] and list(frontier) == [2]
        assert report.outcome is Outcome.CANCELLATION and report.total == 2
        assert report.counts[Outcome.SUCCESS] == 1 and report.counts[Outcome.CANCELLATION] == 1


def test_a_keyboard_interrupt_the_input_raises_as_its_consumer_leaves_fails_the_wave() -> None:
    """A full batch read and left: the input's next item is pulled as the consumer leaves, and it raises
    KeyboardInterrupt. Never dropped: raised from the block once the wave has ended, a failure with that error,
    every span ended (not raised in the leaving itself, the wave still running, its report not yet made)."""
    tel = InMemoryTelemetry()
    spans = OpenSpans()
    tel.tracer_provider.add_span_processor(spans)
    pulls: list[int] = []

    def pages() -> Iterator[int]:
        for number in range(2):
            pulls.append(number)
            yield number
        raise KeyboardInterrupt

    wave = Wave[int]("crawl", max_concurrency=1, batch_size=2, **tel.providers)

    async def consume(stream: Any) -> None:
        read = 0
        async with stream as results:
            async for _ in results:
                read += 1
                if read == 2:
                    break

    async def main() -> Any:
        stream = wave.stream_map(_page, pages(), buffer=1)
        with pytest.raises(KeyboardInterrupt):
            await consume(stream)
        return stream.report

    report = asyncio.run(main())
    assert pulls == [0, 1]
    assert report is not None and report.outcome is Outcome.FAILURE and type(report.error) is KeyboardInterrupt
    assert report.counts[Outcome.SUCCESS] == 2
    assert (tel.span("wave crawl").attributes or {})["shannon.task.outcome"] == "failure"
    assert spans.open == {}
    tel.shutdown()
