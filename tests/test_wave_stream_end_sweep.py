"""A stream's consumer leaving right after its last result, or before it, across a grid of wave shapes.

Left right after the last result, every task run and every result read, the wave is a success: report, wave span
and wave duration metric. A worker pulled the input's next item only once the buffer had room (or, batched, looked
for the next batch only as that began), so with the buffer full, or a batch run out, a lazy input's end was not yet
known when the consumer got its last result: leaving then cancelled a wave cut short of nothing (316 of these
1,728 runs said "cancellation", every lazy kind, e.g. ``max_concurrency=1, buffer=1`` over a generator of 2 tasks).
Left before it, the wave is a cancellation whenever its leaving cut a task short (one not yet ended, or never
taken); a consumer that leaves with every task already ended, results unread, cut nothing short (WaveRun.idle),
and the wave says success.

Deterministic: the tasks never suspend, or suspend once (``sleep(0)``), so the steps run in asyncio's FIFO order.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
from typing import Any

import pytest
from _open_spans import OpenSpans

from shannon_otel import Outcome, Wave, WaveReport
from shannon_otel.testing import InMemoryTelemetry

KINDS = ("lazy", "mapped", "list")  # a generator of tasks, stream_map over an iterator, a list (sized)
STEPS = (0, 1)  # how often a task suspends
SIZES = (1, 2, 3, 4)
LEAVES = ("after", "before")  # the consumer leaves right after its last result, or right before it


async def _task(value: int, steps: int, ended: list[int]) -> int:
    for _ in range(steps):
        await asyncio.sleep(0)
    ended.append(value)
    return value


def _stream(wave: Wave[int], kind: str, n: int, steps: int, ended: list[int], buffer: int | None) -> Any:
    if kind == "mapped":
        return wave.stream_map(functools.partial(_task, steps=steps, ended=ended), iter(range(n)), buffer=buffer)
    tasks = [functools.partial(_task, k, steps, ended) for k in range(n)]
    return wave.stream(tasks if kind == "list" else iter(tasks), buffer=buffer)


def _leave(wave: Wave[int], kind: str, n: int, steps: int, leave: str, buffer: int | None) -> tuple[WaveReport, int]:
    """Read the stream's results and leave after the last (or the one before it; with one task, at once): the
    report, and how many tasks had ended when the consumer left."""
    ended: list[int] = []
    read = n if leave == "after" else n - 1

    async def main() -> tuple[WaveReport | None, int]:
        stream = _stream(wave, kind, n, steps, ended, buffer)
        seen = 0
        async with stream as results:
            if read:
                async for _ in results:
                    seen += 1
                    if seen == read:
                        break
            at_leave = len(ended)
        return stream.report, at_leave

    report, at_leave = asyncio.run(main())
    assert report is not None
    return report, at_leave


@pytest.mark.parametrize("buffer", [1, 2, None])
@pytest.mark.parametrize("batch_size", [None, 1, 2, 3])
@pytest.mark.parametrize("max_concurrency", [1, 2, 3])
def test_a_wave_is_a_cancellation_exactly_when_its_consumer_leaving_cut_a_task_short(
    max_concurrency: int, batch_size: int | None, buffer: int | None,
) -> None:
    tel = InMemoryTelemetry()
    spans = OpenSpans()
    tel.tracer_provider.add_span_processor(spans)
    wrong: list[str] = []
    expected: dict[str, Outcome] = {}
    for kind, steps, n, leave in itertools.product(KINDS, STEPS, SIZES, LEAVES):
        name = f"{kind}-{steps}-{n}-{leave}"
        wave = Wave[int](name, max_concurrency=max_concurrency, batch_size=batch_size, **tel.providers)
        report, at_leave = _leave(wave, kind, n, steps, leave, buffer)
        if leave == "after":
            assert at_leave == n  # every result read: every task had ended
        want = expected[name] = Outcome.SUCCESS if at_leave == n else Outcome.CANCELLATION
        span = (tel.span(f"wave {name}").attributes or {})["shannon.task.outcome"]
        if report.outcome is not want or span != want.value:
            wrong.append(f"{name}: report {report.outcome.value}, span {span!r}, {at_leave} of {n} ended at leaving")
        elif want is Outcome.SUCCESS:
            assert report.total == n and report.counts[Outcome.SUCCESS] == n, name
    assert wrong == [], f"{len(wrong)} of {len(expected)} waves misreported:\n" + "\n".join(wrong)
    assert Outcome.CANCELLATION in expected.values()  # the grid has waves its consumer cut short
    durations = {point.attributes["shannon.wave.name"]: point for point in tel.points("shannon.wave.duration")}
    assert {name: (point.count, point.attributes["shannon.task.outcome"]) for name, point in durations.items()} == {
        name: (1, want.value) for name, want in expected.items()
    }
    assert spans.open == {}
    tel.shutdown()


@pytest.mark.parametrize("how", ["at once", "raising"])
@pytest.mark.parametrize("kind", KINDS)
def test_an_empty_input_left_at_once_is_a_success_of_no_task(kind: str, how: str) -> None:
    """A stream over an empty input (a generator, stream_map over an iterator, a list), its block left before the
    wave ran (nothing read, or an error of the block's own): nothing ran and nothing was cut short. A lazy input's
    end was not yet known then, and the report, wave span and duration metric said ``cancellation`` (every lazy
    shape: 108 of these 162 runs) until the input's end was looked for as the consumer leaves (``_stream._leave``)."""
    tel = InMemoryTelemetry()
    spans = OpenSpans()
    tel.tracer_provider.add_span_processor(spans)
    names = []
    for max_concurrency, batch_size, buffer in itertools.product([1, 2, 3], [None, 1, 3], [1, 2, None]):
        name = f"{kind}-{max_concurrency}-{batch_size}-{buffer}"
        names.append(name)
        wave = Wave[int](name, max_concurrency=max_concurrency, batch_size=batch_size, **tel.providers)

        async def main(wave: Wave[int] = wave, buffer: int | None = buffer) -> WaveReport | None:
            stream = _stream(wave, kind, 0, 0, [], buffer)
            try:
                async with stream:
                    if how == "raising":
                        raise LookupError("the block's own")
            except LookupError:
                assert how == "raising"
            report: WaveReport | None = stream.report
            return report

        report = asyncio.run(main())
        assert report is not None
        assert (report.outcome, report.total, report.error) == (Outcome.SUCCESS, 0, None), name
        assert (tel.span(f"wave {name}").attributes or {})["shannon.task.outcome"] == "success", name
    durations = {point.attributes["shannon.wave.name"]: point for point in tel.points("shannon.wave.duration")}
    outcomes = {name: (point.count, point.attributes["shannon.task.outcome"]) for name, point in durations.items()}
    assert outcomes == dict.fromkeys(names, (1, "success"))
    assert spans.open == {}
    tel.shutdown()
